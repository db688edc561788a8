"""py-libp2p's fast path (``kmsnode.net._fastpath``): the lock that does not yield when free,
and the socket read that serves Noise frames from one ``recv``."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from libp2p.io.trio import TrioTCPStream
from libp2p.stream_muxer.yamux.yamux import Yamux

from kmsnode.net import _fastpath
from kmsnode.net._fastpath import QuickLock, QuickSemaphore


def test_installed_by_the_host_module() -> None:
    import kmsnode.net.host  # noqa: F401  (installs on import)

    assert _fastpath.installed()
    assert _fastpath.install()  # idempotent
    assert TrioTCPStream.read is _fastpath._buffered_read
    assert hasattr(Yamux.__init__, "__wrapped__")
    assert Yamux._write_frame is _fastpath._write_frame


async def test_a_free_lock_is_taken_without_yielding() -> None:
    lock = QuickLock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        async with lock:
            assert lock.locked()
            assert ran == []  # no scheduler pass happened, so the other task has not run
        assert not lock.locked()
    assert ran == ["other"]


async def test_mutual_exclusion_and_fifo_hand_off() -> None:
    lock = QuickLock()
    order: list[int] = []
    inside = 0

    async def worker(i: int) -> None:
        nonlocal inside
        async with lock:
            inside += 1
            assert inside == 1
            order.append(i)
            await trio.sleep(0.001)  # hold it across real scheduling
            inside -= 1

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(worker, i)
            await trio.testing.wait_all_tasks_blocked()  # each parks before the next starts
    assert order == list(range(20))
    stats = lock.statistics()
    assert not stats.locked and stats.tasks_waiting == 0


async def test_a_cancelled_waiter_is_skipped() -> None:
    lock = QuickLock()
    got: list[str] = []

    async def waiter(name: str, scope_out: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_out.append(scope)
            async with lock:
                got.append(name)

    await lock.acquire()
    scopes: list[trio.CancelScope] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a", scopes)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "b", scopes)
        await trio.testing.wait_all_tasks_blocked()
        assert lock.statistics().tasks_waiting == 2
        scopes[0].cancel()
        await trio.testing.wait_all_tasks_blocked()
        lock.release()
    assert got == ["b"]
    assert not lock.locked()


async def test_misuse_is_refused() -> None:
    lock = QuickLock()
    with pytest.raises(RuntimeError, match="don't own"):
        lock.release()
    await lock.acquire()
    with pytest.raises(RuntimeError, match="re-acquire"):
        lock.acquire_nowait()

    async def steal() -> None:
        with pytest.raises(trio.WouldBlock):
            lock.acquire_nowait()
        with pytest.raises(RuntimeError, match="don't own"):
            lock.release()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(steal)
    lock.release()


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


async def test_semaphore_counts_hands_over_in_order_and_is_ownerless() -> None:
    sem = QuickSemaphore(2)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await sem.acquire()
        await sem.acquire()
        assert sem.value == 0 and ran == []  # available units are taken without yielding
        with pytest.raises(trio.WouldBlock):
            sem.acquire_nowait()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await sem.acquire()
        order.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()
        for _ in range(5):
            sem.release()  # released by a task that never acquired: no owner
            await trio.testing.wait_all_tasks_blocked()
    assert order == list(range(5))
    assert sem.value == 0
    sem.release()
    assert sem.value == 1
    with pytest.raises(ValueError):
        QuickSemaphore(-1)


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
