"""The console's access token and listen address: where they come from and how they are checked."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from ..errors import ConfigError

TOKEN_FILE = "console.token"
"""The token's file in the node's data directory (mode 0600, created on first start)."""
_TOKEN_BYTES = 32


def load_or_create_token(data_dir: Path) -> str:
    """The console token from ``data_dir/console.token``, created (0600) if missing.

    Raises:
        ConfigError: the file exists but is readable by others or holds no usable token.
    """
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path)
    token = secrets.token_hex(_TOKEN_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token


def _read_token(path: Path) -> str:
    mode = path.stat().st_mode & 0o077
    if mode:
        raise ConfigError(f"{path} is readable by others (mode {oct(mode)}): chmod 600 it")
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if len(token) < 32 or not token.isalnum():
        raise ConfigError(f"{path} does not hold a token (32+ letters and digits)")
    return token


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the real one."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("ascii"))


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) of a loopback address.

    The console shows operational detail and is meant for the operator on the machine (or
    through an SSH tunnel); it refuses to listen anywhere but loopback.

    Raises:
        ConfigError: malformed, a bad port, or not a loopback address.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"console address {value!r} must be host:port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"console port {port} is out of range")
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ConfigError(f"console host {host!r} must be an IP address or localhost") from None
    if not loopback:
        raise ConfigError(f"the console listens on loopback only, not {host}")
    return host, port
