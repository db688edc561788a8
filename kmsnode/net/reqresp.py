"""The client request/response protocol shape (``/kms/client/1``): one request, many answers.

Any peer may open it (clients are not committee members; what a client may *do* is decided
by the node's handler against replicated policy, not here). On one stream:

    client -> node   one frame: the request envelope (any ``kind`` the handler understands)
    node -> client   zero or more response frames, as the handler yields them
    node -> client   a terminal frame: ``Envelope("end")`` or ``Envelope("err", {"reason": ...})``

The handler is generic: ``async def handler(request: Request) -> AsyncIterator[Envelope]``;
the node plugs its own in later. A handler that raises makes the server send
``err`` with reason ``"internal"`` (never the exception text, which could hold secrets).
Limits: a request must arrive within ``request_timeout``; at most ``max_concurrent`` requests
are served at once (others get ``err`` ``"busy"`` at once); frames obey ``fmt``.

Session mode (``/kms/client-session/1``, same server, same handler): a new stream costs a
multistream-select negotiation (about 5 ms against 1.7 ms for a round trip on an open one), so
a busy client keeps one stream per node and multiplexes requests over it by a tag it chooses:

    client -> node   ``Envelope("req", {"tag": n, "kind": k, "body": b})``, any number, any time
    node -> client   ``Envelope("rep", {"tag": n, "kind": k, "body": b})`` per yielded envelope,
                     then a terminal ``rep`` whose kind is ``end`` (body None) or ``err``

Requests on a session run concurrently (at most ``max_outstanding`` per stream: the server
stops reading until one finishes, and the server-wide ``max_concurrent`` still answers
``busy``). A handler failure is a tagged ``err``; the stream lives on. A frame that is not a
well-formed ``req`` (or reuses a tag still in flight) resets that stream only. The client end
(``request``, ``Session``: one per node, reconnecting with backoff; requests caught by a break
fail with ``RequestFailed`` for the caller to resend) is in ``reqresp_client``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ._streams import read_some
from .committee import Committee, NodeId
from .errors import FrameError, UnexpectedShape
from .framing import MAX_KIND_CHARS, Envelope, FrameDecoder, FrameFormat, encode_frame
from .host import Host

__all__ = [
    "CLIENT_PROTOCOL",
    "END",
    "ERROR",
    "SESSION_PROTOCOL",
    "Request",
    "RequestHandler",
    "RequestServer",
]

_log = logging.getLogger("kmsnode.net.reqresp")

CLIENT_PROTOCOL = "/kms/client/1"
SESSION_PROTOCOL = "/kms/client-session/1"
END = "end"
ERROR = "err"
REQ = "req"
REP = "rep"
_READ_CHUNK = 256 * 1024
_MAX_TAG = (1 << 63) - 1


@dataclass(frozen=True)
class Request:
    """One inbound request as the handler sees it.

    Attributes:
        envelope: the request frame.
        peer_id: the requester's authenticated libp2p peer id (base58).
        node_id: the requester's committee id if it is a member, else None.
    """

    envelope: Envelope
    peer_id: str
    node_id: NodeId | None


RequestHandler = Callable[[Request], AsyncIterator[Envelope]]
"""Turns a request into response envelopes (an async generator function fits)."""


class RequestServer:
    """Serves one request/response protocol on a host with a pluggable handler.

    Args:
        host: the node's host.
        handler: the application's handler.
        protocol: the protocol id (``/kms/client/1`` by default).
        fmt: frame version and limits, for responses (and requests, unless ``request_fmt``).
        request_fmt: limits for the frames read from peers (requests), when tighter than
            what responses need: a client's frame costs the event loop CPU and memory to
            decode, so it should be no bigger than a request can be.
        committee: lets the handler see whether the requester is a member.
        max_concurrent: requests served at once before answering ``busy``.
        request_timeout: seconds a peer has to deliver its request frame.
        session_protocol: the session-mode protocol id served alongside (None: none).
        max_sessions: session streams open at once. One more closes the open session that
            has been idle longest with nothing in flight (its client redials when it next
            asks), so identities squatting idle sessions cannot lock newcomers out; if every
            session has requests in flight, the newcomer is reset instead.
        max_per_peer: one-shot requests being served, and session streams open, per peer
            (each); more are refused (``busy``) or reset.
        session_idle_timeout: seconds a session with nothing in flight may stay silent
            before it is closed (clients redial; idle squatters lose their place).
        on_activity: called with the peer's id when one of its requests is read and again
            when its answer is done (one-shot or on a session), e.g. ``ConnectionGuard.touch``,
            so clients on long-lived sessions count as active.
        max_outstanding: requests in flight per session stream before reading pauses.
        write_timeout: seconds one response frame may take to write on a session before
            the stream is reset (a client that stops reading must not hold handler slots).
    """

    def __init__(
        self,
        host: Host,
        handler: RequestHandler,
        *,
        protocol: str = CLIENT_PROTOCOL,
        fmt: FrameFormat | None = None,
        request_fmt: FrameFormat | None = None,
        committee: Committee | None = None,
        max_concurrent: int = 64,
        request_timeout: float = 10.0,
        session_protocol: str | None = SESSION_PROTOCOL,
        max_sessions: int = 256,
        max_outstanding: int = 64,
        write_timeout: float = 10.0,
        max_per_peer: int = 16,
        session_idle_timeout: float = 300.0,
        on_activity: Callable[[ID], None] | None = None,
    ) -> None:
        self.host = host
        self.handler = handler
        self.protocol = protocol
        self.session_protocol = session_protocol
        self.fmt = fmt or FrameFormat()
        self.request_fmt = request_fmt or self.fmt
        self.committee = committee
        self.request_timeout = request_timeout
        self.session_idle_timeout = session_idle_timeout
        self.on_activity = on_activity
        self._handling_by_peer = _PerPeer(max_concurrent)
        self._one_shot_by_peer = _PerPeer(max_per_peer)
        self._sessions_by_peer = _PerPeer(max_per_peer)
        self.max_sessions = max_sessions
        self.max_outstanding = max_outstanding
        self.write_timeout = write_timeout
        self._slots = trio.Semaphore(max_concurrent)
        self.served = 0
        self.refused = 0
        """Streams closed because of a bad or late request frame, or busy."""
        self.sessions = 0
        """Session streams open now."""
        self.sessions_rejected = 0
        """Session streams reset for a bad frame, or refused for being one too many."""
        self.sessions_idle_closed = 0
        """Session streams closed after ``session_idle_timeout`` of silence."""
        self.sessions_evicted = 0
        """Idle session streams closed to make room for a new one at ``max_sessions``."""
        self._open_sessions: dict[int, _SessionPlace] = {}
        self._session_ids = itertools.count()

    def install(self) -> None:
        """Register the protocol handler(s) on the host (before or after it starts)."""
        self.host.libp2p.set_stream_handler(TProtocol(self.protocol), self._serve)
        if self.session_protocol is not None:
            self.host.libp2p.set_stream_handler(
                TProtocol(self.session_protocol), self._serve_session
            )

    async def _serve(self, stream: INetStream) -> None:
        # Runs inside libp2p's connection nursery: nothing but Cancelled may escape.
        peer_id: ID = stream.muxed_conn.peer_id
        if not self._one_shot_by_peer.enter(peer_id):
            self.refused += 1
            await _answer_and_close(stream, [Envelope(ERROR, {"reason": "busy"})], self.fmt)
            return
        try:
            await self._serve_one(stream, peer_id)
        finally:
            self._one_shot_by_peer.leave(peer_id)

    async def _serve_one(self, stream: INetStream, peer_id: ID) -> None:
        try:
            with trio.fail_after(self.request_timeout):
                envelope = await _read_one(stream, FrameDecoder(self.request_fmt))
        except (FrameError, trio.TooSlowError) as exc:
            self.refused += 1
            reason = exc.reason if isinstance(exc, FrameError) else "no request in time"
            _log.warning(
                "refused request peer=%s protocol=%s reason=%s",
                peer_id,
                self.protocol,
                reason,
                extra={"event": "request_refused", "peer": str(peer_id), "reason": reason},
            )
            await _reset(stream)
            return
        except Exception as exc:
            _log.debug("request stream broke peer=%s error=%s", peer_id, type(exc).__name__)
            await _reset(stream)
            return
        # A handler slot only once the request is in: peers that open streams and send
        # nothing (or slowly) hold no slot, only their own per-peer places, for
        # ``request_timeout`` at most.
        with self._serving(peer_id) as admitted:
            if not admitted:
                await _answer_and_close(stream, [Envelope(ERROR, {"reason": "busy"})], self.fmt)
                return
            await self._handle_one(stream, peer_id, envelope)

    async def _handle_one(self, stream: INetStream, peer_id: ID, envelope: Envelope) -> None:
        node_id = self.committee.node_of(peer_id) if self.committee is not None else None
        req = Request(envelope, peer_id.to_base58(), node_id)
        try:
            async for response in self.handler(req):
                await stream.write(encode_frame(response, self.fmt))
            await stream.write(encode_frame(Envelope(END), self.fmt))
        except Exception as exc:
            # Log the class only: handler errors may carry request or key material.
            _log.error(
                "request handler failed peer=%s protocol=%s error=%s",
                peer_id,
                self.protocol,
                type(exc).__name__,
                extra={"event": "handler_failed", "peer": str(peer_id)},
            )
            await _answer_and_close(stream, [Envelope(ERROR, {"reason": "internal"})], self.fmt)
            return
        self.served += 1
        await _close(stream)

    # -- session mode ---------------------------------------------------------------------------
    async def _serve_session(self, stream: INetStream) -> None:
        # Runs inside libp2p's connection nursery: nothing but Cancelled may escape.
        peer_id: ID = stream.muxed_conn.peer_id
        if not self._sessions_by_peer.enter(peer_id):
            self.sessions_rejected += 1
            await _reset(stream)
            return
        if self.sessions >= self.max_sessions and not self._evict_idlest_session(peer_id):
            self._sessions_by_peer.leave(peer_id)
            self.sessions_rejected += 1
            await _reset(stream)
            return
        self.sessions += 1
        out = _SessionWriter(stream, self.fmt, self.write_timeout)
        place = _SessionPlace(peer_id, trio.current_time())
        key = next(self._session_ids)
        self._open_sessions[key] = place
        failure: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                out.scope = place.scope = nursery.cancel_scope
                try:
                    await self._read_session(stream, peer_id, out, nursery, place)
                except Exception as exc:  # caught here: a nursery body's error would be grouped
                    failure = exc
                    nursery.cancel_scope.cancel()
        finally:
            del self._open_sessions[key]
            self.sessions -= 1
            self._sessions_by_peer.leave(peer_id)
        if failure is None and not out.broken:
            await _close(stream)
            return
        if isinstance(failure, FrameError):
            self.sessions_rejected += 1
            _log.warning(
                "closed session on a bad frame peer=%s protocol=%s reason=%s",
                peer_id,
                self.session_protocol,
                failure.reason,
                extra={"event": "session_rejected", "peer": str(peer_id), "reason": failure.reason},
            )
        elif failure is not None:
            _log.debug("session stream broke peer=%s error=%s", peer_id, type(failure).__name__)
        await _reset(stream)

    def peer_busy(self, peer: ID) -> bool:
        """Whether a request of ``peer``'s is being handled now."""
        return self._handling_by_peer.holds(peer)

    @contextlib.contextmanager
    def _serving(self, peer: ID) -> Iterator[bool]:
        """Take a handler slot for a request of ``peer``'s: yields False (counted as refused)
        when none is free, else True with ``peer`` marked busy meanwhile, and its activity
        reported at both ends."""
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self.refused += 1
            yield False
            return
        self._handling_by_peer.enter(peer)
        if self.on_activity is not None:
            self.on_activity(peer)
        try:
            yield True
        finally:
            self._handling_by_peer.leave(peer)
            self._slots.release()
            if self.on_activity is not None:
                self.on_activity(peer)

    @property
    def session_requests_in_flight(self) -> int:
        """Requests read on open sessions and not yet answered."""
        return sum(len(p.in_flight) for p in self._open_sessions.values())

    def _evict_idlest_session(self, newcomer: ID) -> bool:
        """Close the open session idle longest with nothing in flight, the newcomer's own
        first (a peer opening more sessions displaces itself before others); False if none."""
        idle = [p for p in self._open_sessions.values() if not p.in_flight and not p.evicted]
        own = [p for p in idle if p.peer == newcomer]
        if not (own or idle):
            return False
        victim = min(own or idle, key=lambda p: p.last_active)
        victim.evicted = True
        if victim.scope is not None:
            victim.scope.cancel()
        self.sessions_evicted += 1
        return True

    async def _read_session(
        self,
        stream: INetStream,
        peer_id: ID,
        out: _SessionWriter,
        nursery: trio.Nursery,
        place: _SessionPlace,
    ) -> None:
        node_id = self.committee.node_of(peer_id) if self.committee is not None else None
        in_flight = place.in_flight
        room = trio.Semaphore(self.max_outstanding)
        decoder = FrameDecoder(self.request_fmt)
        while True:
            # Silent with nothing in flight for session_idle_timeout: close (a client redials).
            with trio.move_on_after(self.session_idle_timeout) as idle:
                data = await read_some(stream, _READ_CHUNK)
            if idle.cancelled_caught:
                if in_flight:
                    continue  # answers are still coming: the client is waiting, not idle
                self.sessions_idle_closed += 1
                return
            if not data:
                decoder.eof()
                return  # the client is done sending: answer what is in flight, then close
            place.last_active = trio.current_time()
            for envelope in decoder.feed(data):
                tag, inner = _parse_tagged(envelope, REQ)
                if tag in in_flight:
                    raise UnexpectedShape(f"tag {tag} is already in flight")
                in_flight.add(tag)  # before the wait below: busy, so never evicted here
                await room.acquire()
                req = Request(inner, peer_id.to_base58(), node_id)
                nursery.start_soon(self._serve_tagged, out, peer_id, tag, req, in_flight, room)

    async def _serve_tagged(
        self,
        out: _SessionWriter,
        peer_id: ID,
        tag: int,
        req: Request,
        in_flight: set[int],
        room: trio.Semaphore,
    ) -> None:
        try:
            with self._serving(peer_id) as admitted:
                if not admitted:
                    await out.send(tag, Envelope(ERROR, {"reason": "busy"}))
                    return
                await self._run_handler(out, tag, req)
        except _StreamBroken:
            pass  # the writer already cancelled the session
        finally:
            in_flight.discard(tag)
            room.release()

    async def _run_handler(self, out: _SessionWriter, tag: int, req: Request) -> None:
        # Each answer is held until the next one (or the end) is known, so the last answer
        # and the terminal frame leave in one write: one Noise message and one yamux frame
        # fewer per request (most requests have exactly one answer).
        terminal = Envelope(END)
        held: Envelope | None = None
        responses = self.handler(req)
        try:
            async for response in responses:
                if response.kind == ERROR:
                    terminal = response  # an err ends the request, as on the one-shot protocol
                    break
                if held is not None:
                    await out.send(tag, held)
                held = response
        except _StreamBroken:
            raise
        except Exception as exc:
            _log.error(
                "request handler failed peer=%s protocol=%s error=%s",
                req.peer_id,
                self.session_protocol,
                type(exc).__name__,
                extra={"event": "handler_failed", "peer": req.peer_id},
            )
            terminal = Envelope(ERROR, {"reason": "internal"})
        finally:
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await out.send(tag, *(() if held is None else (held,)), terminal)
        if terminal.kind == END:
            self.served += 1


