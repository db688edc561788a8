"""The client request/response protocol shape on real hosts."""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator

import multiaddr
import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo

from kmsnode.net import (
    CLIENT_PROTOCOL,
    Envelope,
    Host,
    NetworkIdentity,
    Request,
    RequestFailed,
    RequestServer,
    request,
)


async def echo_thrice(req: Request) -> AsyncIterator[Envelope]:
    if req.envelope.kind == "boom":
        raise RuntimeError("secret key material would be here")
    for i in range(3):
        yield Envelope("res", {"i": i, "echo": req.envelope.body, "from": req.peer_id})


async def test_request_streams_back_responses(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kmsnode.net")
    server, client = Host(NetworkIdentity.generate()), Host(NetworkIdentity.generate())
    rs = RequestServer(server, echo_thrice)
    rs.install()
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(server.run)
        await nursery.start(client.run)
        got = await request(client, server.peer_id, addrs, Envelope("req", b"hello"), timeout=10)
        assert [e.body["i"] for e in got] == [0, 1, 2]
        assert all(e.body["echo"] == b"hello" for e in got)
        assert got[0].body["from"] == client.identity.peer_id_str  # the authenticated peer

        # A failing handler gives an opaque error, and logs no exception text.
        got = await request(client, server.peer_id, addrs, Envelope("boom", b""), timeout=10)
        assert got == [Envelope("err", {"reason": "internal"})]
        assert "secret" not in caplog.text

        # A garbage request frame resets that stream; the server keeps serving.
        stream = await client.libp2p.new_stream(server.peer_id, [TProtocol(CLIENT_PROTOCOL)])
        await stream.write(struct.pack(">I", 2) + b"\xc1\xc1")
        with trio.fail_after(10):
            try:
                while await stream.read(1024):
                    pass
            except Exception:
                pass
        assert rs.refused == 1 and "refused request" in caplog.text
        got = await request(client, server.peer_id, addrs, Envelope("req", b"again"), timeout=10)
        assert len(got) == 3 and rs.served == 2
        nursery.cancel_scope.cancel()


async def test_request_to_unreachable_peer_fails_cleanly() -> None:
    client, other = Host(NetworkIdentity.generate()), NetworkIdentity.generate()
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        with pytest.raises(RequestFailed):
            await request(
                client, other.peer_id, ["/ip4/127.0.0.1/tcp/1"], Envelope("req"), timeout=5
            )
        nursery.cancel_scope.cancel()


async def test_streams_that_send_nothing_hold_no_handler_slot_and_a_peer_has_a_cap() -> None:
    server, idle = Host(NetworkIdentity.generate()), Host(NetworkIdentity.generate())
    honest = Host(NetworkIdentity.generate())
    rs = RequestServer(server, echo_thrice, max_concurrent=1, max_per_peer=3)
    rs.install()
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(server.run)
        await nursery.start(idle.run)
        await nursery.start(honest.run)
        await idle.libp2p.connect(PeerInfo(server.peer_id, [multiaddr.Multiaddr(a) for a in addrs]))
        # The one handler slot is not taken by streams that never send their request...
        silent = [
            await idle.libp2p.new_stream(server.peer_id, [TProtocol(CLIENT_PROTOCOL)])
            for _ in range(3)
        ]
        got = await request(honest, server.peer_id, addrs, Envelope("req", b"hi"), timeout=10)
        assert len(got) == 3
        # ...and a fourth stream from the same peer is refused at once (busy).
        got = await request(idle, server.peer_id, addrs, Envelope("req", b"more"), timeout=10)
        assert got == [Envelope("err", {"reason": "busy"})]
        for s in silent:
            await s.reset()
        nursery.cancel_scope.cancel()
