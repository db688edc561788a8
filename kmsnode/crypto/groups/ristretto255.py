"""ristretto255 (RFC 9496) over libsodium: the group of TDH2, homomorphic ElGamal and their DKG.

Elements are their canonical 32-byte encodings; libsodium decodes and checks them on every
operation. Ristretto's encoding is prime-order by construction: a string that decodes is in the
group, so no cofactor check is needed.
"""

from __future__ import annotations

from .._sodium import ffi, lib
from ..encoding import expand_message_xmd
from ..errors import InvalidEncoding
from ._base import Group

_L = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = bytes(32)


class Ristretto255(Group[bytes]):
    """The ristretto255 prime-order group; scalars little-endian, hashing with SHA-512."""

    name = "ristretto255"
    order = _L
    element_size = 32
    scalar_size = 32

    def __init__(self) -> None:
        self._generator = self.base_mul(1)

    def identity(self) -> bytes:
        return _IDENTITY

    def generator(self) -> bytes:
        return self._generator

    def base_mul(self, k: int) -> bytes:
        k %= _L
        if k == 0:
            return _IDENTITY
        out = ffi.new("unsigned char[32]")
        if lib.crypto_scalarmult_ristretto255_base(out, k.to_bytes(32, "little")) != 0:
            raise AssertionError("ristretto255 base multiplication failed")  # unreachable: k != 0
        return bytes(out)

    def mul(self, element: bytes, k: int) -> bytes:
        k %= _L
        if k == 0 or element == _IDENTITY:
            return _IDENTITY
        out = ffi.new("unsigned char[32]")
        if lib.crypto_scalarmult_ristretto255(out, k.to_bytes(32, "little"), element) != 0:
            # libsodium refuses an identity result; with k != 0 mod L and a prime-order group
            # that only happens for an element that is not a valid encoding.
            raise InvalidEncoding("ristretto255: not a valid element")
        return bytes(out)

    def add(self, a: bytes, b: bytes) -> bytes:
        out = ffi.new("unsigned char[32]")
        if lib.crypto_core_ristretto255_add(out, a, b) != 0:
            raise InvalidEncoding("ristretto255: not a valid element")
        return bytes(out)

    def sub(self, a: bytes, b: bytes) -> bytes:
        out = ffi.new("unsigned char[32]")
        if lib.crypto_core_ristretto255_sub(out, a, b) != 0:
            raise InvalidEncoding("ristretto255: not a valid element")
        return bytes(out)

    def eq(self, a: bytes, b: bytes) -> bool:
        # Encodings are canonical, so equality of elements is equality of bytes.
        return a == b

    def encode(self, element: bytes) -> bytes:
        return element

    def decode(self, data: bytes, *, allow_identity: bool = False) -> bytes:
        self._check_length(data, 32, "an element")
        data = bytes(data)
        if data == _IDENTITY:
            if allow_identity:
                return _IDENTITY
            raise InvalidEncoding("ristretto255: the identity is not allowed here")
        if lib.crypto_core_ristretto255_is_valid_point(data) != 1:
            raise InvalidEncoding("ristretto255: not a canonical element encoding")
        return data

    def encode_scalar(self, k: int) -> bytes:
        return (k % _L).to_bytes(32, "little")

    def decode_scalar(self, data: bytes) -> int:
        self._check_length(data, 32, "a scalar")
        k = int.from_bytes(data, "little")
        if k >= _L:
            raise InvalidEncoding("ristretto255: scalar is not below the group order")
        return k

    def hash_to_scalar(self, dst: bytes, msg: bytes) -> int:
        return int.from_bytes(expand_message_xmd(msg, dst, 64), "little") % _L

    def hash_to_element(self, dst: bytes, msg: bytes) -> bytes:
        # RFC 9380 hash_to_ristretto255: expand to 64 bytes, then the one-way map.
        uniform = expand_message_xmd(msg, dst, 64)
        out = ffi.new("unsigned char[32]")
        lib.crypto_core_ristretto255_from_hash(out, uniform)
        return bytes(out)


RISTRETTO255 = Ristretto255()
