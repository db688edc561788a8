"""The prime-order subgroup of edwards25519 over libsodium: the group of FROST(Ed25519, SHA-512).

Elements are their canonical 32-byte encodings (RFC 8032 §5.1.2), created only by this module
after strict validation, so every element inside the code is a canonical point of the
prime-order subgroup (or the identity). Scalars are little-endian and below ``L``.

Strict decoding rejects: a wrong length; ``y >= p``; the sign bit set on a point whose ``x`` is
0 (the non-canonical encodings of the identity and of the point of order 2); points off the
curve; points of small order; and points with a small-order component (mixed order). The
subgroup check is ours: we multiply by ``L`` and require the identity. libsodium 1.0.18's
``crypto_core_ed25519_is_valid_point`` is not enough on its own: it accepts some mixed-order
points (CVE-2025-69277).

Security: ``base_mul`` and ``mul`` use libsodium's constant-time ``*_noclamp`` scalar
multiplication. libsodium refuses a zero scalar, a small-order input and an identity result;
the only such case for a valid element and a scalar reduced modulo ``L`` is ``k == 0`` or the
identity, which are answered here without calling it (a branch on ``k == 0``, which a uniformly
random secret hits with probability 2^-252).
"""

from __future__ import annotations

from .._sodium import ffi, lib
from ..encoding import expand_message_xmd
from ..errors import InvalidEncoding
from ._sodium_group import L as _L
from ._sodium_group import SodiumGroup

_P = 2**255 - 19
_IDENTITY = (1).to_bytes(32, "little")
_L_BYTES = _L.to_bytes(32, "little")


class Ed25519(SodiumGroup):
    """The order-``L`` subgroup of edwards25519; scalars little-endian, hashing with SHA-512."""

    name = "ed25519"
    _identity = _IDENTITY
    _base_mul_fn = lib.crypto_scalarmult_ed25519_base_noclamp
    _mul_fn = lib.crypto_scalarmult_ed25519_noclamp
    _add_fn = lib.crypto_core_ed25519_add
    _sub_fn = lib.crypto_core_ed25519_sub

    # -- encodings --------------------------------------------------------------------------
    def decode(self, data: bytes, *, allow_identity: bool = False) -> bytes:
        self._check_length(data, 32, "an element")
        data = bytes(data)
        y = int.from_bytes(data, "little") & ((1 << 255) - 1)
        x_negative = data[31] >> 7
        if y >= _P:
            raise InvalidEncoding("ed25519: y coordinate is not reduced")
        if x_negative and y in (1, _P - 1):
            # x == 0 for these two points, and -0 is not a canonical sign.
            raise InvalidEncoding("ed25519: non-canonical sign bit")
        if data == _IDENTITY:
            if allow_identity:
                return _IDENTITY
            raise InvalidEncoding("ed25519: the identity is not allowed here")
        # On the curve and not of small order (libsodium), then in the prime-order subgroup
        # (ours: L * P must be the identity; libsodium reports an identity result as -1, and
        # leaves ``out`` untouched when it refuses the input, so we read the bytes it wrote).
        if lib.crypto_core_ed25519_is_valid_point(data) != 1:
            raise InvalidEncoding("ed25519: not a valid point of the prime-order subgroup")
        out = ffi.new("unsigned char[32]")
        lib.crypto_scalarmult_ed25519_noclamp(out, _L_BYTES, data)
        if bytes(out) != _IDENTITY:
            raise InvalidEncoding("ed25519: not a valid point of the prime-order subgroup")
        return data

    # -- hashing ------------------------------------------------------------------------------
    def hash_to_scalar(self, dst: bytes, msg: bytes) -> int:
        return reduce_wide(expand_message_xmd(msg, dst, 64))

    def hash_to_element(self, dst: bytes, msg: bytes) -> bytes:
        # Two independent Elligator 2 maps (libsodium's from_hash clears the cofactor), added:
        # a point of the prime-order subgroup with a discrete log nobody knows.
        uniform = expand_message_xmd(msg, dst, 128)
        halves = []
        for chunk in (uniform[:64], uniform[64:]):
            out = ffi.new("unsigned char[32]")
            if lib.crypto_core_ed25519_from_hash(out, chunk) != 0:
                raise AssertionError("ed25519: from_hash failed")  # documented never to fail
            halves.append(bytes(out))
        return self.add(halves[0], halves[1])


def reduce_wide(data: bytes) -> int:
    """A 64-byte little-endian string reduced modulo ``L`` (libsodium, constant time).

    Security: used for hashes of secret material (hedged nonces), hence the library call.
    """
    if len(data) != 64:
        raise ValueError("reduce_wide takes exactly 64 bytes")
    out = ffi.new("unsigned char[32]")
    lib.crypto_core_ed25519_scalar_reduce(out, data)
    return int.from_bytes(bytes(out), "little")


def mul_add(a: int, b: int, c: int) -> int:
    """``a * b + c mod L`` with libsodium's constant-time scalar arithmetic.

    Security: for signature shares, where every operand but the public factor is secret.
    """
    prod = ffi.new("unsigned char[32]")
    lib.crypto_core_ed25519_scalar_mul(
        prod, (a % _L).to_bytes(32, "little"), (b % _L).to_bytes(32, "little")
    )
    out = ffi.new("unsigned char[32]")
    lib.crypto_core_ed25519_scalar_add(out, prod, (c % _L).to_bytes(32, "little"))
    return int.from_bytes(bytes(out), "little")


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature (libsodium's RFC 8032 check)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    return bool(lib.crypto_sign_verify_detached(signature, message, len(message), public_key) == 0)


ED25519 = Ed25519()
