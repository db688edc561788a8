"""Ed25519 signature checks for our signed messages (requests, responses, DKG messages)."""

from __future__ import annotations

from .errors import InvalidSignature
from .groups.ed25519 import verify_signature


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Check an Ed25519 signature under a raw 32-byte public key (libsodium).

    libsodium's check is RFC 8032's with the strict encodings (canonical ``S``, no
    small-order key or ``R``); it is about twice as fast as OpenSSL's on this machine
    (scripts/bench_sign.py). Verification handles only public data.

    Raises:
        InvalidSignature: it does not verify, or the key is not a valid public key (opaque).
    """
    if not verify_signature(public_key, message, signature):
        raise InvalidSignature()
