"""Threshold BLS signatures on BLS12-381 (the Ethereum POP ciphersuite, pk in G1, sig in G2).

Ciphersuite ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_``.

Public keys and verification keys are in G1 (48 bytes), signatures in G2 (96 bytes): the
Ethereum layout, so a combined signature verifies with any IETF-conformant library (py_ecc's
``G2ProofOfPossession.Verify`` in our tests).

- A node's *partial signature* is an ordinary BLS signature under its share ``x_i``:
  ``sigma_i = x_i * H(m)``, computed by blst (constant time).
- Anyone checks it against the node's verification key ``Y_i = x_i * G1`` by a pairing:
  ``e(Y_i, H(m)) == e(G1, sigma_i)``.
- Any ``t`` valid partials from distinct nodes combine by Lagrange in G2 into ``x * H(m)``;
  ``threshold.select_partials`` counts each node once and names the ones that cheat.

Rogue keys: aggregating signatures from several keys (``fast_aggregate_verify``) is only sound
when every key comes with a proof of possession, a signature of the key's own encoding under
the separate tag ``BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_``; a threshold key gets one by
combining partial proofs exactly like a signature.

Security: secret scalars only meet blst (``blspy``) or the constant-shape ladder of
``groups.bls12_381``; pairings, hashing to G2 and the Lagrange combination (public data) use
arkworks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import blspy
from py_arkworks_bls12381 import GT, G1Point, G2Point

from .errors import (
    InvalidEncoding,
    InvalidParameters,
    InvalidPartial,
    InvalidProof,
    InvalidSignature,
)
from .groups import BLS12_381_G1 as G1
from .groups import BLS12_381_G2 as G2
from .shamir import Share, lagrange_coefficients, validate_ids
from .threshold import select_partials

SIG_DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
POP_DST = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
PUBLIC_KEY_SIZE = 48
SIGNATURE_SIZE = 96

_NEG_G1 = -G1.generator()


@dataclass(frozen=True)
class PartialSignature:
    """One node's BLS signature under its share (public once released)."""

    signer: int
    signature: G2Point

    def encode(self) -> bytes:
        """``signer:u16 | compressed G2 signature`` (98 bytes)."""
        return struct.pack(">H", self.signer) + G2.encode(self.signature)

    @classmethod
    def decode(cls, data: bytes) -> PartialSignature:
        """Strictly decode a partial signature (valid G2 point, not the identity, id != 0).

        Raises:
            InvalidEncoding: wrong length, identifier 0, or an invalid point.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) != 2 + SIGNATURE_SIZE:
            raise InvalidEncoding(f"a BLS partial signature is {2 + SIGNATURE_SIZE} bytes")
        (signer,) = struct.unpack(">H", data[:2])
        if signer == 0:
            raise InvalidEncoding("BLS partial signature: participant identifier 0")
        return cls(signer, G2.decode(data[2:]))


# -- keys -------------------------------------------------------------------------------------


def _secret_key(secret: int) -> blspy.PrivateKey:
    secret %= G1.order
    if secret == 0:
        raise InvalidParameters("a BLS secret key or share must not be 0")
    return blspy.PrivateKey.from_bytes(secret.to_bytes(32, "big"))


def public_key(secret: int) -> G1Point:
    """``secret * G1`` (blst, constant time)."""
    return G1.base_mul(secret)


def decode_public_key(data: bytes) -> G1Point:
    """KeyValidate: a canonical G1 point of the prime-order subgroup, not the identity.

    Raises:
        InvalidEncoding: anything else.
    """
    return G1.decode(data)


def _hash(message: bytes, dst: bytes = SIG_DST) -> G2Point:
    return G2.hash_to_element(dst, message)


# -- single-key operations (the building blocks) ---------------------------------------------


def sign(secret: int, message: bytes) -> bytes:
    """A BLS signature ``secret * H(message)`` under the POP ciphersuite (blst, constant time).

    Raises:
        InvalidParameters: ``secret`` is 0.
    """
    return bytes(blspy.PopSchemeMPL.sign(_secret_key(secret), message))


def _pairing_ok(key: G1Point, hashed: G2Point, signature: G2Point) -> bool:
    return bool(GT.pairing_check([key, _NEG_G1], [hashed, signature]))


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check a BLS signature (IETF CoreVerify, with KeyValidate on the public key).

    Raises:
        InvalidSignature: opaque: bad key, bad signature encoding, or a wrong signature.
    """
    try:
        key = G1.decode(public_key)
        sig = G2.decode(signature)
    except InvalidEncoding:
        raise InvalidSignature() from None
    if not _pairing_ok(key, _hash(message), sig):
        raise InvalidSignature()


