"""Session mode of the client protocol (``/kms/client-session/1``) on real hosts."""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.custom_types import TProtocol

from kmsnode.net import (
    SESSION_PROTOCOL,
    Backoff,
    Envelope,
    FrameFormat,
    Host,
    NetworkIdentity,
    Request,
    RequestFailed,
    RequestServer,
    Session,
    encode_frame,
)

from .conftest import wait_for

FAST = Backoff(initial=0.02, maximum=0.2)


GATES: dict[str, trio.Event] = {}
"""Requests of kind ``gate`` wait for ``GATES[body]`` (set by the test) before answering."""


async def handler(req: Request) -> AsyncIterator[Envelope]:
    kind, body = req.envelope.kind, req.envelope.body
    if kind == "gate":
        await GATES[body].wait()
    if kind == "boom":
        raise RuntimeError("secret key material would be here")
    if kind == "hang":
        await trio.sleep_forever()
    if kind == "refuse":
        yield Envelope("err", {"reason": "no"})
        yield Envelope("res", "never sent")
        return
    if kind == "slow":
        await trio.sleep(body)
    for i in range(2):
        yield Envelope("res", {"i": i, "echo": body, "from": req.peer_id})


@asynccontextmanager
async def server_and_session(
    **server_kw: object,
) -> AsyncIterator[tuple[RequestServer, Session, list[str], trio.Nursery]]:
    server, client = Host(NetworkIdentity.generate()), Host(NetworkIdentity.generate())
    rs = RequestServer(server, handler, **server_kw)  # type: ignore[arg-type]
    rs.install()
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(server.run)
        await nursery.start(client.run)
        session = Session(client, server.peer_id, addrs, backoff=FAST)
        await nursery.start(session.run)
        yield rs, session, addrs, nursery
        nursery.cancel_scope.cancel()


async def assert_a_new_peer_is_served(rs: RequestServer) -> None:
    """A fresh client identity opens a session to ``rs`` and gets an answer."""
    other = Host(NetworkIdentity.generate())
    async with trio.open_nursery() as nursery:
        await nursery.start(other.run)
        session = Session(other, rs.host.peer_id, rs.host.addrs(), backoff=FAST)
        await nursery.start(session.run)
        assert len(await session.request(Envelope("echo", 1), timeout=10)) == 2
        nursery.cancel_scope.cancel()


async def test_many_concurrent_requests_share_one_stream() -> None:
    async with server_and_session() as (rs, session, _, _):
        results: dict[int, list[Envelope]] = {}

        async def one(i: int) -> None:
            # Varied delays so answers come back out of order.
            results[i] = await session.request(Envelope("slow", (i % 7) / 100), timeout=10)

        async with trio.open_nursery() as n:
            for i in range(60):
                n.start_soon(one, i)
        for i in range(60):
            assert [e.body["i"] for e in results[i]] == [0, 1]
            assert all(e.body["echo"] == (i % 7) / 100 for e in results[i])
        assert results[0][0].body["from"] == session.host.identity.peer_id_str
        assert session.stats.connects == 1 and session.stats.requests == 60
        assert session.stats.outstanding == 0 and session.stats.unknown_tags == 0
        # A handler's answer may leave in another handler's write: it counts itself served
        # when it gets the stream lock back, which can be just after the client has it.
        await wait_for(lambda: rs.served == 60)
        assert rs.sessions == 1


async def test_concurrent_requests_and_answers_share_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """60 requests started at once leave in one write (the first caller waits one scheduler
    pass for the others); their 180 answer frames, queued while the stream is being written,
    in fewer than 100."""
    from libp2p.network.stream.net_stream import NetStream

    requests: list[bytes] = []
    answers: list[bytes] = []
    real_write = NetStream.write

    async def counting_write(self: NetStream, data: bytes) -> None:
        (requests if b"\xa3req" in data else answers).append(data)
        await real_write(self, data)

    async with server_and_session() as (_, session, _, _):
        await wait_for(lambda: session.stats.connected)
        monkeypatch.setattr(NetStream, "write", counting_write)
        results: dict[int, list[Envelope]] = {}

        async def one(i: int) -> None:
            results[i] = await session.request(Envelope("echo", i), timeout=10)

        async with trio.open_nursery() as n:
            for i in range(60):
                n.start_soon(one, i)
    assert all([e.body["echo"] for e in results[i]] == [i, i] for i in range(60))
    assert sum(data.count(b"\xa3req") for data in requests) == 60
    assert len(requests) == 1, [len(d) for d in requests]  # started in one pass: one write
    assert sum(data.count(b"\xa3rep") for data in answers) == 180  # 2 answers + end each
    assert len(answers) < 100, len(answers)


