"""The trio driver: runs a ``Replica`` over a ``Transport`` and a ``Store``, with the app API.

Events are handled one at a time under a lock. Persists, and the votes and timeouts they
make safe, go through one ordered lane (a task that runs them strictly in order), so a
``Persist`` (fsync'd if it carries safety data; in a worker thread only if asked) always
completes before the vote or timeout that follows it is handed to the transport, while the
replica goes on handling other events and proposals leave at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import trio

from ._config import Config
from ._crypto import Signer
from ._events import (
    Action,
    Broadcast,
    CommittedBlock,
    Deliver,
    Event,
    MessageReceived,
    PayloadSubmitted,
    Persist,
    Send,
    ServeSync,
    SetTimer,
    Start,
    TimerFired,
    coalesce,
)
from ._locks import QuickLock
from ._messages import Message, Proposal, TimeoutMsg, Vote, decode_message, encode_message
from ._prewarm import prewarm, signature_count
from ._recorder import FlightRecorder
from ._replica import Replica, Status
from ._storage import SQLiteStore, Store
from ._sync import serve_sync
from ._types import Height, NodeId, Round
from .errors import DecodeError, MempoolFull, PayloadTooLarge

__all__ = ["MemoryNetwork", "MemoryTransport", "Node", "Transport"]


class Transport(Protocol):
    """Authenticated point-to-point messaging between committee members.

    ``send`` must not stall for long (queue, and drop when a peer is too slow: the protocol
    tolerates loss). ``receive`` yields ``(sender, data)`` where ``sender`` is the
    *authenticated* peer, never a claim read from the data. A transport that queues may also
    have ``async def flush()`` (wait, briefly, until what was sent is on the wire): the driver
    awaits it before an fsync, which blocks the event loop, so that a leader's proposal does
    not wait behind its own vote's fsync.
    """

    async def send(self, to: NodeId, data: bytes) -> None:
        """Queue ``data`` for ``to``."""
        ...

    async def receive(self) -> tuple[NodeId, bytes]:
        """The next inbound message and its authenticated sender."""
        ...


THREAD_VERIFY_MIN_SIGNATURES = 8

FAIRNESS_BATCH = 32
"""Messages the receive loop handles at most before it yields to the scheduler."""
"""Certificates with fewer signatures are checked on the event loop: a worker-thread hop costs
more than a few Ed25519 verifications (~50 us each); larger committees' QCs go to threads."""