def prove_possession(secret: int) -> bytes:
    """A proof of possession of ``secret``: its signature of its own public key, under POP_DST."""
    return bytes(blspy.PopSchemeMPL.pop_prove(_secret_key(secret)))


def verify_possession(public_key: bytes, proof: bytes) -> None:
    """Check a proof of possession (IETF PopVerify).

    Raises:
        InvalidProof: the key or the proof is malformed, or the proof does not verify.
    """
    try:
        key = G1.decode(public_key)
        pop = G2.decode(proof)
    except InvalidEncoding:
        raise InvalidProof("invalid proof of possession") from None
    if not _pairing_ok(key, _hash(bytes(public_key), POP_DST), pop):
        raise InvalidProof("invalid proof of possession")


def aggregate(signatures: Sequence[bytes]) -> bytes:
    """The sum of signatures (for ``fast_aggregate_verify``).

    Raises:
        InvalidEncoding: a signature is not a valid G2 point, or there is none.
    """
    if not signatures:
        raise InvalidEncoding("no signatures to aggregate")
    return G2.encode(G2.sum([G2.decode(s) for s in signatures]))


def fast_aggregate_verify(
    public_keys: Sequence[bytes], proofs: Sequence[bytes], message: bytes, signature: bytes
) -> None:
    """Check an aggregate signature of one message by several keys, each with its PoP.

    Security: without the proofs of possession an attacker can pick a key ``x*G - Y`` that
    cancels an honest key ``Y`` and "aggregate" a signature nobody else made; every key's
    proof is checked first, and a key without a valid one is refused.

    Raises:
        InvalidProof: key number ``i`` (0-based, named in the message) has no valid proof.
        InvalidSignature: opaque: the aggregate signature does not verify.
    """
    if not public_keys or len(public_keys) != len(proofs):
        raise InvalidParameters("one proof of possession per public key is needed")
    for i, (key, proof) in enumerate(zip(public_keys, proofs, strict=True)):
        try:
            verify_possession(key, proof)
        except InvalidProof:
            raise InvalidProof(f"public key {i} has no valid proof of possession") from None
    combined = G1.sum([G1.decode(k) for k in public_keys])
    if G1.is_identity(combined):
        raise InvalidSignature()
    verify(G1.encode(combined), message, signature)


# -- threshold operations ---------------------------------------------------------------------


def partial_sign(share: Share, message: bytes) -> PartialSignature:
    """This node's partial signature of ``message``: a BLS signature under its share.

    Raises:
        InvalidParameters: the share's id or value is invalid.
    """
    validate_ids([share.id], G1.order)
    signature = blspy.PopSchemeMPL.sign(_secret_key(share.value), message)
    return PartialSignature(share.id, G2.decode(bytes(signature)))


def partial_prove_possession(share: Share, group_public_key: bytes) -> PartialSignature:
    """This node's partial proof of possession of a threshold key (combine with ``combine``).

    Security: blspy signs only under the signature tag, so the multiplication of the hashed
    key by the share runs the constant-shape ladder of ``groups.bls12_381`` (slower, rare).
    """
    validate_ids([share.id], G1.order)
    if share.value % G1.order == 0:
        raise InvalidParameters("a BLS share must not be 0")
    hashed = _hash(bytes(group_public_key), POP_DST)
    return PartialSignature(share.id, G2.mul(hashed, share.value))