class _PerPeer:
    """How many places each peer holds, each peer at most ``limit`` (no entry for none)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[ID, int] = {}

    def enter(self, peer: ID) -> bool:
        """Take a place for ``peer``; False (nothing taken) when it holds ``limit`` already."""
        held = self._held.get(peer, 0)
        if held >= self.limit:
            return False
        self._held[peer] = held + 1
        return True

    def holds(self, peer: ID) -> bool:
        """Whether ``peer`` holds a place now."""
        return peer in self._held

    def leave(self, peer: ID) -> None:
        """Give back a place ``enter`` took."""
        left = self._held.pop(peer) - 1
        if left:
            self._held[peer] = left


@dataclass
class _SessionPlace:
    """An open session as eviction sees it: when it last sent, what it awaits, how to close it."""

    peer: ID
    last_active: float
    in_flight: set[int] = field(default_factory=set)
    scope: trio.CancelScope | None = None
    evicted: bool = False


class _StreamBroken(Exception):
    """A session stream could not be written: the session is being torn down."""


class _SessionWriter:
    """Serializes tagged frames onto one session stream; a failed write ends the session."""

    def __init__(self, stream: INetStream, fmt: FrameFormat, timeout: float) -> None:
        self.stream = stream
        self.fmt = fmt
        self.timeout = timeout
        self.scope: trio.CancelScope | None = None
        self.broken = False
        self._lock = trio.Lock()
        self._outbox: list[bytes] = []

    async def send(self, tag: int, *envelopes: Envelope) -> None:
        """Write ``envelopes`` as consecutive frames of request ``tag``, in one write with
        whatever other requests' answers queued while the stream was busy."""
        # Encoding errors (a response above the frame limit) are the handler's: raised as is.
        frame = b"".join(
            encode_frame(Envelope(REP, {"tag": tag, "kind": e.kind, "body": e.body}), self.fmt)
            for e in envelopes
        )
        if self.broken:
            raise _StreamBroken
        self._outbox.append(frame)
        async with self._lock:
            if self.broken:
                raise _StreamBroken
            batch = b"".join(self._outbox)  # empty if a previous holder wrote ours
            self._outbox.clear()
            if not batch:
                return
            try:
                with trio.fail_after(self.timeout):
                    await self.stream.write(batch)
            except Exception:
                self.broken = True
                if self.scope is not None:
                    self.scope.cancel()
                raise _StreamBroken from None


