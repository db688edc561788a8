"""The committee mesh: long-lived framed streams between committee members, per protocol.

For every (peer, protocol) there is at most one outbound stream, opened on the first message
for that peer and kept open; a writer task drains a bounded queue into it, batching whatever
has accumulated into one write. When the stream or the connection breaks, the writer redials
with exponential backoff and jitter.

Queue policy: **drop-oldest**. ``send`` never blocks: when a peer's queue is over its message
or byte bound, the oldest queued frames are dropped and counted. Consensus tolerates loss
(timeouts, votes and proposals are re-sent or superseded by newer rounds) but must never
stall because one peer is slow or down; the newest messages are the ones that matter.

Inbound, the sender is the *authenticated* remote peer id from the Noise session
(``stream.muxed_conn.peer_id``), mapped through the committee; nothing in a payload is
trusted to say who sent it. A stream from a peer outside the committee is reset with a
logged reason. A frame that is oversized or malformed resets that one stream (logged, counted)
and nothing else. Delivery to the application is a bounded trio memory channel per protocol;
when the application falls behind, reads stop and libp2p's flow control pushes back on the
sender (inbound back-pressure, in contrast with the outbound drop-oldest queue).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import deque
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol

from ._streams import read_some
from .committee import Committee, NodeId
from .errors import FrameError, MeshNotRunning, UnknownNode
from .framing import Envelope, FrameDecoder, FrameFormat, encode_frame
from .host import Host

__all__ = [
    "CONSENSUS_PROTOCOL",
    "RELAY_PROTOCOL",
    "SYNC_PROTOCOL",
    "Backoff",
    "Mesh",
    "MeshStatistics",
    "PeerStatistics",
    "ProtocolSpec",
]

_log = logging.getLogger("kmsnode.net.mesh")

CONSENSUS_PROTOCOL = "/kms/consensus/1"
SYNC_PROTOCOL = "/kms/sync/1"
RELAY_PROTOCOL = "/kms/relay/1"
"""Client requests one node passes on to the others (for clients that reach only some)."""

READ_CHUNK = 256 * 1024
"""Bytes asked of libp2p per read; frames larger than this arrive over several reads."""
WRITE_BATCH_BYTES = 1024 * 1024
"""Most queued bytes joined into a single stream write."""
FLUSH_TIMEOUT = 0.005
"""How long ``Mesh.flush`` waits for a slow peer's writes before giving up on it."""


@dataclass(frozen=True)
class ProtocolSpec:
    """How the mesh carries one committee-only protocol.

    Args:
        protocol: the libp2p protocol id, e.g. ``/kms/consensus/1``.
        fmt: version and frame size limits.
        queue_max_messages: outbound frames queued per peer before the oldest is dropped.
        queue_max_bytes: outbound bytes queued per peer before the oldest is dropped.
        inbound_buffer: envelopes buffered for the application before reads pause.
    """

    protocol: str
    fmt: FrameFormat = field(default_factory=FrameFormat)
    queue_max_messages: int = 4096
    queue_max_bytes: int = 64 * 1024 * 1024
    inbound_buffer: int = 4096


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: ``initial * factor**k`` capped at ``maximum``, +-``jitter``."""

    initial: float = 0.05
    maximum: float = 2.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The delay before reconnection attempt number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


@dataclass
class PeerStatistics:
    """Counters for one (peer, protocol) link; read by the console and by tests."""

    connected: bool = False
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_dropped: int = 0
    queued: int = 0
    connects: int = 0
    failures: int = 0
    frames_received: int = 0
    streams_rejected: int = 0
    """Inbound streams from this peer reset because of a bad frame."""
    frames_cut: int = 0
    """Frames to or from this peer discarded while it was cut off (``Mesh.cut``)."""


@dataclass
class MeshStatistics:
    """A snapshot of the mesh's counters, per protocol then per node id."""

    links: dict[str, dict[NodeId, PeerStatistics]]
    refused_streams: int
    """Inbound streams refused because the peer is not a committee member."""
    rejected_frames: int
    """Inbound streams reset because of an oversized or malformed frame."""


