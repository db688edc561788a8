"""Reading the audit trail from several nodes: only what f + 1 of them agree on, in a chain
that verifies; a node whose page is malformed or unchained is named."""

from __future__ import annotations

from typing import Any

from kmsnode.client._audit import agree_on_audit
from kmsnode.state import AuditTrail


def trail(n: int, outcome: str = "ok") -> list[dict[str, Any]]:
    t = AuditTrail()
    for i in range(n):
        t.append(
            height=i + 1,
            timestamp_ms=1000 * i,
            request_id=bytes([i]) * 32,
            client=b"c" * 32,
            op="decrypt",
            key_id="key-1",
            outcome=outcome if i == n - 1 else "ok",
        )
    return [e.to_json() for e in t.entries]


def page(entries: list[dict[str, Any]], start: int = 0, total: int | None = None) -> Any:
    return {"entries": entries[start:], "total": len(entries) if total is None else total}


def test_honest_nodes_at_different_heights_agree_on_the_common_prefix() -> None:
    full, behind = trail(5), trail(3)
    got = agree_on_audit({1: page(full), 2: page(full), 3: page(behind), 4: page(full)}, 0, 100, 2)
    assert [e.index for e in got.entries] == [0, 1, 2, 3, 4]
    assert got.total == 5 and got.misbehaving == ()
    # Only one node has entries 3 and 4: not agreed yet.
    got = agree_on_audit({1: page(full), 3: page(behind)}, 0, 100, 2)
    assert [e.index for e in got.entries] == [0, 1, 2]


def test_a_lying_node_that_rewrites_an_entry_and_its_chain_is_outvoted() -> None:
    honest, forged = trail(4), trail(4, outcome="access_denied")  # a consistent forged chain
    got = agree_on_audit({1: page(honest), 2: page(honest), 3: page(forged)}, 0, 100, 2)
    assert [e.outcome for e in got.entries] == ["ok"] * 4
    # With only the liar and one honest node, the forged entry is not agreed: the page stops.
    got = agree_on_audit({1: page(honest), 3: page(forged)}, 0, 100, 2)
    assert [e.index for e in got.entries] == [0, 1, 2]


def test_malformed_or_unchained_pages_name_their_node() -> None:
    honest = trail(3)
    broken = [dict(e) for e in honest]
    broken[1]["outcome"] = "edited"  # its hash no longer matches
    answers = {
        1: page(honest),
        2: page(honest),
        3: page(broken),
        4: {"entries": "nope", "total": 3},
        5: "not a mapping",
        6: page(honest, start=1),  # asked from 0, answered from 1
    }
    got = agree_on_audit(answers, 0, 100, 2)
    assert got.misbehaving == (3, 4, 5, 6)
    assert [e.index for e in got.entries] == [0, 1, 2]


def test_a_page_from_the_middle_is_checked_and_agreed() -> None:
    full = trail(6)
    got = agree_on_audit({1: page(full, 2), 2: page(full, 2)}, 2, 100, 2)
    assert [e.index for e in got.entries] == [2, 3, 4, 5] and got.total == 6


def test_made_up_numbers_and_overlong_pages_name_the_node_instead_of_raising() -> None:
    honest = trail(3)
    liars: dict[int, Any] = {}
    for node, (field, value) in enumerate(
        [
            ("height", float("inf")),
            ("height", 1e30),
            ("timestamp_ms", "18446744073709551616"),
            ("index", -1),
            ("hash", 7),
        ],
        start=3,
    ):
        entries = [dict(e) for e in honest]
        entries[0][field] = value
        liars[node] = page(entries)
    liars[8] = {"entries": honest, "total": float("inf")}
    liars[9] = page(trail(150))  # asked for 100
    got = agree_on_audit({1: page(honest), 2: page(honest), **liars}, 0, 100, 2)
    assert got.misbehaving == tuple(sorted(liars))
    assert [e.index for e in got.entries] == [0, 1, 2]
