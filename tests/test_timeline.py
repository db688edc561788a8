"""scripts/timeline.py: the hop analysis of merged flight-recorder events."""

from __future__ import annotations

from types import ModuleType

import pytest

from ._scripts import load_script

MS = 1_000_000


@pytest.fixture(scope="module")
def timeline() -> ModuleType:
    return load_script("timeline")


def test_hops_of_one_round_between_two_proposals(timeline: ModuleType) -> None:
    # Round 5 led by replica 1; replicas 2 and 3 get it, fsync, vote to replica 2 (leader of
    # round 6), which proposes round 6 once the second vote is in.
    rows = [
        (0 * MS, 1, "broadcast", [None, "Proposal", 5, 1]),
        (2 * MS, 2, "recv", [1, "Proposal", 5, 1]),
        (3 * MS, 3, "recv", [1, "Proposal", 5, 1]),
        (4 * MS, 3, "persist", [1]),
        (6 * MS, 3, "persisted", [1]),
        (6 * MS, 3, "send", [2, "Vote", 5, None]),
        (7 * MS, 1, "send", [2, "Vote", 5, None]),
        (9 * MS, 2, "recv", [3, "Vote", 5, None]),
        (10 * MS, 2, "recv", [1, "Vote", 5, None]),
        (11 * MS, 2, "broadcast", [None, "Proposal", 6, 2]),
        (15 * MS, 0, "timer", [6]),
    ]
    out = timeline.hops(rows)
    assert out["proposal transit"] == [2.0, 3.0]
    assert out["proposal in -> vote out"] == [3.0]
    assert out["vote fsync"] == [2.0]
    assert out["vote transit (first)"] == [3.0]
    assert out["round (proposal to proposal)"] == [11.0]
    assert out["QC's last vote in -> next proposal"] == [1.0]
    assert out["round timeouts"] == [6.0]
    text = timeline.summary(out)
    assert "round timeouts: 1" in text and "proposal transit" in text