class _Link:
    """The outbound side toward one (peer, protocol): queue, writer state, counters."""

    def __init__(self, node_id: NodeId, spec: ProtocolSpec) -> None:
        self.node_id = node_id
        self.spec = spec
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = trio.Event()
        self.drained = trio.Event()  # set while nothing is queued or being written
        self.drained.set()
        self.started = False
        self.stats = PeerStatistics()

    def push(self, frame: bytes, *, front: bool = False) -> None:
        """Queue ``frame``, dropping the oldest frames while over the bounds."""
        if front:
            self.queue.appendleft(frame)
        else:
            self.queue.append(frame)
        self.queued_bytes += len(frame)
        spec = self.spec
        while len(self.queue) > 1 and (
            len(self.queue) > spec.queue_max_messages or self.queued_bytes > spec.queue_max_bytes
        ):
            old = self.queue.popleft()
            self.queued_bytes -= len(old)
            self.stats.frames_dropped += 1
            if self.stats.frames_dropped & (self.stats.frames_dropped - 1) == 0:  # log 1,2,4,8...
                _log.warning(
                    "send queue full, dropped oldest node=%d protocol=%s dropped_total=%d",
                    self.node_id,
                    spec.protocol,
                    self.stats.frames_dropped,
                    extra={"event": "queue_drop", "node": self.node_id},
                )
        self.stats.queued = len(self.queue)
        if self.drained.is_set():
            self.drained = trio.Event()
        self.wake.set()

    def take_batch(self) -> list[bytes]:
        """Pop queued frames up to ``WRITE_BATCH_BYTES`` (at least one)."""
        batch: list[bytes] = []
        size = 0
        while self.queue and (not batch or size + len(self.queue[0]) <= WRITE_BATCH_BYTES):
            frame = self.queue.popleft()
            size += len(frame)
            batch.append(frame)
        self.queued_bytes -= size
        self.stats.queued = len(self.queue)
        return batch

    async def wait_for_work(self) -> None:
        """Return once something is queued."""
        while not self.queue:
            self.wake = trio.Event()
            await self.wake.wait()


