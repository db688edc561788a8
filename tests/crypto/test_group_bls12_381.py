"""BLS12-381 G1/G2: strict decoding (flags, field range, curve, subgroup) and py_ecc agreement."""

from __future__ import annotations

from typing import Any

import pytest
from py_ecc.bls.point_compression import compress_G1, compress_G2, modular_squareroot_in_FQ2
from py_ecc.fields import optimized_bls12_381_FQ as FQ
from py_ecc.fields import optimized_bls12_381_FQ2 as FQ2
from py_ecc.optimized_bls12_381.optimized_curve import (
    G1,
    G2,
    b,
    b2,
    is_on_curve,
    multiply,
    normalize,
)

from kmsnode.crypto.errors import InvalidEncoding
from kmsnode.crypto.groups import BLS12_381_G1, BLS12_381_G2, Group
from kmsnode.crypto.groups.bls12_381 import P, R

GROUPS = [BLS12_381_G1, BLS12_381_G2]


def _g1_on_curve_off_subgroup() -> bytes:
    """A point of E1(Fp) outside the order-r subgroup (the cofactor is about 2^126)."""
    x = 1
    while True:
        rhs = (x**3 + 4) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P == rhs:
            point = (FQ(x), FQ(y), FQ(1))
            assert is_on_curve(point, b)
            if normalize(multiply(point, R)) != normalize((FQ(1), FQ(1), FQ(0))):
                return compress_G1(point).to_bytes(48, "big")
        x += 1


def _g1_off_curve() -> bytes:
    x = 1
    while True:
        rhs = (x**3 + 4) % P
        if pow(rhs, (P - 1) // 2, P) != 1:  # not a square: no point with this x
            return (x | (0x80 << 376)).to_bytes(48, "big")
        x += 1


def _g2_points() -> tuple[bytes, bytes]:
    """(a point of E2 off the subgroup, an x with no point on E2), compressed."""
    off_subgroup = off_curve = None
    k = 1
    while off_subgroup is None or off_curve is None:
        x = FQ2([k, 1])
        y = modular_squareroot_in_FQ2(x**3 + b2)
        if y is None:
            if off_curve is None:  # x = k + u: encoded as c1 = 1 (with the flag), then c0 = k
                off_curve = (1 | (0x80 << 376)).to_bytes(48, "big") + k.to_bytes(48, "big")
        elif off_subgroup is None:
            point = (x, y, FQ2.one())
            assert is_on_curve(point, b2)
            z1, z2 = compress_G2(point)
            off_subgroup = z1.to_bytes(48, "big") + z2.to_bytes(48, "big")
        k += 1
    return off_subgroup, off_curve


def test_generators_match_py_ecc() -> None:
    assert BLS12_381_G1.encode(BLS12_381_G1.generator()) == compress_G1(G1).to_bytes(48, "big")
    z1, z2 = compress_G2(G2)
    assert BLS12_381_G2.encode(BLS12_381_G2.generator()) == z1.to_bytes(48, "big") + z2.to_bytes(
        48, "big"
    )
    k = BLS12_381_G1.random_scalar()
    assert BLS12_381_G1.encode(BLS12_381_G1.base_mul(k)) == compress_G1(multiply(G1, k)).to_bytes(
        48, "big"
    )


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_malformed_identity_encodings_rejected(group: Group[Any]) -> None:
    size = group.element_size
    good = bytes([0xC0]) + bytes(size - 1)
    assert group.is_identity(group.decode(good, allow_identity=True))
    with pytest.raises(InvalidEncoding):
        group.decode(good)
    for bad in (
        bytes([0xC0]) + bytes(size - 2) + b"\x01",  # stray bits after the infinity flag
        bytes([0xE0]) + bytes(size - 1),  # sign bit on the point at infinity
        b"\xff" * size,  # arkworks would take this for the identity
        bytes([0x40]) + bytes(size - 1),  # infinity without the compression flag
    ):
        with pytest.raises(InvalidEncoding):
            group.decode(bad, allow_identity=True)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_uncompressed_flag_and_unreduced_coordinates_rejected(group: Group[Any]) -> None:
    good = group.encode(group.base_mul(12345))
    with pytest.raises(InvalidEncoding):
        group.decode(bytes([good[0] & 0x7F]) + good[1:])
    unreduced = (P | (0x80 << 376)).to_bytes(48, "big")
    data = unreduced if group.element_size == 48 else unreduced + bytes(48)
    with pytest.raises(InvalidEncoding):
        group.decode(data)
    if group.element_size == 96:  # the second Fp coefficient unreduced too
        with pytest.raises(InvalidEncoding):
            group.decode(bytes([0x80]) + bytes(47) + P.to_bytes(48, "big"))


def test_g1_off_curve_and_off_subgroup_rejected() -> None:
    with pytest.raises(InvalidEncoding):
        BLS12_381_G1.decode(_g1_on_curve_off_subgroup())
    with pytest.raises(InvalidEncoding):
        BLS12_381_G1.decode(_g1_off_curve())


def test_g2_off_curve_and_off_subgroup_rejected() -> None:
    off_subgroup, off_curve = _g2_points()
    with pytest.raises(InvalidEncoding):
        BLS12_381_G2.decode(off_subgroup)
    with pytest.raises(InvalidEncoding):
        BLS12_381_G2.decode(off_curve)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_secret_multiplication_agrees_with_public_msm(group: Group[Any]) -> None:
    a, k = group.random_scalar(), group.random_scalar()
    point = group.base_mul(a)
    assert group.eq(group.mul(point, k), group.lincomb([point], [k]))
    assert group.eq(group.mul(point, R - 1), group.sub(group.identity(), point))
