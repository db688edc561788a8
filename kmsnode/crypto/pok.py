"""Schnorr proofs of knowledge of a discrete log, bound to a prover and a context.

Used by DKG dealers to prove they know the constant term behind their first Feldman commitment,
which rules out rogue-key dealings (a commitment chosen as a function of other dealers') and
copying another dealer's deal. The challenge hashes the whole statement: the group, its
generator, the public point, the commitment, the prover's id and the caller's context (the
session id), each length-prefixed, under a domain tag of its own; a proof made for one dealer
or session does not verify for any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from .encoding import transcript, u16
from .errors import InvalidEncoding, InvalidProof
from .groups import Group, Rng, default_rng

E = TypeVar("E")

_CHALLENGE_DST = b"kmsnode/pok/schnorr/challenge/v1"
_NONCE_DST = b"kmsnode/pok/schnorr/nonce/v1"


@dataclass(frozen=True)
class SchnorrProof:
    """A proof as (challenge, response); both are public."""

    challenge: int
    response: int

    def encode(self, group: Group[Any]) -> bytes:
        """``challenge || response``, two canonical scalars."""
        return group.encode_scalar(self.challenge) + group.encode_scalar(self.response)

    @classmethod
    def decode(cls, group: Group[Any], data: bytes) -> SchnorrProof:
        """Strictly decode a proof.

        Raises:
            InvalidEncoding: wrong length or a non-canonical scalar.
        """
        size = group.scalar_size
        if not isinstance(data, (bytes, bytearray)) or len(data) != 2 * size:
            raise InvalidEncoding(f"a Schnorr proof is {2 * size} bytes")
        return cls(group.decode_scalar(data[:size]), group.decode_scalar(data[size:]))


def _challenge(group: Group[E], public: E, commitment: E, prover: int, context: bytes) -> int:
    enc = group.encode
    msg = transcript(
        group.name.encode(),
        enc(group.generator()),
        enc(public),
        enc(commitment),
        u16(prover),
        context,
    )
    return group.hash_to_scalar(_CHALLENGE_DST, msg)


def prove(
    group: Group[E],
    secret: int,
    public: E,
    *,
    prover: int,
    context: bytes,
    rng: Rng = default_rng,
) -> SchnorrProof:
    """Prove knowledge of ``secret`` with ``public = secret * G``, as ``prover`` in ``context``.

    Security: the nonce is hedged (fresh randomness, the secret and the statement), so a
    failing RNG cannot repeat a nonce across two statements and leak ``secret``.
    """
    k = group.hash_to_scalar(
        _NONCE_DST,
        transcript(
            rng(32), group.encode_scalar(secret), group.encode(public), u16(prover), context
        ),
    )
    commitment = group.base_mul(k)
    c = _challenge(group, public, commitment, prover, context)
    return SchnorrProof(c, (k + c * secret) % group.order)


def verify(group: Group[E], proof: SchnorrProof, public: E, *, prover: int, context: bytes) -> None:
    """Check a proof for exactly this public point, prover and context.

    Raises:
        InvalidProof: it does not verify.
    """
    c, z = proof.challenge, proof.response
    if not (0 <= c < group.order and 0 <= z < group.order):
        raise InvalidProof("proof of knowledge scalars out of range")
    commitment = group.sub(group.base_mul(z), group.mul(public, c))
    if _challenge(group, public, commitment, prover, context) != c:
        raise InvalidProof("proof of knowledge does not verify")


__all__ = ["SchnorrProof", "prove", "verify"]