class Mesh:
    """Committee messaging over libp2p: ``send``/``broadcast`` out, channels in.

    Register protocols with ``add_protocol`` before running; start the host, then the mesh::

        channel = mesh.add_protocol(ProtocolSpec(CONSENSUS_PROTOCOL))
        await nursery.start(host.run)
        await nursery.start(mesh.run)
        mesh.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", data))
        sender, envelope = await channel.receive()

    Args:
        host: this node's host (its identity must be ``committee.member(me)``'s).
        committee: the genesis committee.
        me: this node's id.
        backoff: reconnection delays.
        dial_timeout: seconds allowed to connect and open a stream before retrying.
        rng: jitter source (injectable for tests).
    """

    def __init__(
        self,
        host: Host,
        committee: Committee,
        me: NodeId,
        *,
        backoff: Backoff | None = None,
        dial_timeout: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        if committee.peer_id(me) != host.peer_id:
            raise ValueError(f"the host's peer id is not node {me}'s in the committee")
        self.host = host
        self.committee = committee
        self.me = me
        self.backoff = backoff or Backoff()
        self.dial_timeout = dial_timeout
        self._rng = rng or random.Random()
        self._specs: dict[str, ProtocolSpec] = {}
        self._inbound: dict[str, trio.MemorySendChannel[tuple[NodeId, Envelope]]] = {}
        self._receivers: dict[str, trio.MemoryReceiveChannel[tuple[NodeId, Envelope]]] = {}
        self._links: dict[tuple[str, NodeId], _Link] = {}
        self._dial_locks: dict[NodeId, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self._refused = 0
        self._rejected = 0
        self.cut: frozenset[NodeId] = frozenset()
        """Peers this node neither sends to nor hears from: a simulated network partition
        for fault drills (``testnet partition``), and peers whose genesis the node has not
        seen to be its own (the node's genesis check); empty once every peer answered."""

    # ---- set-up ----------------------------------------------------------------------------

    def add_protocol(
        self, spec: ProtocolSpec, *, inbound_of: str | None = None
    ) -> trio.MemoryReceiveChannel[tuple[NodeId, Envelope]]:
        """Speak ``spec.protocol`` with the committee; returns the channel of inbound messages.

        Each item is ``(sender node id, envelope)``, the sender authenticated by Noise. With
        ``inbound_of`` (a protocol registered earlier) both deliver into that protocol's
        channel: separate streams, limits and queues, one reader.

        Raises:
            ValueError: the protocol is already registered, or ``inbound_of`` is not.
        """
        if spec.protocol in self._specs:
            raise ValueError(f"protocol {spec.protocol} is already registered")
        if inbound_of is None:
            send, recv = trio.open_memory_channel[tuple[NodeId, Envelope]](spec.inbound_buffer)
            self._receivers[spec.protocol] = recv
        elif inbound_of in self._specs:
            send, recv = self._inbound[inbound_of], self._receivers[inbound_of]
        else:
            raise ValueError(f"protocol {inbound_of} is not registered")
        self._specs[spec.protocol] = spec
        self._inbound[spec.protocol] = send
        self._receivers[spec.protocol] = recv

        async def handler(stream: INetStream) -> None:
            await self._serve_inbound(spec, send, stream)

        self.host.libp2p.set_stream_handler(TProtocol(spec.protocol), handler)
        return recv

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[name-defined,unused-ignore]
        """Run the writer tasks until cancelled (the host must be running)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for link in self._links.values():
                    if link.queue and not link.started:
                        self._start_link(link)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for link in self._links.values():
                link.started = False
                link.stats.connected = False

    # ---- sending ---------------------------------------------------------------------------

    def send(self, node_id: NodeId, protocol: str, envelope: Envelope) -> None:
        """Queue ``envelope`` for ``node_id`` on ``protocol``; never blocks.

        A message to this node itself is delivered to its own inbound channel.

        Raises:
            UnknownNode: ``node_id`` is not a committee member.
            FrameTooLarge: the encoded envelope exceeds the protocol's frame limit.
            KeyError: ``protocol`` was not registered.
            MeshNotRunning: ``run`` is not running.
        """
        spec = self._specs[protocol]
        self._check_running()
        if node_id not in self.committee:
            raise UnknownNode(node_id)
        self._enqueue(node_id, spec, envelope, encode_frame(envelope, spec.fmt))

    def broadcast(self, protocol: str, envelope: Envelope) -> None:
        """Queue ``envelope`` for every other committee member (encoded once).

        Raises:
            FrameTooLarge: the encoded envelope exceeds the protocol's frame limit.
            KeyError: ``protocol`` was not registered.
            MeshNotRunning: ``run`` is not running.
        """
        spec = self._specs[protocol]
        self._check_running()
        frame = encode_frame(envelope, spec.fmt)
        for node_id in self.committee.node_ids():
            if node_id != self.me:
                self._enqueue(node_id, spec, envelope, frame)

    async def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Wait, at most ``timeout`` seconds, until what is queued for connected peers has
        been written to their streams; returns at once (no scheduler pass) when it has.

        Call it before blocking the event loop (an fsync, a batch of crypto), so that the
        messages just queued leave now rather than after it.
        """
        pending = [
            link
            for link in self._links.values()
            if link.stats.connected and not link.drained.is_set()
        ]
        if not pending:
            return
        with trio.move_on_after(timeout):
            for link in pending:
                await link.drained.wait()

    def _check_running(self) -> None:
        if self._nursery is None:
            raise MeshNotRunning("start the mesh with `await nursery.start(mesh.run)` first")

    def _enqueue(
        self, node_id: NodeId, spec: ProtocolSpec, envelope: Envelope, frame: bytes
    ) -> None:
        if node_id == self.me:
            try:
                self._inbound[spec.protocol].send_nowait((node_id, envelope))
            except trio.WouldBlock:
                self._link(node_id, spec).stats.frames_dropped += 1
            return
        link = self._link(node_id, spec)
        if node_id in self.cut:
            link.stats.frames_cut += 1
            return
        link.push(frame)
        if not link.started:
            self._start_link(link)

    def _link(self, node_id: NodeId, spec: ProtocolSpec) -> _Link:
        key = (spec.protocol, node_id)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = _Link(node_id, spec)
        return link

    def _start_link(self, link: _Link) -> None:
        assert self._nursery is not None
        link.started = True
        self._nursery.start_soon(self._write_loop, link)

    async def _write_loop(self, link: _Link) -> None:
        member = self.committee.member(link.node_id)
        peer_id = self.committee.peer_id(link.node_id)
        protocol = TProtocol(link.spec.protocol)
        attempt = 0
        while True:
            await link.wait_for_work()
            try:
                with trio.fail_after(self.dial_timeout):
                    async with self._dial_lock(link.node_id):
                        if not self.host.is_connected(peer_id):
                            await self.host.connect(peer_id, member.addrs)
                    stream = await self.host.libp2p.new_stream(peer_id, [protocol])
            except (Exception, trio.TooSlowError) as exc:
                link.stats.failures += 1
                delay = self.backoff.delay(attempt, self._rng)
                attempt += 1
                # A connection that is up but cannot open streams (seen in py-libp2p after a
                # remote stream handler raised) would be reused forever: drop it and redial.
                await self.host.disconnect(peer_id)
                _log.info(
                    "cannot open stream node=%d protocol=%s error=%s retry_in=%.3fs",
                    link.node_id,
                    link.spec.protocol,
                    type(exc).__name__,
                    delay,
                    extra={"event": "dial_failed", "node": link.node_id},
                )
                await trio.sleep(delay)
                continue
            link.stats.connects += 1
            link.stats.connected = True
            wrote = await self._pump(link, stream)
            link.stats.connected = False
            attempt = 0 if wrote else attempt + 1
            delay = self.backoff.delay(attempt, self._rng)
            _log.info(
                "stream closed node=%d protocol=%s retry_in=%.3fs",
                link.node_id,
                link.spec.protocol,
                delay,
                extra={"event": "stream_lost", "node": link.node_id},
            )
            await trio.sleep(delay)

    async def _pump(self, link: _Link, stream: INetStream) -> bool:
        """Write queued frames to ``stream`` until it breaks; True if anything was written."""
        wrote = False
        async with trio.open_nursery() as nursery:
            # The peer never writes on our outbound stream: a read returning means it is gone
            # (EOF or reset), and we learn it before the next write rather than through it.
            nursery.start_soon(self._watch, stream, nursery.cancel_scope)
            try:
                while True:
                    await link.wait_for_work()
                    batch = link.take_batch()
                    data = b"".join(batch)
                    try:
                        await stream.write(data)
                    except Exception as exc:
                        # Re-queue so a message caught by the break is not lost to a reconnect.
                        for frame in reversed(batch):
                            link.push(frame, front=True)
                        _log.debug(
                            "write failed node=%d error=%s",
                            link.node_id,
                            type(exc).__name__,
                        )
                        break
                    wrote = True
                    link.stats.frames_sent += len(batch)
                    link.stats.bytes_sent += len(data)
                    if not link.queue:
                        link.drained.set()
            finally:
                nursery.cancel_scope.cancel()
                await _reset_quietly(stream)
        return wrote

    @staticmethod
    async def _watch(stream: INetStream, scope: trio.CancelScope) -> None:
        try:
            while True:
                data = await stream.read(READ_CHUNK)
                if not data:
                    break
        except Exception:
            pass
        scope.cancel()

    def _dial_lock(self, node_id: NodeId) -> trio.Lock:
        lock = self._dial_locks.get(node_id)
        if lock is None:
            lock = self._dial_locks[node_id] = trio.Lock()
        return lock

    # ---- receiving -------------------------------------------------------------------------

    async def _serve_inbound(
        self,
        spec: ProtocolSpec,
        channel: trio.MemorySendChannel[tuple[NodeId, Envelope]],
        stream: INetStream,
    ) -> None:
        # Runs inside libp2p's connection nursery: nothing but Cancelled may escape.
        peer_id = stream.muxed_conn.peer_id
        node_id = self.committee.node_of(peer_id)
        if node_id is None or node_id == self.me:
            self._refused += 1
            _log.warning(
                "refused stream from a peer outside the committee peer=%s protocol=%s",
                peer_id,
                spec.protocol,
                extra={"event": "stream_refused", "peer": str(peer_id)},
            )
            await _reset_quietly(stream)
            return
        stats = self._link(node_id, spec).stats
        decoder = FrameDecoder(spec.fmt)
        try:
            while True:
                data = await read_some(stream, READ_CHUNK)
                if not data:
                    decoder.eof()
                    await _close_quietly(stream)
                    return
                for envelope in decoder.feed(data):
                    stats.frames_received += 1
                    if node_id in self.cut:
                        stats.frames_cut += 1
                        continue
                    try:  # no scheduler pass while the channel has room
                        channel.send_nowait((node_id, envelope))
                    except trio.WouldBlock:
                        await channel.send((node_id, envelope))
        except FrameError as exc:
            self._rejected += 1
            stats.streams_rejected += 1
            _log.warning(
                "closed stream on a bad frame node=%d peer=%s protocol=%s reason=%s",
                node_id,
                peer_id,
                spec.protocol,
                exc.reason,
                extra={"event": "frame_rejected", "node": node_id, "reason": exc.reason},
            )
            await _reset_quietly(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await _reset_quietly(stream)  # the application closed its channel: shutting down
        except Exception as exc:
            _log.debug(
                "inbound stream ended node=%d protocol=%s error=%s",
                node_id,
                spec.protocol,
                type(exc).__name__,
            )
            await _reset_quietly(stream)

    # ---- introspection ---------------------------------------------------------------------

    def statistics(self) -> MeshStatistics:
        """A snapshot of the per-link counters."""
        links: dict[str, dict[NodeId, PeerStatistics]] = {p: {} for p in self._specs}
        for (protocol, node_id), link in self._links.items():
            links[protocol][node_id] = PeerStatistics(**vars(link.stats))
        return MeshStatistics(links, self._refused, self._rejected)

    def connects(self, node_id: NodeId, protocol: str) -> int:
        """How many times the outbound stream to ``node_id`` on ``protocol`` was opened (a
        change tells a peer that restarted, or came back)."""
        link = self._links.get((protocol, node_id))
        return 0 if link is None else link.stats.connects

    def connected(self, node_id: NodeId, protocol: str) -> bool:
        """Whether the outbound stream to ``node_id`` on ``protocol`` is open right now."""
        link = self._links.get((protocol, node_id))
        return link is not None and link.stats.connected


async def _reset_quietly(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1.0), contextlib.suppress(Exception):
        await stream.reset()


async def _close_quietly(stream: INetStream) -> None:
    with trio.move_on_after(1.0):
        with contextlib.suppress(Exception):
            await stream.close()
