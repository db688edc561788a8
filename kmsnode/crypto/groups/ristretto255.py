"""ristretto255 (RFC 9496) over libsodium: the group of TDH2, homomorphic ElGamal and their DKG.

Elements are their canonical 32-byte encodings; libsodium decodes and checks them on every
operation. Ristretto's encoding is prime-order by construction: a string that decodes is in the
group, so no cofactor check is needed.
"""

from __future__ import annotations

from .._sodium import ffi, lib
from ..encoding import expand_message_xmd
from ..errors import InvalidEncoding
from ._sodium_group import L as _L
from ._sodium_group import SodiumGroup

_IDENTITY = bytes(32)


class Ristretto255(SodiumGroup):
    """The ristretto255 prime-order group; scalars little-endian, hashing with SHA-512."""

    name = "ristretto255"
    _identity = _IDENTITY
    _base_mul_fn = lib.crypto_scalarmult_ristretto255_base
    _mul_fn = lib.crypto_scalarmult_ristretto255
    _add_fn = lib.crypto_core_ristretto255_add
    _sub_fn = lib.crypto_core_ristretto255_sub

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

    def hash_to_scalar(self, dst: bytes, msg: bytes) -> int:
        return int.from_bytes(expand_message_xmd(msg, dst, 64), "little") % _L

    def hash_to_element(self, dst: bytes, msg: bytes) -> bytes:
        # RFC 9380 hash_to_ristretto255: expand to 64 bytes, then the one-way map.
        uniform = expand_message_xmd(msg, dst, 64)
        out = ffi.new("unsigned char[32]")
        lib.crypto_core_ristretto255_from_hash(out, uniform)
        return bytes(out)


RISTRETTO255 = Ristretto255()
