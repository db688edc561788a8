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
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID

from .committee import Committee, NodeId
from .errors import FrameError, RequestFailed
from .framing import Envelope, FrameDecoder, FrameFormat, encode_frame
from .host import Host

__all__ = [
    "CLIENT_PROTOCOL",
    "END",
    "ERROR",
    "Request",
    "RequestHandler",
    "RequestServer",
    "request",
]

_log = logging.getLogger("kmsnode.net.reqresp")

CLIENT_PROTOCOL = "/kms/client/1"
END = "end"
ERROR = "err"
_READ_CHUNK = 256 * 1024


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
        fmt: frame version and limits, for requests and responses alike.
        committee: lets the handler see whether the requester is a member.
        max_concurrent: requests served at once before answering ``busy``.
        request_timeout: seconds a peer has to deliver its request frame.
    """

    def __init__(
        self,
        host: Host,
        handler: RequestHandler,
        *,
        protocol: str = CLIENT_PROTOCOL,
        fmt: FrameFormat | None = None,
        committee: Committee | None = None,
        max_concurrent: int = 64,
        request_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.handler = handler
        self.protocol = protocol
        self.fmt = fmt or FrameFormat()
        self.committee = committee
        self.request_timeout = request_timeout
        self._slots = trio.Semaphore(max_concurrent)
        self.served = 0
        self.refused = 0
        """Streams closed because of a bad or late request frame, or busy."""

    def install(self) -> None:
        """Register the protocol handler on the host (before or after it starts)."""
        self.host.libp2p.set_stream_handler(TProtocol(self.protocol), self._serve)

    async def _serve(self, stream: INetStream) -> None:
        # Runs inside libp2p's connection nursery: nothing but Cancelled may escape.
        peer_id: ID = stream.muxed_conn.peer_id
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self.refused += 1
            await _answer_and_close(stream, [Envelope(ERROR, {"reason": "busy"})], self.fmt)
            return
        try:
            await self._serve_one(stream, peer_id)
        finally:
            self._slots.release()

    async def _serve_one(self, stream: INetStream, peer_id: ID) -> None:
        try:
            with trio.fail_after(self.request_timeout):
                envelope = await _read_one(stream, FrameDecoder(self.fmt))
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
                    try:
                        data = await stream.read(_READ_CHUNK)
                    except StreamEOF:
                        data = b""
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


async def _read_one(stream: INetStream, decoder: FrameDecoder) -> Envelope:
    while True:
        try:
            data = await stream.read(_READ_CHUNK)
        except StreamEOF:
            data = b""
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
