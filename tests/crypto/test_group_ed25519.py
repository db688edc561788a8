"""Ed25519 prime-order subgroup: strict decoding (small order, mixed order, non-canonical)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto._sodium import ffi, lib
from kmsnode.crypto.errors import InvalidEncoding
from kmsnode.crypto.groups import ED25519
from kmsnode.crypto.groups.ed25519 import mul_add, reduce_wide

G = ED25519
P = 2**255 - 19
L = G.order

# The eight points of small order (the torsion subgroup), canonically encoded.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
]

NON_CANONICAL = [
    # x == 0 with the sign bit set: -0 encodings of the identity and of the order-2 point.
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    # y >= p: y = p (i.e. 0), y = p + 1 (i.e. 1), and the all-ones string.
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


def _raw_add(a: bytes, b: bytes) -> bytes:
    """libsodium's point addition with no subgroup check (to build bad points)."""
    out = ffi.new("unsigned char[32]")
    assert lib.crypto_core_ed25519_add(out, a, b) == 0
    return bytes(out)


def test_generator_is_rfc8032_base_point() -> None:
    assert G.generator().hex() == "58" + "66" * 31


@pytest.mark.parametrize("hexenc", SMALL_ORDER)
def test_small_order_points_rejected(hexenc: str) -> None:
    point = bytes.fromhex(hexenc)
    # They really are of small order: 8 * T is the identity.
    t2 = _raw_add(point, point)
    t4 = _raw_add(t2, t2)
    assert _raw_add(t4, t4) == G.identity()
    if point == G.identity():
        assert G.decode(point, allow_identity=True) == point
        with pytest.raises(InvalidEncoding):
            G.decode(point)
    else:
        with pytest.raises(InvalidEncoding):
            G.decode(point, allow_identity=True)


@pytest.mark.parametrize("torsion", SMALL_ORDER[1:])
def test_mixed_order_points_rejected(torsion: str) -> None:
    """P + T with P in the prime-order subgroup and T of small order: on the curve, not ours."""
    for k in (1, 7, G.random_scalar()):
        mixed = _raw_add(G.base_mul(k), bytes.fromhex(torsion))
        with pytest.raises(InvalidEncoding):
            G.decode(mixed, allow_identity=True)


@pytest.mark.parametrize("hexenc", NON_CANONICAL)
def test_non_canonical_encodings_rejected(hexenc: str) -> None:
    with pytest.raises(InvalidEncoding):
        G.decode(bytes.fromhex(hexenc), allow_identity=True)


def test_sign_bit_selects_the_negation() -> None:
    """The other point with the same y is -P: valid, and decoded as such (not as P)."""
    point = G.base_mul(5)
    flipped = point[:31] + bytes([point[31] ^ 0x80])
    assert G.decode(flipped) == G.sub(G.identity(), point)


def test_off_curve_rejected() -> None:
    # y = 2 gives x^2 = (y^2 - 1) / (d y^2 + 1), which is not a square.
    with pytest.raises(InvalidEncoding):
        G.decode((2).to_bytes(32, "little"))


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=1, max_value=L - 1))
def test_valid_points_round_trip(k: int) -> None:
    point = G.base_mul(k)
    assert G.decode(point) == point
    assert G.mul(G.generator(), k) == point


def test_hash_to_element_lands_in_the_subgroup() -> None:
    for msg in (b"", b"a", b"kmsnode"):
        point = G.hash_to_element(b"test-dst", msg)
        assert G.decode(point) == point
    assert G.hash_to_element(b"A", b"m") != G.hash_to_element(b"B", b"m")


@settings(max_examples=20, deadline=None)
@given(st.integers(0, L - 1), st.integers(0, L - 1), st.integers(0, L - 1))
def test_constant_time_scalar_helpers(a: int, b: int, c: int) -> None:
    assert mul_add(a, b, c) == (a * b + c) % L
    wide = (a * 2**256 + b).to_bytes(64, "little")
    assert reduce_wide(wide) == (a * 2**256 + b) % L
