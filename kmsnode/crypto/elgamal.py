"""Exponential ElGamal under a threshold key: encrypt integers, add them, decrypt only the sum.

``Enc(m) = (rG, mG + rY)``. Ciphertexts add component-wise and scale by public integers, so
anyone can aggregate encrypted counters without decrypting them; the key holders then produce
DLEQ-proven partials ``x_i * A`` for the *aggregate* only, and the client recovers ``mG`` and
finds ``m`` by baby-step giant-step within a declared bound.

Bounds: ``decrypt_sum`` searches ``[0, bound)``; ``bound`` up to 2^40 is accepted. For 2^32 a
table of 2^17 baby steps (about 20 MB) is built once per process and cached, after which the
worst-case search is 2^15 giant steps (``scripts/bench_crypto.py`` prints measured times).
Values are taken modulo the group order, so a negative total reads as a huge one and is
reported as out of bound.

Security: an ElGamal key must never also be a TDH2 key: a partial ``x_i * A`` for a chosen
``A = u`` would be a TDH2 decryption share. The replicated state gives each key one kind; the
proofs here are domain-separated from TDH2's as a second line.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import _edwards25519 as ed
from . import dleq
from .dleq import DleqProof
from .encoding import transcript, u16
from .errors import InvalidEncoding, InvalidParameters
from .groups import RISTRETTO255, Rng, default_rng
from .shamir import Share, lagrange_coefficients, validate_ids
from .threshold import select_partials

_SUITE = b"kmsnode/elgamal/ristretto255/v1"
MAX_BOUND = 2**40
CIPHERTEXT_VERSION = 1
_GROUP = RISTRETTO255


@dataclass(frozen=True)
class ElGamalCiphertext:
    """``(a, b) = (rG, mG + rY)`` over ristretto255."""

    a: bytes
    b: bytes

    def encode(self) -> bytes:
        """``0x01 | a | b``."""
        return bytes([CIPHERTEXT_VERSION]) + self.a + self.b

    @classmethod
    def decode(cls, data: bytes) -> ElGamalCiphertext:
        """Strictly decode a ciphertext (either part may be the identity, e.g. ``Enc(0)``).

        Raises:
            InvalidEncoding: wrong version or length, or invalid elements.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) != 65 or data[0] != 1:
            raise InvalidEncoding("an ElGamal ciphertext is 0x01 followed by two 32-byte elements")
        return cls(
            _GROUP.decode(bytes(data[1:33]), allow_identity=True),
            _GROUP.decode(bytes(data[33:65]), allow_identity=True),
        )


@dataclass(frozen=True)
class ElGamalPartial:
    """Participant ``id``'s share ``x_i * a`` of a sum's decryption, with its DLEQ proof."""

    id: int
    value: bytes
    proof: DleqProof

    def encode(self) -> bytes:
        """``id:u16 | x_i a | proof``."""
        return u16(self.id) + self.value + self.proof.encode(_GROUP)

    @classmethod
    def decode(cls, data: bytes) -> ElGamalPartial:
        """Strictly decode a partial.

        Raises:
            InvalidEncoding: wrong length, id 0, bad element or scalar.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) != 2 + 32 + 64:
            raise InvalidEncoding("an ElGamal partial is 98 bytes")
        pid = int.from_bytes(data[:2], "big")
        if pid == 0:
            raise InvalidEncoding("participant id 0 is not allowed")
        return cls(
            pid,
            _GROUP.decode(bytes(data[2:34]), allow_identity=True),
            DleqProof.decode(_GROUP, bytes(data[34:])),
        )


def encrypt_int(public_key: bytes, m: int, *, rng: Rng = default_rng) -> ElGamalCiphertext:
    """Encrypt the integer ``m`` (taken modulo the group order) under ``public_key``.

    Raises:
        InvalidEncoding: ``public_key`` is not a valid non-identity element.
    """
    y = _GROUP.decode(public_key)
    if not isinstance(m, int):
        raise InvalidParameters("m must be an integer")
    r = _GROUP.random_scalar(rng)
    return ElGamalCiphertext(_GROUP.base_mul(r), _GROUP.add(_GROUP.base_mul(m), _GROUP.mul(y, r)))


def add(*ciphertexts: ElGamalCiphertext) -> ElGamalCiphertext:
    """The encryption of the sum of the plaintexts."""
    return ElGamalCiphertext(
        _GROUP.sum([c.a for c in ciphertexts]), _GROUP.sum([c.b for c in ciphertexts])
    )


def scale(ciphertext: ElGamalCiphertext, k: int) -> ElGamalCiphertext:
    """The encryption of ``k`` times the plaintext (``k`` public, any integer)."""
    return ElGamalCiphertext(_GROUP.mul(ciphertext.a, k), _GROUP.mul(ciphertext.b, k))


def _context(ciphertext: ElGamalCiphertext, key_context: bytes) -> bytes:
    return transcript(_SUITE, b"partial", key_context, ciphertext.encode())


def partial_decrypt(
    share: Share, ciphertext: ElGamalCiphertext, *, key_context: bytes = b"", rng: Rng = default_rng
) -> ElGamalPartial:
    """A holder's partial ``x_i * a`` with a DLEQ proof; ``key_context`` binds key id/version."""
    validate_ids([share.id], _GROUP.order)
    value = _GROUP.mul(ciphertext.a, share.value)
    proof = dleq.prove(
        _GROUP,
        share.value,
        _GROUP.generator(),
        ciphertext.a,
        _GROUP.base_mul(share.value),
        value,
        prover=share.id,
        context=_context(ciphertext, key_context),
        rng=rng,
    )
    return ElGamalPartial(share.id, value, proof)


