"""Table-driven byzantine cases for the DKG (issue 6): every honest node must decide the same."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from kmsnode.crypto import shamir
from kmsnode.crypto.dkg import Complaint, Deal, Justification, Message, Post, Rejected, Session
from kmsnode.crypto.dkg.testing import Identity, identities
from kmsnode.crypto.groups import RISTRETTO255

from ._sim import (
    DEADLINES,
    assert_agreement,
    assert_observer_agrees,
    complaint,
    dkg_session,
    forge_deal,
    justification,
    results,
    run_dkg,
)

G = RISTRETTO255
Hooks = tuple[Callable[[int, Message[Any]], Sequence[bytes]] | None, dict[int, list[bytes]]]


def _honest(node: int, msg: Message[Any]) -> list[bytes]:
    return [msg.encode()]


def bad_share_no_justification(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [forge_deal(s, ids[2], 2, bad_for={3: 12345})[0].encode()]
        if node == 2 and isinstance(msg, Justification):
            return []
        return [msg.encode()]

    return intercept, {}


def justification_fails_commitments(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [forge_deal(s, ids[2], 2, bad_for={3: 12345})[0].encode()]
        if node == 2 and isinstance(msg, Justification):
            return [justification(s, ids[2], 2, msg.complainer, 12345)]
        return [msg.encode()]

    return intercept, {}


def false_complaint(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    return None, {2: [complaint(s, ids[3], 3, 1)]}


def wrong_length_commitments(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [forge_deal(s, ids[2], 2, t=s.threshold + 1)[0].encode()]
        return [msg.encode()]

    return intercept, {}


def short_commitments(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [forge_deal(s, ids[2], 2, t=s.threshold - 1)[0].encode()]
        return [msg.encode()]

    return intercept, {}


def pok_copied_from_dealer(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    seen: dict[int, Deal[Any]] = {}

    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if isinstance(msg, Deal):
            seen[node] = msg
        if node == 2 and isinstance(msg, Deal):
            return [forge_deal(s, ids[2], 2, copy_of=seen[1])[0].encode()]
        return [msg.encode()]

    return intercept, {}


def pok_from_other_session(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [forge_deal(s, ids[2], 2, proof_from=(2, b"\x00" * 32))[0].encode()]
        return [msg.encode()]

    return intercept, {}


def two_deals(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [msg.encode(), forge_deal(s, ids[2], 2)[0].encode()]
        return [msg.encode()]

    return intercept, {}


def deal_after_deadline(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    late: list[bytes] = []

    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 4 and isinstance(msg, Deal):
            late.append(msg.encode())
            return []
        return [msg.encode()]

    return intercept, {DEADLINES["deal_deadline"] + 1: late}


def complaint_after_deadline(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    return None, {DEADLINES["complaint_deadline"] + 1: [complaint(s, ids[3], 3, 1)]}


def justification_after_deadline(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    # A *valid* justification, committed one height too late, does not save the dealer.
    deal, coefficients = forge_deal(s, ids[2], 2, bad_for={3: 7})
    good = shamir.evaluate(coefficients, 3, s.group.order)

    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [deal.encode()]
        if node == 2 and isinstance(msg, Justification):
            return []
        return [msg.encode()]

    late = justification(s, ids[2], 2, 3, good)
    return intercept, {DEADLINES["justification_deadline"]: [], 7: [late]}


def silent(*nodes: int) -> Callable[[Session[Any], Mapping[int, Identity]], Hooks]:
    def build(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
        return (lambda node, msg: [] if node in nodes else [msg.encode()]), {}

    return build


def complaint_sender_not_signer(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    # Node 4 frames dealer 1 in node 3's name; the signature is 4's.
    return None, {2: [complaint(s, ids[4], 3, 1)]}


def deal_sender_not_signer(s: Session[Any], ids: Mapping[int, Identity]) -> Hooks:
    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return []
        if node == 4 and isinstance(msg, Deal):  # 4 deals twice, once in 2's name
            return [msg.encode(), forge_deal(s, ids[4], 2)[0].encode()]
        return [msg.encode()]

    return intercept, {}


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Session[Any], Mapping[int, Identity]], Hooks]
    n: int = 4
    t: int = 3
    honest: tuple[int, ...] = (1, 2, 3, 4)
    succeeds: bool = True
    disqualified: tuple[int, ...] = ()
    rejected: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "bad share, no justification",
        bad_share_no_justification,
        honest=(1, 3, 4),
        disqualified=(2,),
    ),
    Case(
        "justification fails the commitments",
        justification_fails_commitments,
        honest=(1, 3, 4),
        disqualified=(2,),
    ),
    Case("false complaint is cleared", false_complaint, honest=(1, 2, 4)),
    Case(
        "too many commitments",
        wrong_length_commitments,
        honest=(1, 3, 4),
        disqualified=(2,),
        rejected="4 commitments, the threshold 3 needs exactly 3",
    ),
    Case(
        "too few commitments",
        short_commitments,
        honest=(1, 3, 4),
        disqualified=(2,),
        rejected="2 commitments",
    ),
    Case(
        "proof of knowledge copied from another dealer",
        pok_copied_from_dealer,
        honest=(1, 3, 4),
        disqualified=(2,),
        rejected="proof of knowledge",
    ),
    Case(
        "proof of knowledge from another session",
        pok_from_other_session,
        honest=(1, 3, 4),
        disqualified=(2,),
        rejected="proof of knowledge",
    ),
    Case(
        "two deals from one dealer: the first counts",
        two_deals,
        honest=(1, 3, 4),
        rejected="second deal from dealer 2",
    ),
    Case(
        "deal after the deadline",
        deal_after_deadline,
        honest=(1, 2, 3),
        disqualified=(4,),
        rejected="after the deal deadline",
    ),
    Case(
        "complaint after the deadline",
        complaint_after_deadline,
        honest=(1, 2, 4),
        rejected="after the complaint deadline",
    ),
    Case(
        "justification after the deadline",
        justification_after_deadline,
        honest=(1, 3, 4),
        disqualified=(2,),
    ),
    Case(
        "f silent dealers still succeed",
        silent(6, 7),
        n=7,
        t=5,
        honest=(1, 2, 3, 4, 5),
        disqualified=(6, 7),
    ),
    Case("too few honest dealers fail cleanly", silent(3, 4), honest=(1, 2), succeeds=False),
    Case(
        "complaint whose claimed sender is not the signer",
        complaint_sender_not_signer,
        honest=(1, 2, 3),
        rejected="claimed sender is not the signer",
    ),
    Case(
        "deal whose claimed sender is not the signer",
        deal_sender_not_signer,
        honest=(1, 2, 3),
        disqualified=(2,),
        rejected="claimed sender is not the signer",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_byzantine(case: Case) -> None:
    ids = identities(case.n)
    session = dkg_session(G, ids, case.t)
    intercept, inject = case.build(session, ids)
    sim, _, _ = run_dkg(
        G, case.n, case.t, ids=ids, session=session, intercept=intercept, inject=inject
    )
    assert_observer_agrees(G, sim, case.honest)
    if case.rejected is not None:
        reasons = [a.reason for a in sim.actions[case.honest[0]] if isinstance(a, Rejected)]
        assert any(case.rejected in r for r in reasons), reasons
    if not case.succeeds:
        failures = [sim.failed(i) for i in case.honest]
        assert all(f is not None for f in failures)
        assert all(sim.completed(i) is None for i in case.honest)
        assert len({f.reason for f in failures if f}) == 1  # everyone says the same
        reason = failures[0].reason  # type: ignore[union-attr]
        assert "only 2 valid deals" in reason and "3 needed" in reason
        assert "dealer 3: no deal committed" in reason and "retry" in reason
        return
    rs = results(sim, case.honest)
    assert_agreement(G, rs, case.t)
    assert tuple(sorted(rs[0].disqualified)) == case.disqualified
    assert set(rs[0].qualified) == set(range(1, case.n + 1)) - set(case.disqualified)


def test_disqualified_reasons_are_readable() -> None:
    ids = identities(4)
    session = dkg_session(G, ids, 3)
    intercept, _ = bad_share_no_justification(session, ids)
    sim, _, _ = run_dkg(G, 4, 3, ids=ids, session=session, intercept=intercept)
    (r,) = results(sim, [1])
    assert r.disqualified[2] == (
        "did not answer the complaint(s) by [3] before the justification deadline (height 6)"
    )


def test_complainer_gets_its_share_from_the_justification() -> None:
    ids = identities(4)
    session = dkg_session(G, ids, 3)
    # Dealer 2 sends 3 a bad share, then justifies honestly from the same polynomial.
    deal, coefficients = forge_deal(session, ids[2], 2, bad_for={3: 99})
    good = shamir.evaluate(coefficients, 3, G.order)

    def intercept(node: int, msg: Message[Any]) -> list[bytes]:
        if node == 2 and isinstance(msg, Deal):
            return [deal.encode()]
        if node == 2 and isinstance(msg, Justification):
            return [justification(session, ids[2], 2, 3, good)]
        return [msg.encode()]

    sim, _, _ = run_dkg(G, 4, 3, ids=ids, session=session, intercept=intercept)
    rs = results(sim, [1, 2, 3, 4])
    assert_agreement(G, rs, 3)
    assert rs[0].disqualified == {}
    complaints = [
        a for a in sim.actions[3] if isinstance(a, Post) and isinstance(a.message, Complaint)
    ]
    assert len(complaints) == 1
    assert rs[2].share is not None