class Node:
    """A running consensus participant: the everyday API for applications.

    Start it with ``await nursery.start(node.run)``; then ``await node.submit(payload)``,
    ``async for block in node.committed(): ...`` and ``node.status()``.

    Args:
        config: committee, identity and limits.
        signer: this replica's key.
        store: durable storage; the replica restarts from it.
        transport: messaging to the other members.
        wall_clock: seconds since the epoch, for block timestamps (injectable for tests).
        verify_in_threads: check certificate signatures in worker threads before the
            replica sees a message (uses a second core; the replica re-checks via the cache).
            Turn it off under ``trio.testing.MockClock`` with autojump, which takes a
            worker thread's work for idleness and jumps to the next timeout.
        persist_in_thread: run a blocking store's writes in a worker thread. Off by default:
            measured on a 4-node testnet, the thread hop (GIL hand-offs, wake-ups) cost more
            CPU and latency than the ~0.5 ms SQLite commit it moves off the event loop.
        recorder: keep the recent protocol events (messages in and out, persists, deliveries,
            timer expiries) with their times, for latency forensics; None records nothing.
    """

    def __init__(
        self,
        config: Config,
        signer: Signer,
        store: Store,
        transport: Transport,
        *,
        wall_clock: Callable[[], float] = time.time,
        verify_in_threads: bool = True,
        persist_in_thread: bool = False,
        recorder: FlightRecorder | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.transport = transport
        self.replica = Replica(config, signer, store.load(config.dedup_window))
        self._wall = wall_clock
        self.verify_in_threads = verify_in_threads
        # Taking a free trio.Lock is a scheduler pass; these are taken for every message.
        self._lock = QuickLock()
        self._store_lock = QuickLock()  # one user of the store connection at a time
        self._subscribers: list[trio.MemorySendChannel[CommittedBlock]] = []
        self._committed_event = trio.Event()
        self._pending: list[bytes] = []
        self._pending_event = trio.Event()
        # One long-lived timer task; arming moves its deadline (a task per round, spawned
        # and cancelled at every round, cost ~7% of a node's event-loop time at low load).
        self._timer_scope: trio.CancelScope | None = None
        self._timer_round: Round | None = None
        self._timer_deadline = math.inf
        self._outbox_send, self._outbox_recv = trio.open_memory_channel[Action](math.inf)
        self._blocking_store = persist_in_thread and isinstance(store, SQLiteStore)
        self._flush: Callable[[], Awaitable[None]] | None = getattr(transport, "flush", None)
        self.recorder = recorder

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(
        self,
        *,
        # trio_typing's old stubs, when installed, shadow trio's own TaskStatus.
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined,unused-ignore]
    ) -> None:
        """Run until cancelled; reports started once the replica has been started."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._executor)
            nursery.start_soon(self._timer)
            await self._dispatch(Start())
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._submit_loop)
            task_status.started()

    async def _receive_loop(self) -> None:
        handled = 0
        while True:
            sender, data = await self.transport.receive()
            handled += 1
            if handled % FAIRNESS_BATCH == 0:
                # A transport that hands over queued messages without a checkpoint, and a
                # dispatch lock that is free, make no scheduler pass: let others run.
                await trio.lowlevel.checkpoint()
            try:
                msg = decode_message(data, self.config.chain_id)
            except DecodeError:
                self.replica.stats.invalid_messages += 1
                continue
            if self.verify_in_threads and signature_count(msg) >= THREAD_VERIFY_MIN_SIGNATURES:
                # OpenSSL releases the GIL for much of each verification: check large
                # certificates' signatures on a second core, in a pool no bigger than the cores.
                await trio.to_thread.run_sync(
                    prewarm,
                    self.replica.committee,
                    msg,
                    self.config.chain_id,
                    limiter=_verify_limiter(),
                )
            if self.recorder is not None:
                self.recorder.record("recv", int(sender), *describe(msg))
            await self._dispatch(MessageReceived(sender, msg))

    # ---- application API -----------------------------------------------------------------

    async def submit(self, payload: bytes, *, wait: bool = True) -> None:
        """Queue ``payload`` for ordering.

        With ``wait`` (the default) a full mempool makes this wait until blocks commit;
        without it, ``MempoolFull`` is raised at once (back-pressure for the caller).

        Raises:
            MempoolFull: the mempool is full and ``wait`` is False.
            PayloadTooLarge: the payload exceeds ``Config.max_payload_bytes``.
        """
        if len(payload) > self.config.max_payload_bytes:
            raise PayloadTooLarge(len(payload), self.config.max_payload_bytes)
        while len(self._pending) >= self.replica.mempool_room():
            if not wait:
                raise MempoolFull(len(self.replica.mempool), self.config.mempool_max_payloads)
            await self._committed_event.wait()
        self._pending.append(payload)
        self._pending_event.set()

    async def submit_many(self, payloads: list[bytes], *, wait: bool = True) -> None:
        """Queue many payloads at once (what a gossip layer delivers); see ``submit``.

        Raises:
            MempoolFull: the batch does not fit and ``wait`` is False.
            PayloadTooLarge: some payload exceeds ``Config.max_payload_bytes``.
        """
        limit = self.config.max_payload_bytes
        if payloads and max(map(len, payloads)) > limit:
            raise PayloadTooLarge(max(map(len, payloads)), limit)
        while len(self._pending) + len(payloads) > self.replica.mempool_room():
            if not wait:
                raise MempoolFull(len(self.replica.mempool), self.config.mempool_max_payloads)
            if not self._pending and len(self.replica.mempool) == 0:
                break  # larger than the whole mempool: let the replica take what fits
            await self._committed_event.wait()
        self._pending.extend(payloads)
        self._pending_event.set()

    async def _submit_loop(self) -> None:
        # Submissions are batched into one event: one lock round-trip for many payloads.
        while True:
            await self._pending_event.wait()
            self._pending_event = trio.Event()
            batch, self._pending = tuple(self._pending), []
            if batch:
                await self._dispatch(PayloadSubmitted(batch))

    async def committed(self, from_height: int | None = None) -> AsyncIterator[CommittedBlock]:
        """Committed blocks in height order, as an async iterator.

        Args:
            from_height: replay the stored log from this height first (an application
                that restarts passes the height after the last block it applied); None
                yields only blocks committed from now on.
        """
        send, recv = trio.open_memory_channel[CommittedBlock](math.inf)
        self._subscribers.append(send)
        try:
            next_height = from_height
            if next_height is not None:
                while True:
                    async with self._store_lock:
                        rows = self.store.committed_log(Height(next_height), 256)
                    if not rows:
                        break
                    for block in rows:
                        yield block
                    next_height = rows[-1].height + 1
            async with recv:
                async for block in recv:
                    if next_height is None or block.height >= next_height:
                        yield block
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)

    def status(self) -> Status:
        """Round, height, leader, high QC, last commit time and per-peer liveness."""
        return self.replica.status()

    # ---- executing actions ---------------------------------------------------------------

    async def _dispatch(self, event: Event) -> None:
        async with self._lock:
            actions = coalesce(self.replica.handle(event, self._wall()))
            for a in actions:
                if _ordered(a):
                    self._outbox_send.send_nowait(a)
                else:
                    await self._execute(a)

    async def _executor(self) -> None:
        # The ordered lane: persists, the votes/timeouts they make safe, deliveries and
        # store reads, one at a time in order. Meanwhile the replica keeps handling events.
        # Whatever has queued up meanwhile runs as one batch, its persists merged into one
        # transaction (group commit: one fsync for the votes of several events).
        while True:
            batch = [await self._outbox_recv.receive()]
            while True:
                try:
                    batch.append(self._outbox_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            for a in coalesce(batch):
                if isinstance(a, Persist) and a.must_sync:
                    # An fsync blocks the event loop for a millisecond or more: let the tasks
                    # already woken (writers carrying a proposal, readers) go first, and the
                    # messages just sent reach their sockets.
                    await trio.lowlevel.checkpoint()
                    if self._flush is not None:
                        await self._flush()
                await self._execute(a)

    async def _execute(self, a: Action) -> None:
        if self.recorder is not None:
            await self._execute_recorded(a, self.recorder)
        else:
            await self._execute_action(a)

    async def _execute_recorded(self, a: Action, rec: FlightRecorder) -> None:
        if isinstance(a, Persist):
            rec.record("persist", int(a.must_sync))
            await self._execute_action(a)
            rec.record("persisted", int(a.must_sync))
            return
        if isinstance(a, Send):
            rec.record("send", int(a.to), *describe(a.message))
        elif isinstance(a, Broadcast):
            rec.record("broadcast", None, *describe(a.message))
        elif isinstance(a, Deliver):
            rec.record("deliver", int(a.block.height), len(a.block.payloads))
        await self._execute_action(a)

    async def _execute_action(self, a: Action) -> None:
        if isinstance(a, Persist):
            if self._blocking_store:
                await trio.to_thread.run_sync(self.store.persist, a)
            else:
                self.store.persist(a)
        elif isinstance(a, Send):
            await self.transport.send(a.to, encode_message(a.message))
        elif isinstance(a, Broadcast):
            data = encode_message(a.message)
            for i in self.replica.committee.members():
                if i != self.replica.me:
                    await self.transport.send(NodeId(i), data)
        elif isinstance(a, SetTimer):
            self._arm(a.round, a.delay)
        elif isinstance(a, Deliver):
            for sub in list(self._subscribers):
                try:
                    sub.send_nowait(a.block)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.remove(sub)
            self._committed_event.set()
            self._committed_event = trio.Event()
        elif isinstance(a, ServeSync):
            resp = serve_sync(self.store, a)
            if resp is not None:
                await self.transport.send(a.to, encode_message(resp))

    def _arm(self, round: Round, delay: float) -> None:
        """(Re)arm the round timer: it fires ``TimerFired(round)`` after ``delay`` unless
        armed again first."""
        self._timer_round = round
        self._timer_deadline = trio.current_time() + delay
        if self._timer_scope is not None:
            self._timer_scope.deadline = self._timer_deadline

    async def _timer(self) -> None:
        while True:
            # Only the wait is cancellable: re-arming (which the dispatch itself may do) must
            # not cancel the dispatch half-way through its actions.
            with trio.CancelScope(deadline=self._timer_deadline) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            if self._timer_round is None or trio.current_time() < self._timer_deadline:
                continue  # re-armed while the expiry was being delivered
            fired, self._timer_round, self._timer_deadline = self._timer_round, None, math.inf
            if self.recorder is not None:
                self.recorder.record("timer", int(fired))
            await self._dispatch(TimerFired(fired))


def describe(msg: Message) -> tuple[str, int | None, int | None]:
    """(kind, round, payload count) of a consensus message, for the flight recorder."""
    if isinstance(msg, Proposal):
        return "Proposal", int(msg.block.round), len(msg.block.payloads)
    rnd = getattr(msg, "round", None)
    return type(msg).__name__, None if rnd is None else int(rnd), None


_VERIFY_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "consensus_verify_limiter"
)


def _verify_limiter() -> trio.CapacityLimiter:
    """One small thread pool for signature checks shared by all nodes in a trio run: more
    threads than cores only fight over the GIL."""
    try:
        return _VERIFY_LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(2)
        _VERIFY_LIMITER.set(limiter)
        return limiter


def _ordered(a: Action) -> bool:
    """Whether ``a`` must run in order after earlier persists (see ``Node._executor``)."""
    if isinstance(a, (Persist, Deliver, ServeSync)):
        return True
    return isinstance(a, (Send, Broadcast)) and isinstance(a.message, (Vote, TimeoutMsg))


class MemoryTransport:
    """One member's end of a ``MemoryNetwork``."""

    def __init__(self, network: MemoryNetwork, me: NodeId) -> None:
        self.network = network
        self.me = me
        self._send, self._recv = trio.open_memory_channel[tuple[NodeId, bytes]](math.inf)

    async def send(self, to: NodeId, data: bytes) -> None:
        """Deliver to ``to`` unless the network cuts the link."""
        self.network.deliver(self.me, to, data)

    async def receive(self) -> tuple[NodeId, bytes]:
        """The next inbound message."""
        return await self._recv.receive()


class MemoryNetwork:
    """An in-process network for trio nodes (benchmarks, driver tests); links can be cut."""

    def __init__(self, n: int) -> None:
        self.transports = [MemoryTransport(self, NodeId(i)) for i in range(n)]
        self.down: set[NodeId] = set()
        self.bytes_sent = 0

    def transport(self, node: NodeId) -> MemoryTransport:
        """The transport for ``node``."""
        return self.transports[node]

    def deliver(self, src: NodeId, dst: NodeId, data: bytes) -> None:
        """Hand ``data`` to ``dst`` (dropped if either end is down)."""
        if src in self.down or dst in self.down:
            return
        self.bytes_sent += len(data)
        self.transports[dst]._send.send_nowait((src, data))
