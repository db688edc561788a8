"""A client's proof that a network connection is its own: its client key signs its peer id.

Nodes evict strangers' connections before those of clients the replicated state knows (see
``net.ConnectionGuard.vouch``). A signed request cannot show whose connection it came on: it
can be sent again from any connection by whoever has seen it (a committee member sees them
all). So a client signs its own libp2p peer id, once per process, under a domain tag and the
chain id, and attaches the signature to its submits. libp2p's Noise handshake authenticates
the peer id of the connection the proof arrives on, so the proof is good for that peer only.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto.encoding import transcript
from ..crypto.errors import InvalidSignature
from ..crypto.signatures import verify_ed25519

__all__ = ["VOUCH_SIZE", "sign_vouch", "vouch_valid"]

_DST = b"kmsnode/connection-vouch/v1"
VOUCH_SIZE = 64
"""Bytes of a vouch: one Ed25519 signature."""


def _message(chain_id: str, peer_id: str) -> bytes:
    return transcript(_DST, chain_id.encode(), peer_id.encode())


def sign_vouch(key: Ed25519PrivateKey, chain_id: str, peer_id: str) -> bytes:
    """``key``'s signature over its connection's ``peer_id`` (base58) on chain ``chain_id``."""
    return key.sign(_message(chain_id, peer_id))


def vouch_valid(client: bytes, vouch: object, chain_id: str, peer_id: str) -> bool:
    """Whether ``vouch`` is ``client``'s signature over ``peer_id`` on ``chain_id``; anything
    malformed is simply not valid."""
    if not isinstance(vouch, bytes) or len(vouch) != VOUCH_SIZE or len(client) != 32:
        return False
    try:
        verify_ed25519(client, vouch, _message(chain_id, peer_id))
    except InvalidSignature:
        return False
    return True
