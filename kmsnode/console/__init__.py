"""The per-node operator console: a token-protected web page and Prometheus ``/metrics``.

Bound to loopback only (reach it remotely through an SSH tunnel). It shows node and peer
health, the consensus position, keys and versions, DKG sessions, and the audit trail with a
check of its hash chain; it can change nothing.
"""

from ._server import Console, ConsoleSource
from ._token import TOKEN_FILE, load_or_create_token, parse_listen, token_matches

__all__ = [
    "TOKEN_FILE",
    "Console",
    "ConsoleSource",
    "load_or_create_token",
    "parse_listen",
    "token_matches",
]
