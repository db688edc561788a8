"""The flight recorder: bounded, ordered, filtered by time; and what the driver records."""

from __future__ import annotations

import itertools

import pytest

from consensus import Config, FlightRecorder, MemoryStore, Node, NodeId
from consensus._driver import MemoryNetwork, MemoryTransport

from .test_driver import CHAIN, KEYS, SIGNERS, commit_everywhere


def test_keeps_the_newest_events_in_order() -> None:
    ticks = itertools.count(10, 10)
    rec = FlightRecorder(3, clock=lambda: next(ticks))
    for i in range(5):
        rec.record("e", i)
    assert [e for e in rec.events()] == [(30, "e", (2,)), (40, "e", (3,)), (50, "e", (4,))]
    assert len(rec) == 3 and rec.recorded == 5
    assert [e[2] for e in rec.events(since_ns=40)] == [(3,), (4,)]
    assert [e[2] for e in rec.events(limit=1)] == [(4,)]
    assert rec.events(limit=0) == []
    with pytest.raises(ValueError):
        FlightRecorder(0)


async def test_driver_records_each_vote_after_its_fsync() -> None:
    """The recorded order is the real order: a vote's send follows its persist's end."""
    net = MemoryNetwork(4)
    recorders = [FlightRecorder(100_000) for _ in range(4)]
    nodes = []
    for i in range(4):
        transport = MemoryTransport(net, NodeId(i))
        net.transports[i] = transport
        cfg = Config(chain_id=CHAIN, me=NodeId(i), public_keys=KEYS)
        nodes.append(Node(cfg, SIGNERS[i], MemoryStore(), transport, recorder=recorders[i]))
    want = {b"r-%d" % i for i in range(10)}
    log = await commit_everywhere(nodes, want)
    votes = 0
    for rec in recorders:
        events = rec.events()
        names = {e[1] for e in events}
        assert {"recv", "persist", "persisted", "deliver"} <= names
        last_synced = None
        for _, name, fields in events:
            if name == "persisted" and fields == (1,):
                last_synced = "done"
            elif name == "persist" and fields == (1,):
                last_synced = "open"
            elif name == "send" and fields[1] == "Vote":
                assert last_synced == "done", "a vote recorded before its fsync completed"
                votes += 1
        proposals = [f for _, n, f in events if n in ("recv", "broadcast") and f[1] == "Proposal"]
        assert proposals and all(isinstance(f[2], int) and f[3] is not None for f in proposals)
    assert votes > 0
    assert sum(len(b.payloads) for b in log) == len(want)
