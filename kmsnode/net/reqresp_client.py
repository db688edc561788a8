"""The client end of the request/response protocol (``reqresp``): ``request`` sends one
request on a stream of its own; ``Session`` keeps one long-lived tagged stream to a node and
multiplexes any number of requests over it, redialling when it breaks."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ._streams import read_some
from .errors import FrameError, RequestFailed
from .framing import Envelope, FrameDecoder, FrameFormat, encode_frame
from .host import Host
from .mesh import Backoff
from .reqresp import (
    _MAX_TAG,
    _READ_CHUNK,
    CLIENT_PROTOCOL,
    END,
    ERROR,
    REP,
    REQ,
    SESSION_PROTOCOL,
    _close,
    _parse_tagged,
    _reset,
)

__all__ = ["Session", "SessionStatistics", "request"]

_log = logging.getLogger("kmsnode.net.reqresp")


async def request(
    host: Host,
    peer_id: ID,
    addrs: Sequence[str],
    envelope: Envelope,
    *,
    protocol: str = CLIENT_PROTOCOL,
    fmt: FrameFormat | None = None,
    timeout: float = 30.0,
) -> list[Envelope]:
    """Send one request and collect the responses up to and including the terminal frame.

    The terminal ``end`` is not returned; an ``err`` terminal is returned as the last item,
    for the caller to interpret.

    Raises:
        RequestFailed: no connection, a timeout, a refused frame, or a stream that ended
            before the terminal frame.
    """
    fmt = fmt or FrameFormat()
    name = peer_id.to_base58()
    try:
        with trio.fail_after(timeout):
            await host.connect(peer_id, addrs)
            stream = await host.libp2p.new_stream(peer_id, [TProtocol(protocol)])
            try:
                await stream.write(encode_frame(envelope, fmt))
                decoder = FrameDecoder(fmt)
                out: list[Envelope] = []
                while True:
                    data = await read_some(stream, _READ_CHUNK)
                    if not data:
                        decoder.eof()
                        raise RequestFailed(name, "stream ended before the terminal frame")
                    for item in decoder.feed(data):
                        if item.kind == END:
                            return out
                        out.append(item)
                        if item.kind == ERROR:
                            return out
            finally:
                await _close(stream)
    except RequestFailed:
        raise
    except FrameError as exc:
        raise RequestFailed(name, exc.reason) from None
    except trio.TooSlowError:
        raise RequestFailed(name, f"no complete answer within {timeout}s") from None
    except Exception as exc:
        raise RequestFailed(name, type(exc).__name__) from exc


@dataclass
class SessionStatistics:
    """Counters of one client ``Session`` (for tests and the console)."""

    connected: bool = False
    connects: int = 0
    failures: int = 0
    """Dial or negotiation attempts that failed."""
    breaks: int = 0
    """Established streams that ended (reset, bad frame, closed by the node)."""
    requests: int = 0
    unknown_tags: int = 0
    """Reply frames for tags no longer awaited (abandoned by their caller): ignored."""
    outstanding: int = 0


@dataclass
class _Pending:
    answers: list[Envelope] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    failure: str | None = None


class _Conn:
    """One established session stream and the requests awaiting answers on it."""

    def __init__(self, stream: INetStream) -> None:
        self.stream = stream
        self.pending: dict[int, _Pending] = {}
        self.lock = trio.Lock()
        self.outbox: list[bytes] = []
        """Request frames waiting for the caller that queued the first of them to write them
        all at once (one yamux frame, one Noise message, one syscall)."""
        self.closed = False

    def fail_all(self, reason: str) -> None:
        self.closed = True
        for p in self.pending.values():
            if not p.done.is_set():
                p.failure = reason
                p.done.set()
        self.pending.clear()


class Session:
    """The client end of ``/kms/client-session/1``: one long-lived stream to one node.

    Run it in a nursery (``nursery.start_soon(session.run)``); it dials, keeps the stream, and
    redials with ``backoff`` when it breaks. ``request`` has the contract of the one-shot
    ``request``; any number of callers may use it at once (at most ``max_outstanding``
    in flight; more wait their turn).

    Args:
        host: a running host.
        peer_id: the node's peer id.
        addrs: the node's multiaddrs.
        protocol: the session protocol id.
        fmt: frame version and limits.
        max_outstanding: requests in flight on the stream at once.
        max_answers: answer frames accepted per request before it is failed.
        backoff: redial delays.
        connect_timeout: seconds for one dial plus stream negotiation.
    """

    def __init__(
        self,
        host: Host,
        peer_id: ID,
        addrs: Sequence[str],
        *,
        protocol: str = SESSION_PROTOCOL,
        fmt: FrameFormat | None = None,
        max_outstanding: int = 64,
        max_answers: int = 256,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.peer_id = peer_id
        self.addrs = list(addrs)
        self.protocol = protocol
        self.fmt = fmt or FrameFormat()
        self.max_answers = max_answers
        self.backoff = backoff or Backoff(initial=0.05, maximum=1.0)
        self.connect_timeout = connect_timeout
        self.stats = SessionStatistics()
        self._name = peer_id.to_base58()
        self._room = trio.Semaphore(max_outstanding)
        self._conn: _Conn | None = None
        self._up = trio.Event()
        self._next_tag = 0
        self._rng = random.Random()

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined,unused-ignore]
    ) -> None:
        """Keep a stream open until cancelled (reports started at once, not when connected)."""
        task_status.started()
        attempt = 0
        while True:
            try:
                with trio.fail_after(self.connect_timeout):
                    await self.host.connect(self.peer_id, self.addrs)
                    stream = await self.host.libp2p.new_stream(
                        self.peer_id, [TProtocol(self.protocol)]
                    )
            except Exception as exc:
                self.stats.failures += 1
                _log.debug("session dial failed peer=%s error=%s", self._name, type(exc).__name__)
                await trio.sleep(self.backoff.delay(attempt, self._rng))
                attempt += 1
                continue
            attempt = 0
            conn = _Conn(stream)
            self._conn = conn
            self.stats.connects += 1
            self.stats.connected = True
            self._up.set()
            reason = "cancelled"
            try:
                reason = await self._read(conn)
            finally:
                self.stats.breaks += 1
                self._conn = None
                self._up = trio.Event()
                self.stats.connected = False
                conn.fail_all("session stream broke")
                await _reset(stream)
            _log.debug("session broke peer=%s reason=%s", self._name, reason)
            await trio.sleep(self.backoff.delay(0, self._rng))

    async def request(self, envelope: Envelope, *, timeout: float = 30.0) -> list[Envelope]:
        """Send one request on the session and collect its answers, as ``request`` does.

        Raises:
            RequestFailed: not connected within ``timeout``, no complete answer within it, or
                the stream broke while the request was in flight (resend it).
        """
        try:
            with trio.fail_after(timeout):
                async with self._room:
                    return await self._request(envelope)
        except trio.TooSlowError:
            raise RequestFailed(self._name, f"no complete answer within {timeout}s") from None

    async def _request(self, envelope: Envelope) -> list[Envelope]:
        while self._conn is None:
            await self._up.wait()
        conn = self._conn
        tag = self._next_tag
        self._next_tag = (self._next_tag + 1) & _MAX_TAG
        # Encoding errors (too large, not msgpack-able) are the caller's: raised as is.
        frame = encode_frame(
            Envelope(REQ, {"tag": tag, "kind": envelope.kind, "body": envelope.body}), self.fmt
        )
        pending = conn.pending[tag] = _Pending()
        self.stats.requests += 1
        self.stats.outstanding += 1
        try:
            if conn.closed:
                raise RequestFailed(self._name, "session stream broke")
            conn.outbox.append(frame)
            if len(conn.outbox) == 1:
                # The first frame into an empty outbox makes this caller the one that writes
                # it, after one scheduler pass: requests started in the same pass (a burst of
                # answers starts a burst of requests) queue theirs meanwhile and leave in the
                # same write. Later callers only wait for their answers. Shielded, so no
                # queued frame is orphaned by this caller's cancellation (the client cancels
                # the slower nodes' requests once it has a quorum); bounded by the timeout.
                with trio.CancelScope(shield=True):
                    await trio.lowlevel.checkpoint()
                    await self._flush(conn)
            await pending.done.wait()
            if pending.failure is not None:
                raise RequestFailed(self._name, pending.failure)
            return pending.answers
        finally:
            self.stats.outstanding -= 1
            if conn.pending.get(tag) is pending:
                del conn.pending[tag]

    async def _flush(self, conn: _Conn) -> None:
        """Write everything in ``conn.outbox`` in one write, after any write in progress.

        Raises:
            RequestFailed: the write failed; every request on ``conn`` has failed with it.
        """
        async with conn.lock:
            if conn.closed:
                raise RequestFailed(self._name, "session stream broke")
            batch = b"".join(conn.outbox)
            conn.outbox.clear()
            try:
                with trio.fail_after(self.connect_timeout):
                    await conn.stream.write(batch)
            except Exception as exc:
                conn.fail_all("session stream broke")
                # Wakes the reader (and so the redial) at once.
                await _reset(conn.stream)
                raise RequestFailed(self._name, type(exc).__name__) from None

    async def _read(self, conn: _Conn) -> str:
        """Dispatch replies to their waiters until the stream ends; returns why it ended."""
        decoder = FrameDecoder(self.fmt)
        try:
            while True:
                data = await read_some(conn.stream, _READ_CHUNK)
                if not data:
                    decoder.eof()
                    return "closed by the node"
                for envelope in decoder.feed(data):
                    tag, inner = _parse_tagged(envelope, REP)
                    self._dispatch(conn, tag, inner)
        except FrameError as exc:
            _log.warning(
                "closed session on a bad frame peer=%s reason=%s",
                self._name,
                exc.reason,
                extra={"event": "session_rejected", "peer": self._name, "reason": exc.reason},
            )
            return exc.reason
        except Exception as exc:
            return type(exc).__name__

    def _dispatch(self, conn: _Conn, tag: int, inner: Envelope) -> None:
        pending = conn.pending.get(tag)
        if pending is None or pending.done.is_set():
            self.stats.unknown_tags += 1
            return
        if inner.kind == END:
            pending.done.set()
            return
        if inner.kind == ERROR:
            pending.answers.append(inner)
            pending.done.set()
            return
        if len(pending.answers) >= self.max_answers:
            pending.failure = f"more than {self.max_answers} answers"
            pending.done.set()
            return
        pending.answers.append(inner)
