"""Helpers for the DKG tests: build sessions, run them in one process, forge byzantine messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kmsnode.crypto import feldman, pok, shamir
from kmsnode.crypto.dkg import (
    Complaint,
    Deal,
    DkgResult,
    Justification,
    Kind,
    Participant,
    Previous,
    Session,
)
from kmsnode.crypto.dkg._messages import share_aad
from kmsnode.crypto.dkg.testing import Identity, Intercept, Simulation, committee, identities
from kmsnode.crypto.groups import Group
from kmsnode.crypto.sealing import seal

OBSERVER = 0
DEADLINES = {"deal_deadline": 2, "complaint_deadline": 4, "justification_deadline": 6}
LAST_HEIGHT = 8


def dkg_session(group: Group[Any], ids: Mapping[int, Identity], t: int, **kw: Any) -> Session[Any]:
    """A fresh-DKG session over ``ids``."""
    args = {"key_id": "key-1", "version": 1, "epoch": 0, **DEADLINES, **kw}
    return Session(group=group, kind=Kind.DKG, committee=committee(ids), threshold=t, **args)


def run_dkg(
    group: Group[Any],
    n: int,
    t: int,
    *,
    intercept: Intercept[int, Any] | None = None,
    inject: Mapping[int, Sequence[bytes]] | None = None,
    ids: Mapping[int, Identity] | None = None,
    session: Session[Any] | None = None,
) -> tuple[Simulation[int, Any], Session[Any], Mapping[int, Identity]]:
    """Run a whole DKG of ``n`` members in one process."""
    ids = ids or identities(n)
    session = session or dkg_session(group, ids, t)
    parts = {
        i: Participant(session, signing_key=k.signing_key, sealing_key=k.sealing_key, id=i)
        for i, k in ids.items()
    }
    # Node 0 is a keyless observer (what the replicated state runs): it must reach the same
    # public outcome as the members; ``assert_observer_agrees`` checks it.
    parts[OBSERVER] = Participant.observer(session)
    sim: Simulation[int, Any] = Simulation(group, parts, intercept, dict(inject or {}))
    sim.run(LAST_HEIGHT)
    return sim, session, ids


def results(sim: Simulation[Any, Any], nodes: Sequence[Any]) -> list[DkgResult[Any]]:
    """Every listed node's result (asserting each completed)."""
    out = []
    for node in nodes:
        done = sim.completed(node)
        assert done is not None, f"node {node} did not complete: {sim.failed(node)}"
        out.append(done.result)
    return out


def assert_agreement(group: Group[Any], rs: Sequence[DkgResult[Any]], t: int) -> None:
    """Every result has the same public outputs, and the shares are a valid t-of-n sharing."""
    first = rs[0]
    enc = group.encode
    for r in rs[1:]:
        assert enc(r.public_key) == enc(first.public_key)
        assert r.qualified == first.qualified
        assert dict(r.disqualified) == dict(first.disqualified)
        assert {i: enc(v) for i, v in r.verification_keys.items()} == {
            i: enc(v) for i, v in first.verification_keys.items()
        }
    shares = [r.share for r in rs if r.share is not None]
    for s in shares:
        assert group.eq(group.base_mul(s.value), first.verification_keys[s.id])
    assert len(shares) >= t
    secret = shamir.recover(group, shares[:t], t)
    assert group.eq(group.base_mul(secret), first.public_key)
    secret2 = shamir.recover(group, shares[-t:], t)
    assert secret == secret2


def forge_deal(
    session: Session[Any],
    signer: Identity,
    dealer: int,
    *,
    t: int | None = None,
    constant: int | None = None,
    bad_for: Mapping[int, int] | None = None,
    proof_from: tuple[int, bytes] | None = None,
    copy_of: Deal[Any] | None = None,
) -> tuple[Deal[Any], list[int]]:
    """A deal signed by ``signer`` as ``dealer``, with chosen defects, and its polynomial.

    ``t`` sets the number of coefficients; ``bad_for`` maps recipients to the wrong values they
    get; ``proof_from`` makes the proof for another (prover, context); ``copy_of`` reuses
    another deal's commitments and proof.
    """
    g = session.group
    t = session.threshold if t is None else t
    secret = g.random_scalar() if constant is None else constant
    coefficients = shamir.random_polynomial(g, secret, t)
    commitments = feldman.commit(g, coefficients)
    prover, context = proof_from or (dealer, session.session_id)
    proof = pok.prove(g, secret, commitments[0], prover=prover, context=context)
    if copy_of is not None:
        commitments, proof = copy_of.commitments, copy_of.proof
    sealed = []
    for j, member in sorted(session.committee.items()):
        value = shamir.evaluate(coefficients, j, g.order)
        if bad_for and j in bad_for:
            value = bad_for[j]
        assert member.sealing_key is not None
        sealed.append(
            (
                j,
                seal(
                    member.sealing_key,
                    g.encode_scalar(value),
                    share_aad(session.session_id, dealer, j),
                ),
            )
        )
    deal = Deal.create(
        g, session.session_id, dealer, commitments, proof, sealed, signer.signing_key
    )
    return deal, coefficients


def complaint(session: Session[Any], signer: Identity, complainer: int, dealer: int) -> bytes:
    """A signed complaint's bytes."""
    return Complaint.create(
        session.group, session.session_id, complainer, dealer, signer.signing_key
    ).encode()


def justification(
    session: Session[Any], signer: Identity, dealer: int, complainer: int, share: int
) -> bytes:
    """A signed justification's bytes."""
    return Justification.create(
        session.group, session.session_id, dealer, complainer, share, signer.signing_key
    ).encode()


def previous_from(
    result: DkgResult[Any], members: Mapping[int, Identity], epoch: int
) -> Previous[Any]:
    """The ``Previous`` of a refresh or reshare, from a completed session's public result."""
    return Previous(
        committee=committee(members),
        threshold=result.threshold,
        public_key=result.public_key,
        verification_keys=dict(result.verification_keys),
        epoch=epoch,
    )


def assert_observer_agrees(
    group: Group[Any], sim: Simulation[Any, Any], honest: Sequence[int]
) -> None:
    """The keyless observer reached exactly the honest members' public outcome."""
    member = sim.completed(honest[0])
    seen = sim.completed(OBSERVER)
    if member is None:
        failed = sim.failed(honest[0])
        observed = sim.failed(OBSERVER)
        assert failed is not None and observed is not None
        assert observed.reason == failed.reason
        assert seen is None
        return
    assert seen is not None, f"observer did not complete: {sim.failed(OBSERVER)}"
    a, b = member.result, seen.result
    assert b.share is None
    assert group.encode(a.public_key) == group.encode(b.public_key)
    assert a.qualified == b.qualified and dict(a.disqualified) == dict(b.disqualified)
    assert {i: group.encode(v) for i, v in a.verification_keys.items()} == {
        i: group.encode(v) for i, v in b.verification_keys.items()
    }
