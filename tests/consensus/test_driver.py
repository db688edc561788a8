"""The trio driver and the application API over the in-memory network."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from consensus import (
    ChainId,
    CommittedBlock,
    Config,
    MemoryNetwork,
    MemoryStore,
    Node,
    NodeId,
    Pacemaker,
    Persist,
    SQLiteStore,
    Store,
    TimeoutMsg,
    Vote,
    decode_message,
)
from consensus._driver import MemoryTransport
from consensus._events import Send, SetTimer, coalesce
from consensus._messages import genesis_qc
from consensus._rules import SafetyData
from consensus._types import BlockId, Round
from consensus.errors import MempoolFull, PayloadTooLarge
from consensus.testing import make_committee

CHAIN = ChainId(b"driver")
SIGNERS, KEYS = make_committee(4, b"driver")


def make_node(
    i: int, net: MemoryNetwork, store: Store, *, threads: bool = True, **kw: object
) -> Node:
    cfg = Config(
        chain_id=CHAIN,
        me=NodeId(i),
        public_keys=KEYS,
        pacemaker=Pacemaker(base=0.2, backoff=2.0, max_timeout=2.0),
        **kw,  # type: ignore[arg-type]
    )
    return Node(cfg, SIGNERS[i], store, net.transport(NodeId(i)), verify_in_threads=threads)


async def collect(node: Node, want: set[bytes], out: list[CommittedBlock]) -> None:
    async for block in node.committed():
        out.append(block)
        if want <= {p for b in out for p in b.payloads}:
            return


async def commit_everywhere(nodes: list[Node], want: set[bytes]) -> list[CommittedBlock]:
    """Run ``nodes``, submit ``want`` to every one, and return node 0's log once it holds all."""
    log: list[CommittedBlock] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(collect, nodes[0], want, log)
                for node in nodes:
                    await node.submit_many(sorted(want))
            nursery.cancel_scope.cancel()
    return log


async def test_nodes_commit_submitted_payloads_in_order() -> None:
    net = MemoryNetwork(4)
    nodes = [make_node(i, net, MemoryStore()) for i in range(4)]
    want = {b"payload-%d" % i for i in range(100)}
    logs: list[list[CommittedBlock]] = [[] for _ in nodes]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            async with trio.open_nursery() as waiters:
                for node, log in zip(nodes, logs, strict=True):
                    waiters.start_soon(collect, node, want, log)
                for p in sorted(want):
                    for node in nodes:
                        await node.submit(p)
            nursery.cancel_scope.cancel()
    ids = [[b.block_id for b in log] for log in logs]
    shortest = min(len(x) for x in ids)
    assert all(x[:shortest] == ids[0][:shortest] for x in ids)
    heights = [b.height for b in logs[0]]
    assert heights == list(range(heights[0], heights[0] + len(heights)))
    status = nodes[0].status()
    assert status.height >= 1 and status.high_qc_round >= 1 and status.last_commit_time
    assert all(p.last_heard is not None for p in status.peers)


