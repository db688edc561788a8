"""BLS12-381's G1 (public keys, shares' verification keys) and G2 (signatures) as ``Group``s.

Two libraries, split by what the data is:

- Secret scalars go through blst (via ``blspy``), which is constant time: ``k * G1`` is
  ``PrivateKey(k).get_g1()``; any other multiplication by a scalar runs a fixed-shape
  Montgomery ladder over blst's point additions (see ``_ladder``).
- Everything public (decoding with the subgroup check, additions, multi-scalar
  multiplication, hash-to-curve, pairings) goes through ``py_arkworks_bls12381``, which is
  variable time and never sees a secret scalar.

Elements are ``py_arkworks_bls12381`` points; encodings are the standard compressed ones
(48 bytes in G1, 96 in G2, ZCash flag bits); scalars are 32-byte big-endian below ``r``, as
in the IETF BLS signature draft and Ethereum.

Strict decoding checks the flag bits and the field elements ourselves (arkworks accepts some
malformed encodings of the point at infinity, e.g. with stray bits set), then lets arkworks
check that the point is on the curve and in the prime-order subgroup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import blspy
from py_arkworks_bls12381 import G1Point, G2Point, Scalar

from ..encoding import expand_message_xmd
from ..errors import InvalidEncoding
from ._base import Group

P = int(
    "1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F6241EABFFFEB153FFFFB9FEFFFFFFFFAAAB",
    16,
)
R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001

_COMPRESSED = 0x80
_INFINITY = 0x40
_SIGN = 0x20

Pt = TypeVar("Pt", G1Point, G2Point)


class _BlsGroup(Group[Pt], Generic[Pt]):
    """What G1 and G2 share: flag-checked compressed encodings, hashing, MSM, the ladder."""

    order = R
    scalar_size = 32
    scalar_byteorder = "big"
    _point: Any  # G1Point or G2Point (the arkworks class)
    _blst: Any  # blspy.G1Element or blspy.G2Element
    _field_elements: int  # 1 for Fp, 2 for Fp2

    def __init__(self) -> None:
        self._generator: Pt = self._point()
        self._identity: Pt = self._point.identity()
        self._blst_generator = self._blst.generator()

    # -- arithmetic -------------------------------------------------------------------------
    def identity(self) -> Pt:
        return self._identity

    def generator(self) -> Pt:
        return self._generator

    def mul(self, element: Pt, k: int) -> Pt:
        k %= R
        if k == 0 or element == self._identity:
            return self._identity
        start = self._blst.from_bytes_unchecked(element.to_compressed_bytes())
        return self._from_trusted(bytes(_ladder(start, k, self._blst())))

    def add(self, a: Pt, b: Pt) -> Pt:
        out: Pt = a + b
        return out

    def sub(self, a: Pt, b: Pt) -> Pt:
        out: Pt = a - b
        return out

    def eq(self, a: Pt, b: Pt) -> bool:
        return bool(a == b)

    def lincomb(self, elements: Sequence[Pt], scalars: Sequence[int]) -> Pt:
        """Multi-scalar multiplication (arkworks, variable time: public inputs only)."""
        if len(elements) != len(scalars):
            raise ValueError("lincomb: as many scalars as elements are needed")
        if not elements:
            return self._identity
        out: Pt = self._point.multiexp_unchecked(list(elements), [Scalar(k % R) for k in scalars])
        return out

    def sum(self, elements: Sequence[Pt]) -> Pt:
        acc = self._identity
        for element in elements:
            acc = acc + element
        return acc

    # -- encodings --------------------------------------------------------------------------
    def encode(self, element: Pt) -> bytes:
        return bytes(element.to_compressed_bytes())

    def decode(self, data: bytes, *, allow_identity: bool = False) -> Pt:
        self._check_length(data, self.element_size, "an element")
        data = bytes(data)
        flags = data[0]
        if not flags & _COMPRESSED:
            raise InvalidEncoding(f"{self.name}: not a compressed encoding")
        body = bytes([flags & 0x1F]) + data[1:]
        if flags & _INFINITY:
            if flags & _SIGN or any(body):
                raise InvalidEncoding(f"{self.name}: malformed encoding of the identity")
            if not allow_identity:
                raise InvalidEncoding(f"{self.name}: the identity is not allowed here")
            return self._identity
        for i in range(self._field_elements):
            if int.from_bytes(body[48 * i : 48 * (i + 1)], "big") >= P:
                raise InvalidEncoding(f"{self.name}: coordinate is not reduced")
        try:
            point: Pt = self._point.from_compressed_bytes(data)  # on curve + subgroup check
        except ValueError:
            raise InvalidEncoding(f"{self.name}: not a point of the prime-order subgroup") from None
        return point

    def encode_scalar(self, k: int) -> bytes:
        return (k % R).to_bytes(32, "big")

    def decode_scalar(self, data: bytes) -> int:
        self._check_length(data, 32, "a scalar")
        k = int.from_bytes(data, "big")
        if k >= R:
            raise InvalidEncoding(f"{self.name}: scalar is not below the group order")
        return k

    # -- hashing ------------------------------------------------------------------------------
    def hash_to_scalar(self, dst: bytes, msg: bytes) -> int:
        # RFC 9380 hash_to_field for this field: 48 bytes (128 bits of slack), big-endian.
        return int.from_bytes(expand_message_xmd(msg, dst, 48, "sha256"), "big") % R

    def hash_to_element(self, dst: bytes, msg: bytes) -> Pt:
        """RFC 9380 hash_to_curve (SSWU, random-oracle variant, expand_message_xmd SHA-256)."""
        out: Pt = self._point.hash_to_curve(msg, dst)
        return out

    # -- helpers --------------------------------------------------------------------------------
    def _from_trusted(self, data: bytes) -> Pt:
        """Decode bytes that blst itself produced (skips the subgroup check)."""
        out: Pt = self._point.from_compressed_bytes_unchecked(data)
        return out

    def to_blst(self, element: Pt) -> Any:
        """The same point as a ``blspy`` element (for constant-time operations)."""
        return self._blst.from_bytes_unchecked(element.to_compressed_bytes())


class BLS12381G1(_BlsGroup[G1Point]):
    """G1 of BLS12-381: where public keys and verification keys live (48-byte encodings)."""

    name = "bls12_381_g1"
    element_size = 48
    _point = G1Point
    _blst = blspy.G1Element
    _field_elements = 1

    def base_mul(self, k: int) -> G1Point:
        k %= R
        if k == 0:
            return self._identity
        secret = blspy.PrivateKey.from_bytes(k.to_bytes(32, "big"))
        return self._from_trusted(bytes(secret.get_g1()))


class BLS12381G2(_BlsGroup[G2Point]):
    """G2 of BLS12-381: where signatures and proofs of possession live (96-byte encodings)."""

    name = "bls12_381_g2"
    element_size = 96
    _point = G2Point
    _blst = blspy.G2Element
    _field_elements = 2

    def base_mul(self, k: int) -> G2Point:
        k %= R
        if k == 0:
            return self._identity
        return self._from_trusted(bytes(_ladder(self._blst_generator, k, blspy.G2Element())))


def _ladder(point: Any, k: int, identity: Any) -> Any:
    """``k * point`` by a Montgomery ladder over blst's constant-time point additions.

    Security: every one of the 256 steps does the same two additions whatever the bit, and the
    bit only selects which of two already-computed results goes where (tuple indexing, no
    branch). blst's additions are constant time; CPython's integer and tuple operations are
    not guaranteed to be, but they no longer depend on the bit's value through any branch or
    data-dependent amount of work. This is the best Python offers where blspy exposes no
    multiplication by an arbitrary scalar; prefer ``base_mul`` or ``blspy`` signing where
    they apply (they run entirely inside blst).
    """
    r0, r1 = identity, point
    for i in range(255, -1, -1):
        bit = (k >> i) & 1
        both = r0 + r1
        chosen = (r0, r1)[bit]
        doubled = chosen + chosen
        pair = (doubled, both)
        r0, r1 = pair[bit], pair[1 - bit]
    return r0


BLS12_381_G1 = BLS12381G1()
BLS12_381_G2 = BLS12381G2()
