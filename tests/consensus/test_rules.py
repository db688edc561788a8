"""Table-driven tests for each clause of the 2-chain rules (DESIGN §5)."""

from __future__ import annotations

import pytest

from consensus import (
    ChainId,
    CommitRule,
    NodeId,
    Pacemaker,
    ProposeRule,
    Round,
    RoundRobin,
    SafetyData,
    Signer,
    TimeoutRule,
    Vote,
    VoteRule,
)
from consensus._types import BlockId


def safety(lvr: int, ocr: int) -> SafetyData:
    return SafetyData(Round(lvr), Round(ocr))


# (last_voted_round, block_round, qc_round, tc_round, tc_max_hqc_round, expected, clause)
VOTE_TABLE = [
    (0, 1, 0, None, None, True, "fresh replica, B.round == qc.round + 1"),
    (4, 5, 4, None, None, True, "happy path"),
    (5, 5, 4, None, None, False, "B.round == last_voted_round: never vote twice in a round"),
    (6, 5, 4, None, None, False, "B.round < last_voted_round"),
    (4, 6, 4, None, None, False, "gap without a TC"),
    (4, 6, 4, 5, 4, True, "TC for round-1 and qc.round == max hqc round in tc"),
    (4, 6, 3, 5, 4, False, "TC for round-1 but qc.round < max hqc round in tc"),
    (4, 6, 5, 5, 4, True, "qc.round + 1 suffices even with a TC"),
    (4, 7, 4, 5, 4, False, "TC not for round-1"),
    (4, 6, 4, 5, 3, True, "qc.round above the tc's max hqc round"),
    (6, 6, 4, 5, 4, False, "TC clause still needs B.round > last_voted_round"),
]


@pytest.mark.parametrize(("lvr", "br", "qr", "tr", "th", "ok", "clause"), VOTE_TABLE)
def test_vote_rule(
    lvr: int, br: int, qr: int, tr: int | None, th: int | None, ok: bool, clause: str
) -> None:
    rule = VoteRule()
    got = rule.allows(
        safety(lvr, 0),
        Round(br),
        Round(qr),
        None if tr is None else Round(tr),
        None if th is None else Round(th),
    )
    assert got is ok, clause


# (last_voted_round, one_chain_round, round, hqc_round, tc_round, expected, clause)
TIMEOUT_TABLE = [
    (0, 0, 1, 0, None, True, "fresh replica times out round 1"),
    (5, 3, 5, 4, None, True, "round == last_voted_round is allowed (>=)"),
    (6, 3, 5, 4, None, False, "round < last_voted_round"),
    (4, 3, 6, 4, 5, True, "round == tc.round + 1"),
    (4, 3, 6, 4, None, False, "neither hqc.round + 1 nor tc.round + 1"),
    (4, 3, 7, 4, 5, False, "tc not for round-1"),
    (4, 5, 5, 4, None, False, "hqc.round < one_chain_round"),
    (4, 4, 5, 4, None, True, "hqc.round == one_chain_round"),
    (4, 5, 6, 4, 5, False, "tc clause still needs hqc.round >= one_chain_round"),
]


@pytest.mark.parametrize(("lvr", "ocr", "r", "hq", "tc", "ok", "clause"), TIMEOUT_TABLE)
def test_timeout_rule(
    lvr: int, ocr: int, r: int, hq: int, tc: int | None, ok: bool, clause: str
) -> None:
    got = TimeoutRule().allows(
        safety(lvr, ocr), Round(r), Round(hq), None if tc is None else Round(tc)
    )
    assert got is ok, clause


@pytest.mark.parametrize(
    ("parent", "child", "ok"), [(3, 4, True), (3, 5, False), (3, 3, False), (0, 1, True)]
)
def test_commit_rule_needs_consecutive_rounds(parent: int, child: int, ok: bool) -> None:
    assert CommitRule().commits(Round(parent), Round(child)) is ok


@pytest.mark.parametrize(
    ("leader", "round", "proposed", "work", "ok"),
    [
        (True, 5, 4, True, True),
        (False, 5, 4, True, False),
        (True, 5, 5, True, False),
        (True, 5, 4, False, False),
    ],
)
def test_propose_rule(leader: bool, round: int, proposed: int, work: bool, ok: bool) -> None:
    assert ProposeRule().should_propose(leader, Round(round), Round(proposed), work) is ok


@pytest.mark.parametrize(("round", "hqc", "tc"), [(5, 4, False), (5, 3, True), (7, 2, True)])
def test_propose_rule_attaches_tc_after_a_timeout(round: int, hqc: int, tc: bool) -> None:
    assert ProposeRule().needs_tc(Round(round), Round(hqc)) is tc


def test_safety_transitions() -> None:
    s = Signer.from_seed(b"x")
    v = Vote.create(ChainId(b"c"), Round(7), BlockId(bytes(32)), NodeId(0), s)
    after = safety(3, 5).after_vote(v, Round(4))
    assert (after.last_voted_round, after.one_chain_round, after.last_vote) == (7, 5, v)
    after = safety(3, 2).after_vote(v, Round(6))
    assert after.one_chain_round == 6
    assert safety(3, 2).after_timeout(Round(9)).last_voted_round == 9
    assert safety(9, 2).after_timeout(Round(4)).last_voted_round == 9
    assert SafetyData.decode(after.encode(), ChainId(b"c")) == after


@pytest.mark.parametrize(
    ("round", "last_commit", "expected"),
    [(5, 4, 1.0), (6, 4, 2.0), (7, 4, 4.0), (30, 4, 30.0), (10**6, 0, 30.0)],
)
def test_pacemaker_backoff(round: int, last_commit: int, expected: float) -> None:
    assert Pacemaker(1.0, 2.0, 30.0).timeout(Round(round), Round(last_commit)) == expected


def test_round_robin() -> None:
    rr = RoundRobin(4)
    assert [rr.leader(Round(r)) for r in range(6)] == [0, 1, 2, 3, 0, 1]