async def test_a_cancelled_first_caller_still_writes_the_queued_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller that writes a batch may be cancelled (the client drops the slower nodes
    once it has a quorum): the others' requests in its batch still leave."""
    async with server_and_session() as (_, session, _, _):
        await wait_for(lambda: session.stats.connected)
        release = trio.Event()
        real_flush = Session._flush

        async def slow_flush(self: Session, conn: object) -> None:
            await release.wait()
            await real_flush(self, conn)  # type: ignore[arg-type]

        monkeypatch.setattr(Session, "_flush", slow_flush)
        got: list[list[Envelope]] = []
        first = trio.CancelScope()

        async def first_caller() -> None:
            with first:
                await session.request(Envelope("echo", "first"), timeout=10)

        async def second_caller() -> None:
            got.append(await session.request(Envelope("echo", "second"), timeout=10))

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(first_caller)
                await wait_for(lambda: session._conn is not None and len(session._conn.outbox) == 1)
                n.start_soon(second_caller)
                await wait_for(lambda: session._conn is not None and len(session._conn.outbox) == 2)
                first.cancel()  # while it holds the batch
                release.set()
        assert first.cancelled_caught
        assert [e.body["echo"] for e in got[0]] == ["second", "second"]


async def test_server_pauses_reading_at_max_outstanding() -> None:
    async with server_and_session(max_outstanding=2) as (rs, session, _, _):
        got: list[list[Envelope]] = []

        async def one() -> None:
            got.append(await session.request(Envelope("slow", 0.05), timeout=10))

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                for _ in range(8):
                    n.start_soon(one)
        assert len(got) == 8 and all(len(g) == 2 for g in got)
        await wait_for(lambda: rs.served == 8)  # see test_many_concurrent_requests_...


async def test_handler_error_is_a_tagged_err_and_the_stream_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kmsnode.net")
    async with server_and_session() as (_, session, _, _):
        got = await session.request(Envelope("boom", b""), timeout=10)
        assert got == [Envelope("err", {"reason": "internal"})]
        assert "secret" not in caplog.text
        # A handler's own err ends the request, as on the one-shot protocol.
        assert await session.request(Envelope("refuse"), timeout=10) == [
            Envelope("err", {"reason": "no"})
        ]
        got = await session.request(Envelope("echo", b"after"), timeout=10)
        assert [e.body["echo"] for e in got] == [b"after", b"after"]
        assert session.stats.connects == 1 and session.stats.breaks == 0