def verify_partial(
    partial: PartialSignature,
    verification_key: G1Point,
    message: bytes,
    *,
    dst: bytes = SIG_DST,
    hashed: G2Point | None = None,
) -> None:
    """Check a partial signature against its signer's verification key ``Y_i`` by pairing.

    ``hashed`` may carry ``H(message)`` when checking many partials of one message.

    Raises:
        InvalidPartial: the partial does not verify; ``culprits`` names its signer.
    """
    point = _hash(message, dst) if hashed is None else hashed
    if G1.is_identity(verification_key) or not _pairing_ok(
        verification_key, point, partial.signature
    ):
        raise InvalidPartial("BLS partial signature does not verify", [partial.signer])


def combine(
    partials: Iterable[PartialSignature],
    message: bytes,
    verification_keys: Mapping[int, G1Point],
    t: int,
    *,
    dst: bytes = SIG_DST,
) -> bytes:
    """The key's signature of ``message`` from any ``t`` valid partials of distinct signers.

    Partials are checked in the order given until ``t`` signers have a valid one; a signer
    that sends its partial twice counts once; a partial from outside ``verification_keys`` or
    one that fails its pairing check makes its sender a culprit. Pass ``dst=POP_DST`` and the
    group key's encoding as ``message`` to combine partial proofs of possession.

    Raises:
        NotEnoughPartials: fewer than ``t`` distinct valid partials; ``culprits`` names the
            senders of invalid ones (ask other nodes, without them).
        InvalidParameters: ``t`` is not positive.
    """
    if t < 1:
        raise InvalidParameters("threshold t must be at least 1")
    hashed = _hash(message, dst)

    def check(partial: PartialSignature) -> None:
        verify_partial(partial, verification_keys[partial.signer], message, hashed=hashed)

    chosen, _culprits = select_partials(
        partials,
        participant=lambda p: p.signer,
        verify=check,
        committee=verification_keys,
        needed=t,
    )
    ids = [p.signer for p in chosen]
    lambdas = lagrange_coefficients(ids, G2.order)
    combined = G2.lincomb([p.signature for p in chosen], [lambdas[i] for i in ids])
    return G2.encode(combined)


def combine_unchecked(partials: Sequence[PartialSignature]) -> bytes:
    """The Lagrange combination of ``partials`` (distinct signers), with no check at all.

    For the optimistic path: check the result with ``verify`` (one pairing check instead of
    one per partial) and, only if it fails, fall back to ``combine`` to find the culprits. A
    result that verifies is the key's signature whatever the partials were.

    Raises:
        InvalidParameters: no partials, or a signer listed twice.
    """
    ids = [p.signer for p in partials]
    if not ids or len(set(ids)) != len(ids):
        raise InvalidParameters("combine_unchecked needs partials from distinct signers")
    validate_ids(ids, G2.order)
    lambdas = lagrange_coefficients(ids, G2.order)
    return G2.encode(G2.lincomb([p.signature for p in partials], [lambdas[i] for i in ids]))


def combine_possession(
    partials: Iterable[PartialSignature],
    group_public_key: bytes,
    verification_keys: Mapping[int, G1Point],
    t: int,
) -> bytes:
    """A threshold key's proof of possession from ``t`` partial proofs (see ``combine``)."""
    return combine(partials, bytes(group_public_key), verification_keys, t, dst=POP_DST)


__all__ = [
    "POP_DST",
    "SIG_DST",
    "PartialSignature",
    "aggregate",
    "combine",
    "combine_possession",
    "combine_unchecked",
    "decode_public_key",
    "fast_aggregate_verify",
    "partial_prove_possession",
    "partial_sign",
    "prove_possession",
    "public_key",
    "sign",
    "verify",
    "verify_partial",
    "verify_possession",
]
