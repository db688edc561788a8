"""py-libp2p's fast path (``kmsnode.net._fastpath``): the lock that does not yield when free,
and the socket read that serves Noise frames from one ``recv``."""

from __future__ import annotations

import socket

import trio
import trio.testing
from libp2p.io.trio import TrioTCPStream
from libp2p.stream_muxer.yamux.yamux import Yamux

from kmsnode.net import _fastpath
from kmsnode.net._fastpath import QuickLock


def test_installed_by_the_host_module() -> None:
    import kmsnode.net.host  # noqa: F401  (installs on import)

    assert _fastpath.installed()
    assert _fastpath.install()  # idempotent
    assert TrioTCPStream.read is _fastpath._buffered_read
    assert hasattr(Yamux.__init__, "__wrapped__")
    assert Yamux._write_frame is _fastpath._write_frame


async def test_libp2p_objects_get_quick_locks() -> None:
    a, b = socket.socketpair()
    with a, b:
        stream = TrioTCPStream(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
        assert type(stream.read_lock) is QuickLock
        assert type(stream.write_lock) is QuickLock


async def test_buffered_read_keeps_every_byte_in_order() -> None:
    a, b = socket.socketpair()
    with a, b:
        stream = TrioTCPStream(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
        b.sendall(b"abcdefghij")
        await trio.testing.wait_all_tasks_blocked()
        assert await stream.read(2) == b"ab"  # one recv took all ten bytes
        assert await stream.read(0) == b""
        assert await stream.read(3) == b"cde"
        assert await stream.read(None) == b"fghij"
        b.sendall(b"klm")
        assert await stream.read(10) == b"klm"
        b.sendall(b"nop")
        b.shutdown(socket.SHUT_WR)
        assert await stream.read(1) == b"n"
        assert await stream.read(5) == b"op"  # what is buffered, before the end
        assert await stream.read(5) == b""  # then the end of the stream


async def test_buffered_read_over_many_random_splits() -> None:
    import random

    rng = random.Random(5)
    data = bytes(rng.randrange(256) for _ in range(200_000))
    a, b = socket.socketpair()
    with a, b:
        stream = TrioTCPStream(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
        got = bytearray()

        async def send() -> None:
            peer = trio.SocketStream(trio.socket.from_stdlib_socket(b.dup()))
            for i in range(0, len(data), 7919):
                await peer.send_all(data[i : i + 7919])
            await peer.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            while True:
                chunk = await stream.read(rng.choice([1, 2, 12, 100, 5000, None]))
                if not chunk:
                    break
                got += chunk
    assert bytes(got) == data


async def test_mesh_messages_still_arrive_in_order_both_ways() -> None:
    """End to end through the patched classes: many interleaved messages, in order."""
    from kmsnode.net import CONSENSUS_PROTOCOL, Envelope, NodeId

    from .conftest import cluster

    async with cluster(2) as c:
        inbox = {1: c[1].channels[CONSENSUS_PROTOCOL], 2: c[2].channels[CONSENSUS_PROTOCOL]}
        n = 400
        for i in range(n):
            c[1].mesh.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("m", [i, b"x" * (i % 97)]))
            c[2].mesh.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("m", [i, b"y" * (i % 89)]))
            if i % 7 == 0:
                await trio.sleep(0)
        with trio.fail_after(20):
            for me in (1, 2):
                got = [(await inbox[me].receive())[1].body[0] for _ in range(n)]
                assert got == list(range(n))
