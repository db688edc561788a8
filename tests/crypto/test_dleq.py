"""DLEQ proofs: completeness, and no replay for another statement, prover or context."""

from __future__ import annotations

import pytest

from kmsnode.crypto import dleq
from kmsnode.crypto.dleq import DleqProof
from kmsnode.crypto.errors import InvalidEncoding, InvalidProof
from kmsnode.crypto.groups import Group


def _statement(group: Group[object]) -> tuple[int, object, object, object, object]:
    x = group.random_scalar()
    g = group.generator()
    h = group.hash_to_element(b"test-h", b"")
    return x, g, h, group.base_mul(x), group.mul(h, x)


def test_prove_verify(group: Group[object]) -> None:
    x, g, h, a, b = _statement(group)
    proof = dleq.prove(group, x, g, h, a, b, prover=3, context=b"ctx")
    dleq.verify(group, proof, g, h, a, b, prover=3, context=b"ctx")
    assert DleqProof.decode(group, proof.encode(group)) == proof


def test_replays_fail(group: Group[object]) -> None:
    x, g, h, a, b = _statement(group)
    proof = dleq.prove(group, x, g, h, a, b, prover=3, context=b"ctx")
    other_b = group.mul(h, x + 1)
    cases = [
        dict(g=g, h=h, a=a, b=other_b, prover=3, context=b"ctx"),  # another statement
        dict(g=g, h=h, a=a, b=b, prover=4, context=b"ctx"),  # another participant
        dict(g=g, h=h, a=a, b=b, prover=3, context=b"ctx2"),  # another session/ciphertext
        dict(g=h, h=g, a=b, b=a, prover=3, context=b"ctx"),  # swapped bases
    ]
    for case in cases:
        with pytest.raises(InvalidProof):
            dleq.verify(group, proof, **case)  # type: ignore[arg-type]


def test_wrong_secret_fails(group: Group[object]) -> None:
    x, g, h, a, _ = _statement(group)
    b = group.mul(h, x + 1)
    proof = dleq.prove(group, x, g, h, a, b, prover=1, context=b"")
    with pytest.raises(InvalidProof):
        dleq.verify(group, proof, g, h, a, b, prover=1, context=b"")


def test_decode_rejects_bad_bytes(group: Group[object]) -> None:
    with pytest.raises(InvalidEncoding):
        DleqProof.decode(group, b"\x00" * (2 * group.scalar_size - 1))
    too_big = group.order.to_bytes(group.scalar_size, group.scalar_byteorder)  # type: ignore[arg-type]
    with pytest.raises(InvalidEncoding):
        DleqProof.decode(group, too_big + bytes(group.scalar_size))