def verify_partial(
    partial: ElGamalPartial,
    verification_key: bytes,
    ciphertext: ElGamalCiphertext,
    *,
    key_context: bytes = b"",
) -> None:
    """Check one partial against its sender's verification key.

    Raises:
        InvalidProof: the proof fails for this ciphertext, key context and participant.
    """
    dleq.verify(
        _GROUP,
        partial.proof,
        _GROUP.generator(),
        ciphertext.a,
        verification_key,
        partial.value,
        prover=partial.id,
        context=_context(ciphertext, key_context),
    )


def combine_sum(
    ciphertext: ElGamalCiphertext,
    partials: Iterable[ElGamalPartial],
    verification_keys: Mapping[int, bytes],
    threshold: int,
    *,
    key_context: bytes = b"",
) -> tuple[bytes, tuple[int, ...]]:
    """Combine ``threshold`` verified partials into ``m * G`` (``discrete_log`` finds ``m``).

    Returns the element and the ids of participants whose partials were invalid.

    Raises:
        NotEnoughPartials: fewer than ``threshold`` valid partials.
    """
    validate_ids(verification_keys, _GROUP.order)
    chosen, culprits = select_partials(
        partials,
        participant=lambda p: p.id,
        verify=lambda p: verify_partial(
            p, verification_keys[p.id], ciphertext, key_context=key_context
        ),
        committee=verification_keys.keys(),
        needed=threshold,
    )
    lambdas = lagrange_coefficients([p.id for p in chosen], _GROUP.order)
    xa = _GROUP.lincomb([p.value for p in chosen], [lambdas[p.id] for p in chosen])
    return _GROUP.sub(ciphertext.b, xa), culprits


def decrypt_sum(
    ciphertext: ElGamalCiphertext,
    partials: Iterable[ElGamalPartial],
    verification_keys: Mapping[int, bytes],
    threshold: int,
    *,
    bound: int = 2**32,
    key_context: bytes = b"",
) -> tuple[int, tuple[int, ...]]:
    """Combine ``threshold`` verified partials and recover the plaintext ``m`` in ``[0, bound)``.

    Returns ``m`` and the ids of participants whose partials were invalid.

    Raises:
        NotEnoughPartials: fewer than ``threshold`` valid partials.
        InvalidParameters: ``bound`` out of range, or the value is not below ``bound``.
    """
    check_bound(bound)
    m_g, culprits = combine_sum(
        ciphertext, partials, verification_keys, threshold, key_context=key_context
    )
    return discrete_log(m_g, bound), culprits


def check_bound(bound: int) -> None:
    """Raises InvalidParameters unless ``bound`` is an int in ``1..MAX_BOUND``."""
    if not isinstance(bound, int) or isinstance(bound, bool) or not 1 <= bound <= MAX_BOUND:
        raise InvalidParameters(f"bound must be in 1..2^40, got {bound}")


# -- baby-step giant-step ------------------------------------------------------------------

_BATCH = 512
_table: dict[int, int] = {}
"""The one baby-step table kept (the largest built so far: it serves every smaller bound)."""
_table_lock = threading.Lock()


def _base4() -> ed.Point:
    # Ristretto decodes to a representative up to 4-torsion; multiplying by 4 removes it, so
    # every comparison is made between 4*P values, which are unique edwards25519 points.
    return ed.mul(ed.ristretto_decode(_GROUP.generator()), 4)


def _baby_table(steps: int) -> dict[int, int]:
    """A table of at least ``steps`` baby steps (its length is the step size to use).

    One thread builds it while others needing it wait (searches run in worker threads): two
    concurrent builds would each take the memory, and a smaller one finishing last would
    replace a larger one.
    """
    global _table
    table = _table
    if len(table) >= steps:
        return table
    with _table_lock:
        if len(_table) >= steps:
            return _table
        base = _base4()
        points: list[ed.Point] = [ed.IDENTITY]
        for _ in range(steps - 1):
            points.append(ed.add(points[-1], base))
        _table = {key: j for j, key in enumerate(ed.keys(points))}
        return _table


def discrete_log(element: bytes, bound: int) -> int:
    """``m`` in ``[0, bound)`` with ``m * G == element`` (public data; variable time).

    Raises:
        InvalidParameters: no such ``m`` below ``bound``.
    """
    steps = max(1, math.isqrt(bound - 1) + 1) if bound > 1 else 1
    # A power of two (so tables are shared across bounds), twice sqrt(bound): a baby step costs
    # less than a giant step (no per-search work), and the table is built once per process.
    table = _baby_table(2 << (steps - 1).bit_length())
    steps = len(table)
    base = _base4()
    giant = ed.neg(ed.mul(base, steps))
    current = ed.mul(ed.ristretto_decode(element), 4)
    giants = -(-bound // steps)
    i = 0
    while i < giants:
        batch: list[ed.Point] = []
        for _ in range(min(_BATCH, giants - i)):
            batch.append(current)
            current = ed.add(current, giant)
        for offset, key in enumerate(ed.keys(batch)):
            j = table.get(key)
            if j is not None:
                m = (i + offset) * steps + j
                if m < bound:
                    return m
        i += len(batch)
    raise InvalidParameters(f"the decrypted value is not in [0, {bound})")
