"""Chaum-Pedersen proofs that ``log_g(a) == log_h(b)``, non-interactive (Fiat-Shamir).

The challenge hashes the whole statement: the group, both bases, both images, both commitments,
the prover's participant id and a caller-supplied context (session, key, ciphertext), each
length-prefixed, under a domain tag of its own. A proof made for one statement, prover or
context does not verify for any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from .encoding import transcript, u16
from .errors import InvalidEncoding, InvalidProof
from .groups import Group, Rng, default_rng

E = TypeVar("E")

_CHALLENGE_DST = b"kmsnode/dleq/challenge/v1"
_NONCE_DST = b"kmsnode/dleq/nonce/v1"


@dataclass(frozen=True)
class DleqProof:
    """A proof as (challenge, response)."""

    challenge: int
    response: int

    def encode(self, group: Group[Any]) -> bytes:
        """``challenge || response``, two canonical scalars."""
        return group.encode_scalar(self.challenge) + group.encode_scalar(self.response)

    @classmethod
    def decode(cls, group: Group[Any], data: bytes) -> DleqProof:
        """Strictly decode a proof.

        Raises:
            InvalidEncoding: wrong length or a non-canonical scalar.
        """
        size = group.scalar_size
        if not isinstance(data, (bytes, bytearray)) or len(data) != 2 * size:
            raise InvalidEncoding(f"a DLEQ proof is {2 * size} bytes")
        return cls(group.decode_scalar(data[:size]), group.decode_scalar(data[size:]))


def _challenge(
    group: Group[E], g: E, h: E, a: E, b: E, r1: E, r2: E, prover: int, context: bytes
) -> int:
    enc = group.encode
    msg = transcript(
        group.name.encode(), enc(g), enc(h), enc(a), enc(b), enc(r1), enc(r2), u16(prover), context
    )
    return group.hash_to_scalar(_CHALLENGE_DST, msg)


def _mul(group: Group[E], base: E, k: int) -> E:
    if group.eq(base, group.generator()):
        return group.base_mul(k)
    return group.mul(base, k)


def prove(
    group: Group[E],
    x: int,
    g: E,
    h: E,
    a: E,
    b: E,
    *,
    prover: int,
    context: bytes,
    rng: Rng = default_rng,
) -> DleqProof:
    """Prove knowledge of ``x`` with ``a = x*g`` and ``b = x*h``.

    Security: the nonce is hedged: derived from fresh randomness *and* the secret and the
    statement, so a failing RNG does not leak ``x`` through a repeated nonce.
    """
    enc = group.encode
    k = group.hash_to_scalar(
        _NONCE_DST,
        transcript(rng(32), group.encode_scalar(x), enc(g), enc(h), enc(a), enc(b), context),
    )
    r1 = _mul(group, g, k)
    r2 = _mul(group, h, k)
    c = _challenge(group, g, h, a, b, r1, r2, prover, context)
    return DleqProof(c, (k + c * x) % group.order)


def verify(
    group: Group[E], proof: DleqProof, g: E, h: E, a: E, b: E, *, prover: int, context: bytes
) -> None:
    """Check a proof for exactly this statement, prover and context.

    Raises:
        InvalidProof: it does not verify.
    """
    c, z = proof.challenge, proof.response
    if not (0 <= c < group.order and 0 <= z < group.order):
        raise InvalidProof("DLEQ proof scalars out of range")
    r1 = group.sub(_mul(group, g, z), group.mul(a, c))
    r2 = group.sub(_mul(group, h, z), group.mul(b, c))
    if _challenge(group, g, h, a, b, r1, r2, prover, context) != c:
        raise InvalidProof("DLEQ proof does not verify")


__all__ = ["DleqProof", "InvalidEncoding", "prove", "verify"]
