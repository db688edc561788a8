"""``verify_ed25519`` (libsodium): interop with OpenSSL, the RFC 8032 vector, strict refusals."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto.errors import InvalidSignature
from kmsnode.crypto.signatures import verify_ed25519

L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1, TEST 2 (one-byte message).
RFC_PK = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
RFC_MSG = bytes.fromhex("72")
RFC_SIG = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_rfc8032_vector() -> None:
    verify_ed25519(RFC_PK, RFC_SIG, RFC_MSG)
    with pytest.raises(InvalidSignature):
        verify_ed25519(RFC_PK, RFC_SIG, b"\x73")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2048), st.integers(min_value=0, max_value=63 * 8 + 7))
def test_openssl_signatures_verify_and_any_flipped_bit_fails(message: bytes, bit: int) -> None:
    """What OpenSSL signs, we accept; one flipped signature bit, we refuse (as OpenSSL does)."""
    key = Ed25519PrivateKey.generate()
    sig = key.sign(message)
    verify_ed25519(raw(key), sig, message)
    flipped = bytearray(sig)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidSignature):
        verify_ed25519(raw(key), bytes(flipped), message)


def test_non_canonical_s_is_refused() -> None:
    """S + L verifies the same equation; RFC 8032 (and we) refuse it as malleable."""
    key = Ed25519PrivateKey.generate()
    sig = key.sign(b"m")
    s = int.from_bytes(sig[32:], "little") + L
    assert s < 2**256
    with pytest.raises(InvalidSignature):
        verify_ed25519(raw(key), sig[:32] + s.to_bytes(32, "little"), b"m")


@pytest.mark.parametrize(
    "public_key",
    [
        bytes(32),  # not a point encoding libsodium accepts (y = 0 is of order 4)
        bytes([1]) + bytes(31),  # the identity: small order
        os.urandom(31),  # short
        b"\xff" * 32,  # non-canonical
    ],
)
def test_bad_public_keys_are_refused_not_raised(public_key: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(InvalidSignature):
        verify_ed25519(public_key, key.sign(b"m"), b"m")


def test_bad_signature_lengths_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    sig = key.sign(b"m")
    for bad in (b"", sig[:63], sig + b"\x00"):
        with pytest.raises(InvalidSignature):
            verify_ed25519(raw(key), bad, b"m")
