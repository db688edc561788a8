"""Hybrid X25519 + ML-KEM-768 sealing: round trip, binding, and rejected inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto.errors import InvalidCiphertext, InvalidEncoding
from kmsnode.crypto.sealing import (
    PUBLIC_KEY_SIZE,
    SealingPrivateKey,
    SealingPublicKey,
    open_sealed,
    seal,
)

# Small-order points on Curve25519 (RFC 7748 §6.1 / the usual blocklist): 0 and 1 among them.
SMALL_ORDER_X25519 = [
    bytes(32),
    (1).to_bytes(32, "little"),
    (2**255 - 20).to_bytes(32, "little"),  # p - 1
    (2**255 - 19).to_bytes(32, "little"),  # p: a non-canonical 0
    (2**255 - 18).to_bytes(32, "little"),  # p + 1: a non-canonical 1
    (1 | 1 << 255).to_bytes(32, "little"),  # 1 with the (ignored) top bit set
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
]


@pytest.fixture(scope="module")
def recipient() -> SealingPrivateKey:
    return SealingPrivateKey.generate()


def test_round_trip(recipient: SealingPrivateKey) -> None:
    sealed = seal(recipient.public_key, b"share bytes", b"session-1")
    assert open_sealed(recipient, sealed, b"session-1") == b"share bytes"
    restored = SealingPrivateKey.from_bytes(recipient.to_bytes())
    assert open_sealed(restored, sealed, b"session-1") == b"share bytes"
    assert restored.public_key == recipient.public_key


def test_public_key_round_trip(recipient: SealingPrivateKey) -> None:
    data = recipient.public_key.encode()
    assert len(data) == PUBLIC_KEY_SIZE
    assert SealingPublicKey.decode(data) == recipient.public_key


def test_wrong_recipient_or_aad_or_tampering(recipient: SealingPrivateKey) -> None:
    sealed = seal(recipient.public_key, b"m", b"aad")
    with pytest.raises(InvalidCiphertext):
        open_sealed(SealingPrivateKey.generate(), sealed, b"aad")
    with pytest.raises(InvalidCiphertext):
        open_sealed(recipient, sealed, b"other")
    for pos in (0, 1, 40, 1100, len(sealed) - 20, len(sealed) - 1):
        t = bytearray(sealed)
        t[pos] ^= 1
        with pytest.raises(InvalidCiphertext):
            open_sealed(recipient, bytes(t), b"aad")
    with pytest.raises(InvalidCiphertext):
        open_sealed(recipient, sealed[:100], b"aad")


@pytest.mark.parametrize("point", SMALL_ORDER_X25519)
def test_low_order_x25519_rejected(recipient: SealingPrivateKey, point: bytes) -> None:
    bad = point + recipient.public_key.mlkem768
    with pytest.raises(InvalidEncoding):
        SealingPublicKey.decode(bad)
    with pytest.raises(InvalidEncoding, match="small order"):
        SealingPublicKey.decode_checked(bad)
    with pytest.raises(InvalidEncoding):
        seal(SealingPublicKey(point, recipient.public_key.mlkem768), b"m")


def test_wrong_length_mlkem_rejected(recipient: SealingPrivateKey) -> None:
    pk = recipient.public_key
    with pytest.raises(InvalidEncoding):
        SealingPublicKey.decode(pk.encode()[:-1])
    with pytest.raises(InvalidEncoding):
        seal(SealingPublicKey(pk.x25519, pk.mlkem768[:-1]), b"m")
    with pytest.raises(InvalidEncoding):
        seal(SealingPublicKey(pk.x25519, pk.mlkem768 + b"\x00"), b"m")


def test_private_key_repr_redacted(recipient: SealingPrivateKey) -> None:
    assert "redacted" in repr(recipient)
    assert recipient.to_bytes().hex() not in repr(recipient)


def test_every_listed_small_order_point_gives_openssl_an_all_zero_secret() -> None:
    # Independent check of the blocklist: OpenSSL refuses the exchange for each of them.
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    for point in SMALL_ORDER_X25519:
        with pytest.raises(ValueError):
            X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(point))


@settings(max_examples=60, deadline=None)
@given(
    position=st.integers(0, 1151),
    value=st.integers(0, 255),
    seed=st.integers(0, 2**32),
)
def test_the_pure_python_key_check_agrees_with_openssl(
    position: int, value: int, seed: int
) -> None:
    """``decode_checked`` (what the replicated state uses for keys nodes post) accepts and
    refuses exactly what OpenSSL's ML-KEM-768 import does, byte flips in ``t`` included."""
    import random

    rng = random.Random(seed)
    key = bytearray(SealingPrivateKey.generate().public_key.encode())
    key[32 + position] = value
    if rng.random() < 0.5:  # push a whole coefficient pair to the top of its range
        key[32 + position - position % 3 : 32 + position - position % 3 + 3] = b"\xff\xff\xff"
    verdicts = []
    for decode in (SealingPublicKey.decode, SealingPublicKey.decode_checked):
        try:
            decode(bytes(key))
            verdicts.append(True)
        except InvalidEncoding:
            verdicts.append(False)
    assert verdicts[0] == verdicts[1], verdicts
