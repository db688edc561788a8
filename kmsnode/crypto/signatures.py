"""Ed25519 signature checks for our signed messages (requests, responses, DKG messages)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature as _OpenSSLInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import InvalidSignature


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Check an Ed25519 signature (OpenSSL) under a raw 32-byte public key.

    Raises:
        InvalidSignature: it does not verify, or the key is not a valid public key (opaque).
    """
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (_OpenSSLInvalidSignature, ValueError) as exc:
        raise InvalidSignature() from exc
