"""The genesis digest nodes compare, and the bookkeeping of who to cut off for it (the
real-process check is in test_testnet.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kmsnode.genesis import Genesis
from kmsnode.genesis_check import (
    GENESIS_CHECK_INTERVAL,
    GENESIS_RETRY,
    GENESIS_RETRY_MAX,
    GenesisCheck,
    Unanswered,
    follow_peer,
    parse_answer,
)
from kmsnode.identity import NodeIdentity
from kmsnode.testing import make_genesis


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    identities = {i: NodeIdentity.generate() for i in range(1, 5)}
    return make_genesis(
        identities,
        (b"\x01" * 32,),
        f=1,
        t=3,
        addrs=lambda i: (f"/ip4/127.0.0.1/tcp/{9000 + i}",),
    )


def test_the_digest_ignores_addresses_only(genesis: Genesis) -> None:
    d = genesis.digest()
    assert len(d) == 32 and Genesis.from_json(genesis.to_json()).digest() == d
    moved = dataclasses.replace(
        genesis,
        nodes=tuple(
            dataclasses.replace(n, addrs=("/dns4/node.example/tcp/1",)) for n in genesis.nodes
        ),
    )
    assert moved.digest() == d
    two = dataclasses.replace(genesis, admins=(b"\x02" * 32, b"\x01" * 32))
    assert dataclasses.replace(two, admins=two.admins[::-1] + two.admins[:1]).digest() == (
        two.digest()
    )  # the admins are a set to the state: order and repeats are no matter
    other = NodeIdentity.generate()
    changes: list[dict[str, Any]] = [
        {"chain_id": "another"},
        {"f": 1, "t": 2},
        {"admins": (b"\x02" * 32,)},
        {"admins": (b"\x01" * 32, b"\x02" * 32)},
        {"rules_version": 2},
        {"min_deletion_wait_s": genesis.min_deletion_wait_s + 1},
        {"nodes": genesis.nodes[:3]},
    ]
    for field in ("signing_key", "network_key", "peer_id"):
        value = {
            "signing_key": other.signing_public,
            "network_key": other.network_public,
            "peer_id": "another-peer",
        }[field]
        nodes = (dataclasses.replace(genesis.nodes[0], **{field: value}), *genesis.nodes[1:])
        changes.append({"nodes": nodes})
    nodes = (dataclasses.replace(genesis.nodes[0], sealing_key=other.sealing_public),)
    changes.append({"nodes": nodes + genesis.nodes[1:]})
    digests = {dataclasses.replace(genesis, **c).digest() for c in changes}
    assert d not in digests and len(digests) == len(changes)


def test_peers_are_cut_off_until_they_show_the_same_genesis() -> None:
    mine, theirs = b"\xaa" * 32, b"\xbb" * 32
    check = GenesisCheck(mine, (2, 3, 4))
    assert check.cut_off == {2, 3, 4} and check.report()["unchecked"] == [2, 3, 4]
    assert check.answered(2, mine) == (True, GENESIS_CHECK_INTERVAL)
    assert check.cut_off == {3, 4}
    assert check.answered(3, theirs)[0] is True  # news, though still cut off
    assert check.cut_off == {3, 4} and check.mismatched == {3}
    assert check.answered(4, None)[0] is True  # older software: let in, reported
    assert check.cut_off == {3}
    assert check.report() == {
        "digest": mine.hex(),
        "mismatched": [3],
        "unchecked": [],
        "unsupported": [4],
    }
    # A silent peer keeps what it said; one that comes back with ours is let in again.
    assert check.unanswered(3) == GENESIS_RETRY and check.cut_off == {3}
    assert check.answered(3, theirs) == (False, GENESIS_RETRY_MAX)  # asked often
    assert check.answered(3, mine)[0] is True and check.cut_off == frozenset()
    # A peer restarted with another genesis is cut off at its next check.
    assert check.answered(2, theirs)[0] is True and check.cut_off == {2}


def test_retries_back_off_to_a_bound_and_reset_on_an_answer() -> None:
    check = GenesisCheck(b"\xaa" * 32, (2,))
    waits = [check.unanswered(2) for _ in range(40)]
    assert waits[:3] == [GENESIS_RETRY, 2 * GENESIS_RETRY, 4 * GENESIS_RETRY]
    assert max(waits) == GENESIS_RETRY_MAX and waits[-1] == GENESIS_RETRY_MAX
    check.answered(2, b"\xaa" * 32)
    assert check.unanswered(2) == GENESIS_RETRY


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([("genesis", b"\x01" * 32)], b"\x01" * 32),
        ([("err", {"reason": "unknown kind genesis"})], None),  # older software
    ],
)
def test_answers_are_parsed(frames: list[tuple[str, object]], expected: bytes | None) -> None:
    assert parse_answer(frames) == expected


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [("genesis", b"\x01" * 31)],
        [("genesis", "01" * 32)],
        [("genesis", None)],
        [("status", b"\x01" * 32)],
        [("genesis", b"\x01" * 32), ("genesis", b"\x01" * 32)],
        # Busy says nothing of the peer's genesis: asked again, not let in as older software.
        [("err", {"reason": "busy"})],
        [("err", {"reason": "internal error"})],
        [("err", "unknown kind")],
    ],
)
def test_odd_answers_are_refused(frames: list[tuple[str, object]]) -> None:
    with pytest.raises(ValueError):
        parse_answer(frames)


class _Spent(Exception):
    pass


async def _follow(
    check: GenesisCheck, peer: int, script: list[bytes | Unanswered | None]
) -> tuple[list[str], list[tuple[int, bytes | None]]]:
    """Run ``follow_peer`` over scripted answers (an Unanswered is raised); returns the
    calls made (ask, drop, wait N) and the news heard, once the script is spent."""
    calls: list[str] = []
    news: list[tuple[int, bytes | None]] = []
    answers = iter(script)

    async def ask() -> bytes | None:
        calls.append("ask")
        answer = next(answers)
        if isinstance(answer, Unanswered):
            raise answer
        return answer

    async def drop() -> None:
        calls.append("drop")

    async def wait(seconds: float) -> None:
        calls.append(f"wait {seconds:g}")
        if calls.count("ask") >= len(script):
            raise _Spent()  # the loop is endless: stop it once the script is spent

    with pytest.raises(_Spent):
        await follow_peer(check, peer, ask, drop, wait, lambda p, d: news.append((p, d)))
    return calls, news


async def test_a_cut_off_peer_without_a_reply_has_its_connection_dropped() -> None:
    mine, other = b"m" * 32, b"o" * 32
    check = GenesisCheck(mine, (2, 3))
    silent = Unanswered(replied=False)
    calls, news = await _follow(check, 2, [silent, silent, mine, silent, other, silent])
    assert calls == [
        "ask", "drop", f"wait {GENESIS_RETRY:g}",  # unchecked and silent: maybe half-open
        "ask", "drop", f"wait {2 * GENESIS_RETRY:g}",
        "ask", f"wait {GENESIS_CHECK_INTERVAL:g}",  # ours: let in
        "ask", f"wait {GENESIS_RETRY:g}",  # silent while let in: its link stays
        "ask", f"wait {GENESIS_RETRY_MAX:g}",  # another genesis: cut off, asked often
        "ask", "drop", f"wait {GENESIS_RETRY:g}",
    ]  # fmt: skip
    assert news == [(2, mine), (2, other)]


async def test_a_peer_that_replies_busy_keeps_its_connection() -> None:
    check = GenesisCheck(b"m" * 32, (2,))
    calls, news = await _follow(check, 2, [Unanswered(replied=True), Unanswered(replied=True)])
    assert "drop" not in calls and news == [] and check.cut_off == {2}


async def test_a_peer_with_older_software_is_let_in_and_keeps_its_connection() -> None:
    check = GenesisCheck(b"m" * 32, (2,))
    calls, news = await _follow(check, 2, [None, Unanswered(replied=False)])
    assert "drop" not in calls and news == [(2, None)] and check.cut_off == frozenset()