async def test_back_pressure_when_nothing_commits() -> None:
    net = MemoryNetwork(4)
    net.down = {NodeId(1), NodeId(2), NodeId(3)}  # no quorum: nothing can commit
    node = make_node(0, net, MemoryStore(), mempool_max_payloads=5, max_payload_bytes=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        for i in range(5):
            await node.submit(b"p%d" % i, wait=False)
        with pytest.raises(MempoolFull):
            await node.submit(b"one too many", wait=False)
        with pytest.raises(PayloadTooLarge):
            await node.submit(b"x" * 101)
        with trio.move_on_after(0.2) as scope:
            await node.submit(b"waits for room")
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()


async def test_view_change_when_the_leader_is_down(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(4)
    net.down = {NodeId(1)}  # the leader of round 1 never speaks
    # No worker threads: an autojump clock would read a thread's work as idleness and
    # leap to the next timeout.
    nodes = [make_node(i, net, MemoryStore(), threads=False) for i in (0, 2, 3)]
    log: list[CommittedBlock] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            for node in nodes:
                await node.submit(b"through a view change")
            await collect(nodes[0], {b"through a view change"}, log)
            nursery.cancel_scope.cancel()
    assert nodes[0].replica.stats.tcs_formed >= 1


async def test_restart_from_sqlite_resumes(tmp_path: Path) -> None:
    net = MemoryNetwork(4)
    stores = [SQLiteStore(tmp_path / f"{i}.db", CHAIN) for i in range(4)]
    nodes = [make_node(i, net, stores[i]) for i in range(4)]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            log: list[CommittedBlock] = []
            async with trio.open_nursery() as waiters:
                waiters.start_soon(collect, nodes[3], {b"before"}, log)
                for node in nodes:
                    await node.submit(b"before")
            nursery.cancel_scope.cancel()
    height = nodes[3].replica.committed_height
    voted = nodes[3].replica.safety.last_voted_round
    restarted = make_node(3, net, stores[3])
    # An application restarting replays the stored log from any height.
    replayed = []
    async for block in restarted.committed(from_height=1):
        replayed.append(block)
        if block.height == restarted.replica.committed_height:
            break
    assert [b.height for b in replayed] == list(range(1, len(replayed) + 1))
    assert b"before" in {p for b in replayed for p in b.payloads}
    # Cancelled like a crash: what reached the disk is a prefix of what happened.
    assert 1 <= restarted.replica.committed_height <= height
    assert 1 <= restarted.replica.safety.last_voted_round <= voted
    assert (
        restarted.replica.root.id in {b.block_id for b in log} | {nodes[3].replica.root.id}
        or restarted.replica.committed_height < height
    )
    for s in stores:
        s.close()


class RecordingStore(SQLiteStore):
    """An SQLite store that notes the highest round its durable safety data covers, and
    how many of its transactions were fsync'd (SQLite's ``synchronous`` FULL is 2)."""

    durable_round = 0
    synced = 0
    needless_syncs = 0

    def persist(self, p: Persist) -> None:
        super().persist(p)
        synchronous = self._db.execute("PRAGMA synchronous").fetchone()[0]
        self.synced += synchronous == 2
        self.needless_syncs += synchronous == 2 and p.safety is None
        if p.safety is not None and synchronous == 2:
            self.durable_round = max(self.durable_round, p.safety.last_voted_round)


class CheckingTransport(MemoryTransport):
    """Fails the test if a vote or timeout leaves before its safety data is on disk."""

    store: RecordingStore
    violations: list[str]

    async def send(self, to: NodeId, data: bytes) -> None:
        msg = decode_message(data, CHAIN)
        rnd = msg.round if isinstance(msg, (Vote, TimeoutMsg)) else None
        if rnd is not None and self.store.durable_round < rnd:
            self.violations.append(f"{type(msg).__name__} r{rnd} left before persist")
        await super().send(to, data)


async def test_driver_persists_before_votes_leave(tmp_path: Path) -> None:
    net = MemoryNetwork(4)
    violations: list[str] = []
    nodes = []
    for i in range(4):
        store = RecordingStore(tmp_path / f"{i}.db", CHAIN)
        transport = CheckingTransport(net, NodeId(i))
        transport.store, transport.violations = store, violations
        net.transports[i] = transport
        cfg = Config(chain_id=CHAIN, me=NodeId(i), public_keys=KEYS)
        nodes.append(Node(cfg, SIGNERS[i], store, transport))
    want = {b"q-%d" % i for i in range(50)}
    await commit_everywhere(nodes, want)
    assert not violations, violations[:3]
    assert sum(n.replica.stats.votes_sent for n in nodes) > 0
    # Commits ride along with the votes' transactions or skip the fsync: at most one fsync
    # per vote or timeout, none for a transaction without safety data.
    stores = [n.store for n in nodes]
    assert all(isinstance(s, RecordingStore) for s in stores)
    assert sum(s.needless_syncs for s in stores) == 0  # type: ignore[attr-defined]
    synced = sum(s.synced for s in stores)  # type: ignore[attr-defined]
    assert synced <= sum(n.replica.stats.votes_sent + n.replica.stats.timeouts_sent for n in nodes)


def test_coalesce_merges_every_persist_into_the_first() -> None:
    qc = genesis_qc(CHAIN)
    vote = Vote.create(CHAIN, Round(3), BlockId(b"b" * 32), NodeId(1), SIGNERS[1])
    safety = SafetyData().after_vote(vote, Round(2))
    commit = Persist(high_qc=qc)
    voted = Persist(safety=safety)
    out = coalesce([commit, SetTimer(Round(3), 1.0), voted, Send(NodeId(2), vote)])
    assert [type(a) for a in out] == [Persist, SetTimer, Send]
    merged = out[0]
    assert isinstance(merged, Persist)
    assert merged.high_qc == qc and merged.safety == safety
    assert merged.must_sync and voted.must_sync and not commit.must_sync


async def test_one_timer_task_follows_every_rearm(autojump_clock: trio.testing.MockClock) -> None:
    """Arming moves the single timer's deadline, earlier or later; only the last round
    armed fires, once, at its own deadline."""
    node = make_node(0, MemoryNetwork(4), MemoryStore(), threads=False)
    fired: list[tuple[int, float]] = []

    async def record(event: object) -> None:
        fired.append((int(event.round), trio.current_time()))  # type: ignore[attr-defined]

    node._dispatch = record  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node._timer)
        t0 = trio.current_time()
        node._arm(Round(5), 10.0)
        await trio.sleep(1)
        node._arm(Round(6), 3.0)  # sooner than round 5's deadline: replaces it
        await trio.sleep(20)
        node._arm(Round(7), 2.0)
        node._arm(Round(8), 50.0)  # later: moves the deadline out
        await trio.sleep(100)
        nursery.cancel_scope.cancel()
    assert [(r, round(t - t0, 6)) for r, t in fired] == [(6, 4.0), (8, 71.0)]


class _FloodTransport:
    """Hands over a queued message on every receive without a checkpoint (as the libp2p
    transport does when messages are waiting), up to ``limit``, then fails."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.given = 0

    async def send(self, to: NodeId, data: bytes) -> None:
        """Drop."""

    async def receive(self) -> tuple[NodeId, bytes]:
        if self.given >= self.limit:
            raise RuntimeError("flood over")
        self.given += 1
        return NodeId(1), b"\xc1 not a consensus message"


async def test_receive_loop_yields_to_other_tasks_under_a_flood(tmp_path: Path) -> None:
    """A backlog handed over without checkpoints must not starve the node's other tasks."""
    cfg = Config(chain_id=CHAIN, me=NodeId(0), public_keys=KEYS)
    flood = _FloodTransport(limit=5000)
    node = Node(cfg, SIGNERS[0], MemoryStore(), flood)
    seen_at: list[int] = []

    async def bystander() -> None:
        while flood.given == 0:
            await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()  # returns only if the flooded loop lets it
        seen_at.append(flood.given)

    with pytest.raises(BaseExceptionGroup) as info:  # the flood ends with an error
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            nursery.start_soon(bystander)
            await trio.sleep_forever()
    assert info.group_contains(RuntimeError, match="flood over")
    assert seen_at and seen_at[0] < flood.limit, "the receive loop never yielded"
    assert node.replica.stats.invalid_messages > 0


class _FlushingTransport(MemoryTransport):
    """Records sends, flushes and fsync'd persists, in order, into a shared ``events`` list."""

    events: list[tuple[int, str]]

    async def send(self, to: NodeId, data: bytes) -> None:
        self.events.append((int(self.me), "send"))
        await super().send(to, data)

    async def flush(self) -> None:
        self.events.append((int(self.me), "flush"))


class _SyncLoggingStore(MemoryStore):
    def __init__(self, me: int, events: list[tuple[int, str]]) -> None:
        super().__init__()
        self.me, self.events = me, events

    def persist(self, p: Persist) -> None:
        if p.must_sync:
            self.events.append((self.me, "fsync"))
        super().persist(p)


async def test_driver_flushes_what_it_sent_before_an_fsync() -> None:
    """A leader's proposal must reach the wire before its own vote's fsync blocks the loop:
    every fsync'd persist that follows a send is preceded by a flush after that send."""
    net = MemoryNetwork(4)
    events: list[tuple[int, str]] = []
    nodes = []
    for i in range(4):
        transport = _FlushingTransport(net, NodeId(i))
        transport.events = events
        net.transports[i] = transport
        cfg = Config(chain_id=CHAIN, me=NodeId(i), public_keys=KEYS)
        nodes.append(Node(cfg, SIGNERS[i], _SyncLoggingStore(i, events), transport))
    want = {b"f-%d" % i for i in range(20)}
    await commit_everywhere(nodes, want)
    checked = 0
    for me in range(4):
        last = None
        for who, what in events:
            if who != me:
                continue
            if what == "fsync" and last == "send":
                raise AssertionError(f"node {me}: fsync right after a send, with no flush")
            checked += what == "fsync" and last == "flush"
            last = what
    assert checked > 0