async def test_busy_is_a_tagged_err() -> None:
    async with server_and_session(max_concurrent=1) as (_, session, _, nursery):
        nursery.start_soon(session.request, Envelope("slow", 0.5))
        await wait_for(lambda: session.stats.outstanding == 1)
        await trio.sleep(0.1)
        assert await session.request(Envelope("echo"), timeout=10) == [
            Envelope("err", {"reason": "busy"})
        ]


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack(">I", 2) + b"\xc1\xc1",  # not msgpack
        encode_frame(Envelope("req", {"tag": "x", "kind": "echo", "body": 1}), FrameFormat()),
        encode_frame(Envelope("req", {"tag": 1, "kind": "", "body": 1}), FrameFormat()),
        encode_frame(Envelope("rep", {"tag": 1, "kind": "echo", "body": 1}), FrameFormat()),
        encode_frame(Envelope("req", [1, "echo", None]), FrameFormat()),
        struct.pack(">I", 1 << 30),  # above the frame limit
        # the same tag twice while the first is in flight
        encode_frame(Envelope("req", {"tag": 5, "kind": "hang", "body": None}), FrameFormat())
        + encode_frame(Envelope("req", {"tag": 5, "kind": "echo", "body": None}), FrameFormat()),
    ],
)
async def test_a_bad_frame_closes_only_that_stream(
    garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kmsnode.net")
    async with server_and_session() as (rs, session, _, _):
        assert len(await session.request(Envelope("echo", 1), timeout=10)) == 2
        client = session.host
        stream = await client.libp2p.new_stream(rs.host.peer_id, [TProtocol(SESSION_PROTOCOL)])
        await stream.write(garbage)
        with trio.fail_after(10):
            try:
                while await stream.read(1024):
                    pass
            except Exception:
                pass
        await wait_for(lambda: rs.sessions_rejected == 1)
        assert "closed session on a bad frame" in caplog.text
        # The session stream next to it is untouched.
        assert len(await session.request(Envelope("echo", 2), timeout=10)) == 2
        assert session.stats.connects == 1 and rs.sessions == 1


async def test_abandoned_requests_answers_are_ignored() -> None:
    async with server_and_session() as (_, session, _, _):
        await wait_for(lambda: session.stats.connected)
        with trio.move_on_after(0.05):
            await session.request(Envelope("slow", 0.2), timeout=10)
        await wait_for(lambda: session.stats.unknown_tags == 3)  # two answers and the end
        assert len(await session.request(Envelope("echo"), timeout=10)) == 2
        assert session.stats.connects == 1


async def test_reconnects_after_the_server_restarts() -> None:
    server_id = NetworkIdentity.generate()
    client = Host(NetworkIdentity.generate())

    async def serve(
        scope: trio.CancelScope,
        stopped: trio.Event,
        listen: list[str],
        *,
        task_status: trio.TaskStatus[list[str]],  # type: ignore[name-defined,unused-ignore]
    ) -> None:
        try:
            with scope:
                host = Host(server_id, listen=listen)
                RequestServer(host, handler).install()
                await host.run(task_status=task_status)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        scope, stopped = trio.CancelScope(), trio.Event()
        addrs = await nursery.start(serve, scope, stopped, ["/ip4/127.0.0.1/tcp/0"])
        session = Session(client, server_id.peer_id, addrs, backoff=FAST)
        await nursery.start(session.run)
        assert len(await session.request(Envelope("echo", 1), timeout=10)) == 2

        # Stop the server with a request in flight: that request fails, to be resent.
        failed: list[str] = []

        async def hang() -> None:
            try:
                await session.request(Envelope("hang"), timeout=20)
            except RequestFailed as exc:
                failed.append(str(exc))

        async with trio.open_nursery() as inner:
            inner.start_soon(hang)
            await wait_for(lambda: session.stats.outstanding == 1)
            await trio.sleep(0.05)
            scope.cancel()
            await stopped.wait()
        assert failed and session.stats.breaks == 1

        # While it is down, requests wait for the session (and time out cleanly).
        with pytest.raises(RequestFailed):
            await session.request(Envelope("echo", 0), timeout=0.3)

        scope, stopped = trio.CancelScope(), trio.Event()
        await nursery.start(serve, scope, stopped, addrs)
        got = await session.request(Envelope("echo", 2), timeout=20)
        assert [e.body["echo"] for e in got] == [2, 2]
        assert session.stats.connects == 2 and session.stats.failures >= 1
        nursery.cancel_scope.cancel()


async def test_a_peer_gets_at_most_max_per_peer_sessions_and_others_still_get_theirs() -> None:
    async with server_and_session(max_per_peer=2) as (rs, session, _, _):
        assert len(await session.request(Envelope("echo", 1), timeout=10)) == 2  # session 1
        client = session.host
        extra = []
        for _ in range(3):
            # A refused stream is reset by the server, maybe before the opening completes.
            with contextlib.suppress(Exception):
                extra.append(
                    await client.libp2p.new_stream(rs.host.peer_id, [TProtocol(SESSION_PROTOCOL)])
                )
        # One more place for this peer: the second extra stream is reset, and so the third.
        await wait_for(lambda: rs.sessions == 2 and rs.sessions_rejected == 2)
        for s in extra:
            with contextlib.suppress(Exception):
                await s.reset()
        # Another peer is not held back by this one's limit.
        await assert_a_new_peer_is_served(rs)


async def test_a_silent_session_is_closed_after_the_idle_timeout_but_not_while_answering() -> None:
    async with server_and_session(session_idle_timeout=0.3) as (rs, session, _, _):
        # A request that takes longer than the idle timeout keeps its session open.
        assert len(await session.request(Envelope("slow", 0.8), timeout=10)) == 2
        assert rs.sessions_idle_closed == 0
        await wait_for(lambda: rs.sessions_idle_closed == 1)  # then silence closes it
        # The client redials on its next request.
        assert len(await session.request(Envelope("echo", 3), timeout=10)) == 2
        assert session.stats.connects == 2


async def test_request_frames_obey_the_tighter_request_format() -> None:
    tight = FrameFormat(max_frame_bytes=256, max_items=8)
    async with server_and_session(request_fmt=tight) as (rs, session, _, _):
        # Answers may exceed the request limit (they use ``fmt``); requests may not.
        assert len(await session.request(Envelope("echo", "x" * 100), timeout=10)) == 2
        with pytest.raises(RequestFailed):
            await session.request(Envelope("echo", "x" * 1000), timeout=10)
        await wait_for(lambda: rs.sessions_rejected == 1)
        with pytest.raises(RequestFailed):
            await session.request(Envelope("echo", list(range(9))), timeout=10)


@pytest.mark.parametrize(
    "frames",
    [[300 * 1024], [64 * 1024] * 5],
    ids=["one-frame-past-the-window", "data-past-the-window"],
)
async def test_a_peer_that_overruns_the_yamux_window_is_disconnected(frames: list[int]) -> None:
    # A compliant sender stops at the window; this one writes raw DATA frames past it on a
    # session the server is not reading ahead of. py-libp2p as shipped buffers such data
    # without bound; the node closes the connection instead, and serves everyone else.
    from libp2p.stream_muxer.yamux.yamux import TYPE_DATA, YAMUX_HEADER_FORMAT

    async with server_and_session() as (rs, session, _, _):
        client = session.host
        stream = await client.libp2p.new_stream(rs.host.peer_id, [TProtocol(SESSION_PROTOCOL)])
        yamux = stream.muxed_conn
        stream_id = stream.muxed_stream.stream_id  # type: ignore[attr-defined]
        for length in frames:
            header = struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, 0, stream_id, length)
            raw = header + b"\x00" * length
            with contextlib.suppress(Exception):  # the server may close while we write
                for at in range(0, len(raw), 60_000):  # one Noise message holds < 64 KiB
                    await yamux.secured_conn.write(raw[at : at + 60_000])

        def disconnected() -> bool:
            # The server's muxer for this peer has shut down (the swarm may still list it).
            conns = rs.host.libp2p.get_network().get_connections(client.peer_id)
            return all(c.muxed_conn.event_shutting_down.is_set() for c in conns)

        await wait_for(disconnected)
        await assert_a_new_peer_is_served(rs)


