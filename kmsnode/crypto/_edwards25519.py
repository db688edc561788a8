"""Variable-time edwards25519 arithmetic in Python, for *public* data only.

Its one job is the baby-step giant-step search of an exponential-ElGamal sum: that needs
hundreds of thousands of point additions whose points are public (the decrypted aggregate
``m*G``), where libsodium's encoded-point API costs a decode and an encode per addition.
Points are kept in extended coordinates and normalised in batches (one inversion per batch).

Security: never pass a secret scalar or a secret-dependent point here.
"""

from __future__ import annotations

from collections.abc import Sequence

P = 2**255 - 19
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
D2 = 2 * D % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752

Point = tuple[int, int, int, int]  # extended (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def _is_negative(x: int) -> bool:
    return bool(x & 1)


def _sqrt_ratio_m1(u: int, v: int) -> tuple[bool, int]:
    v3 = v * v % P * v % P
    v7 = v3 * v3 % P * v % P
    r = u * v3 % P * pow(u * v7 % P, (P - 5) // 8, P) % P
    check = v * r % P * r % P
    correct = check == u % P
    flipped = check == (-u) % P
    flipped_i = check == (-u * SQRT_M1) % P
    if flipped or flipped_i:
        r = r * SQRT_M1 % P
    if _is_negative(r):
        r = P - r
    return correct or flipped, r


def ristretto_decode(data: bytes) -> Point:
    """RFC 9496 §4.3.1: a canonical ristretto255 encoding to an edwards25519 representative.

    Raises:
        ValueError: not a canonical encoding (callers pass only validated elements).
    """
    s = int.from_bytes(data, "little")
    if s >= P or _is_negative(s):
        raise ValueError("non-canonical ristretto255 encoding")
    ss = s * s % P
    u1 = (1 - ss) % P
    u2 = (1 + ss) % P
    u2_sqr = u2 * u2 % P
    v = (-(D * u1 % P * u1) - u2_sqr) % P
    was_square, invsqrt = _sqrt_ratio_m1(1, v * u2_sqr % P)
    den_x = invsqrt * u2 % P
    den_y = invsqrt * den_x % P * v % P
    x = 2 * s * den_x % P
    if _is_negative(x):
        x = P - x
    y = u1 * den_y % P
    t = x * y % P
    if not was_square or _is_negative(t) or y == 0:
        raise ValueError("invalid ristretto255 encoding")
    return (x, y, 1, t)


def add(p: Point, q: Point) -> Point:
    """Point addition (complete twisted-Edwards formula, a = -1)."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = t1 * D2 % P * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def neg(p: Point) -> Point:
    """``-p``."""
    x, y, z, t = p
    return (-x % P, y, z, -t % P)


def mul(p: Point, k: int) -> Point:
    """``k * p`` by double-and-add (variable time: public ``k`` only)."""
    acc = IDENTITY
    addend = p
    while k:
        if k & 1:
            acc = add(acc, addend)
        addend = add(addend, addend)
        k >>= 1
    return acc


def keys(points: Sequence[Point]) -> list[int]:
    """A canonical integer per point (affine ``y`` with the sign of ``x``), one inversion in all.

    Two points of the prime-order subgroup get the same key exactly when they are equal.
    """
    n = len(points)
    if n == 0:
        return []
    prefix = [0] * n
    acc = 1
    for i, pt in enumerate(points):
        prefix[i] = acc
        acc = acc * pt[2] % P
    inv = pow(acc, P - 2, P)
    out = [0] * n
    for i in range(n - 1, -1, -1):
        x, y, z, _ = points[i]
        zinv = inv * prefix[i] % P
        inv = inv * z % P
        out[i] = (y * zinv % P) | ((x * zinv % P) & 1) << 255
    return out