def _parse_tagged(envelope: Envelope, kind: str) -> tuple[int, Envelope]:
    """``Envelope(kind, {"tag", "kind", "body"})`` -> (tag, inner envelope), strictly.

    Raises:
        UnexpectedShape: anything else.
    """
    body = envelope.body
    if envelope.kind != kind or type(body) is not dict or len(body) != 3:
        raise UnexpectedShape(f"expected a {kind!r} frame with tag, kind and body")
    tag, inner = body.get("tag"), body.get("kind")
    if type(tag) is not int or not 0 <= tag <= _MAX_TAG:
        raise UnexpectedShape("tag must be a non-negative 63-bit int")
    if type(inner) is not str or not 0 < len(inner) <= MAX_KIND_CHARS or "body" not in body:
        raise UnexpectedShape("inner kind must be a short str, and a body must be present")
    return tag, Envelope(inner, body["body"])


async def _read_one(stream: INetStream, decoder: FrameDecoder) -> Envelope:
    while True:
        data = await read_some(stream, _READ_CHUNK)
        if not data:
            decoder.eof()
            raise FrameError("stream ended before a request frame")
        got = decoder.feed(data)
        if got:
            # One request per stream: anything after it is ignored, never read.
            return got[0]


async def _answer_and_close(
    stream: INetStream, envelopes: list[Envelope], fmt: FrameFormat
) -> None:
    with trio.move_on_after(1.0):
        try:
            for e in envelopes:
                await stream.write(encode_frame(e, fmt))
        except Exception:
            pass
    await _close(stream)


async def _close(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1.0), contextlib.suppress(Exception):
        await stream.close()


async def _reset(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1.0), contextlib.suppress(Exception):
        await stream.reset()