@asynccontextmanager
async def another_session(rs: RequestServer) -> AsyncIterator[Session]:
    """A session to ``rs`` from a fresh client identity."""
    other = Host(NetworkIdentity.generate())
    async with trio.open_nursery() as nursery:
        await nursery.start(other.run)
        session = Session(other, rs.host.peer_id, rs.host.addrs(), backoff=FAST)
        await nursery.start(session.run)
        yield session
        nursery.cancel_scope.cancel()


async def hold(session: Session) -> None:
    """Keep a request in flight on ``session`` until ``GATES["hold"]`` is set."""
    await session.request(Envelope("gate", "hold"), timeout=60)


async def test_at_max_sessions_a_newcomer_evicts_the_idlest_session_not_a_busy_one() -> None:
    GATES["hold"] = trio.Event()
    async with server_and_session(max_sessions=2) as (rs, idle, _, _):
        assert len(await idle.request(Envelope("echo", 1), timeout=10)) == 2
        async with another_session(rs) as busy, trio.open_nursery() as holding:
            assert len(await busy.request(Envelope("echo", 2), timeout=10)) == 2
            assert rs.sessions == 2
            holding.start_soon(hold, busy)  # ``busy`` awaits an answer: not a candidate
            await wait_for(lambda: rs.session_requests_in_flight == 1)
            async with another_session(rs) as newcomer:
                got = await newcomer.request(Envelope("echo", 3), timeout=10)
                assert len(got) == 2  # served: the idle session made room
                assert rs.sessions_evicted == 1 and rs.sessions_rejected == 0
                await wait_for(lambda: idle.stats.breaks == 1)  # the idle one was closed
                assert busy.stats.breaks == 0
                # Both open sessions now have requests in flight: nobody to evict, so a
                # fourth client is refused rather than cutting off an answer.
                holding.start_soon(hold, newcomer)
                await wait_for(lambda: rs.session_requests_in_flight == 2)
                async with another_session(rs) as fourth:
                    with pytest.raises(RequestFailed):
                        await fourth.request(Envelope("echo", 4), timeout=1)
                    assert rs.sessions_rejected >= 1 and rs.sessions_evicted == 1
                    assert busy.stats.breaks == newcomer.stats.breaks == 0
                GATES["hold"].set()  # the held requests are answered ...
                await wait_for(lambda: rs.session_requests_in_flight == 0)
        # ... so the evicted client, redialling, finds an idle session to take the place of.
        assert len(await idle.request(Envelope("echo", 5), timeout=10)) == 2
        assert idle.stats.connects >= 2
