"""What the two libsodium-backed groups (ristretto255, Ed25519) share: 32-byte elements,
little-endian scalars below ``L``, and constant-time arithmetic on encoded points.

Security: libsodium's scalar multiplications are constant time. They refuse a zero scalar and
an identity result; for a validated element and a scalar reduced modulo ``L`` that happens only
for ``k == 0`` or the identity, answered here without calling it (a branch on ``k == 0``, which
a uniformly random secret hits with probability 2^-252).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._sodium import ffi
from ..errors import InvalidEncoding
from ._base import Group

L = 2**252 + 27742317777372353535851937790883648493
"""The order of both groups (the prime order of edwards25519's main subgroup)."""


def _call(fn: Callable[..., int], *args: Any) -> bytes | None:
    out = ffi.new("unsigned char[32]")
    return bytes(out) if fn(out, *args) == 0 else None


class SodiumGroup(Group[bytes]):
    """A prime-order group whose elements are canonical 32-byte encodings handled by libsodium.

    Subclasses name their libsodium functions and identity encoding, and implement
    ``decode`` (their validity rules) and hashing.
    """

    order = L
    element_size = 32
    scalar_size = 32
    _identity: bytes
    _base_mul_fn: Callable[..., int]
    _mul_fn: Callable[..., int]
    _add_fn: Callable[..., int]
    _sub_fn: Callable[..., int]

    def __init__(self) -> None:
        self._generator = self.base_mul(1)

    def identity(self) -> bytes:
        return self._identity

    def generator(self) -> bytes:
        return self._generator

    def base_mul(self, k: int) -> bytes:
        k %= L
        if k == 0:
            return self._identity
        out = _call(type(self)._base_mul_fn, k.to_bytes(32, "little"))
        if out is None:
            raise AssertionError(f"{self.name} base multiplication failed")  # unreachable
        return out

    def mul(self, element: bytes, k: int) -> bytes:
        k %= L
        if k == 0 or element == self._identity:
            return self._identity
        out = _call(type(self)._mul_fn, k.to_bytes(32, "little"), element)
        if out is None:
            # Unreachable for a validated element: prime order and k != 0 mod L.
            raise InvalidEncoding(f"{self.name}: not a valid element")
        return out

    def add(self, a: bytes, b: bytes) -> bytes:
        out = _call(type(self)._add_fn, a, b)
        if out is None:
            raise InvalidEncoding(f"{self.name}: not a valid element")
        return out

    def sub(self, a: bytes, b: bytes) -> bytes:
        out = _call(type(self)._sub_fn, a, b)
        if out is None:
            raise InvalidEncoding(f"{self.name}: not a valid element")
        return out

    def eq(self, a: bytes, b: bytes) -> bool:
        # Elements are canonical encodings, so equal elements have equal bytes.
        return a == b

    def encode(self, element: bytes) -> bytes:
        return element

    def encode_scalar(self, k: int) -> bytes:
        return (k % L).to_bytes(32, "little")

    def decode_scalar(self, data: bytes) -> int:
        self._check_length(data, 32, "a scalar")
        k = int.from_bytes(data, "little")
        if k >= L:
            raise InvalidEncoding(f"{self.name}: scalar is not below the group order")
        return k
