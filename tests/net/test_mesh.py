"""The committee mesh over loopback sockets: delivery, authentication, bad peers, reconnects."""

from __future__ import annotations

import logging
import struct

import msgpack
import pytest
import trio
import trio.testing
from libp2p.custom_types import TProtocol

from kmsnode.net import (
    CONSENSUS_PROTOCOL,
    SYNC_PROTOCOL,
    Committee,
    Envelope,
    FrameFormat,
    FrameTooLarge,
    Host,
    Member,
    Mesh,
    MeshNotRunning,
    NetworkIdentity,
    NodeId,
    ProtocolSpec,
    UnknownNode,
    encode_frame,
)

from .conftest import FAST_BACKOFF, cluster, wait_for


async def receive_n(channel: trio.MemoryReceiveChannel, n: int, timeout: float = 10.0) -> list:  # type: ignore[type-arg]
    with trio.fail_after(timeout):
        return [await channel.receive() for _ in range(n)]


async def test_four_nodes_broadcast_with_authenticated_senders() -> None:
    async with cluster(4) as c:
        for x in c.nodes:
            assert x.mesh is not None
            x.mesh.broadcast(CONSENSUS_PROTOCOL, Envelope("c", f"from {x.node_id}".encode()))
        for x in c.nodes:
            got = await receive_n(x.channels[CONSENSUS_PROTOCOL], 3)
            senders = sorted(s for s, _ in got)
            assert senders == [i for i in (1, 2, 3, 4) if i != x.node_id]
            for sender, env in got:  # the sender is the Noise peer, and here the payload agrees
                assert env == Envelope("c", f"from {sender}".encode())


async def test_protocols_have_separate_channels_and_order_is_kept() -> None:
    async with cluster(3) as c:
        m1 = c[1].mesh
        assert m1 is not None
        for i in range(200):
            m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", i))
            m1.send(NodeId(2), SYNC_PROTOCOL, Envelope("s", -i))
        cons = await receive_n(c[2].channels[CONSENSUS_PROTOCOL], 200)
        sync = await receive_n(c[2].channels[SYNC_PROTOCOL], 200)
        assert [e.body for _, e in cons] == list(range(200))
        assert [e.body for _, e in sync] == [-i for i in range(200)]
        stats = m1.statistics().links[CONSENSUS_PROTOCOL][NodeId(2)]
        assert stats.frames_sent == 200 and stats.connects == 1 and stats.frames_dropped == 0


async def test_a_cut_drops_traffic_both_ways_until_lifted() -> None:
    async with cluster(3) as c:
        m1, m2 = c[1].mesh, c[2].mesh
        assert m1 is not None and m2 is not None
        m1.cut = frozenset({NodeId(2)})
        m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", "lost"))  # not sent at all
        m2.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", "lost too"))  # dropped on arrival
        m1.send(NodeId(3), CONSENSUS_PROTOCOL, Envelope("c", "to 3"))  # others unaffected
        assert [e.body for _, e in await receive_n(c[3].channels[CONSENSUS_PROTOCOL], 1)] == [
            "to 3"
        ]

        def cut_counted() -> bool:
            links = m1.statistics().links[CONSENSUS_PROTOCOL]
            return links[NodeId(2)].frames_cut == 2

        await wait_for(cut_counted)
        m1.cut = frozenset()
        m2.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", "after"))
        got = await receive_n(c[1].channels[CONSENSUS_PROTOCOL], 1)
        assert [(s, e.body) for s, e in got] == [(2, "after")]


async def test_send_to_self_unknown_node_and_oversized() -> None:
    async with cluster(2) as c:
        m1 = c[1].mesh
        assert m1 is not None
        m1.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"me"))
        assert await receive_n(c[1].channels[CONSENSUS_PROTOCOL], 1) == [(1, Envelope("c", b"me"))]
        with pytest.raises(UnknownNode):
            m1.send(NodeId(9), CONSENSUS_PROTOCOL, Envelope("c", b""))
        with pytest.raises(FrameTooLarge):
            m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", b"x" * (4 * 1024 * 1024)))


async def test_send_before_run_raises() -> None:
    ident = NetworkIdentity.generate()
    committee = Committee(
        [Member(NodeId(1), ident.peer_id_str, ("/ip4/127.0.0.1/tcp/1",), ident.public_key)]
    )
    mesh = Mesh(Host(ident), committee, NodeId(1))
    mesh.add_protocol(ProtocolSpec(CONSENSUS_PROTOCOL))
    with pytest.raises(MeshNotRunning):
        mesh.broadcast(CONSENSUS_PROTOCOL, Envelope("c"))
    with pytest.raises(ValueError):
        mesh.add_protocol(ProtocolSpec(CONSENSUS_PROTOCOL))
    with pytest.raises(ValueError):
        Mesh(Host(NetworkIdentity.generate()), committee, NodeId(1))


async def test_peer_outside_committee_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kmsnode.net")
    async with cluster(3) as c:
        target = c[1]
        assert target.host is not None and target.mesh is not None
        # The outsider runs its own mesh with a committee that claims it is node 4 and lists the
        # real node 1: its claim is worthless, node 1 checks the Noise-authenticated peer id.
        outsider_id = NetworkIdentity.generate()
        outsider = Host(outsider_id)
        fake = Committee(
            [
                Member(
                    NodeId(1),
                    target.identity.peer_id_str,
                    tuple(target.listen),
                    target.identity.public_key,
                ),
                Member(
                    NodeId(4),
                    outsider_id.peer_id_str,
                    ("/ip4/127.0.0.1/tcp/1",),
                    outsider_id.public_key,
                ),
            ]
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(outsider.run)
            mesh = Mesh(outsider, fake, NodeId(4), backoff=FAST_BACKOFF)
            mesh.add_protocol(ProtocolSpec(CONSENSUS_PROTOCOL))
            await nursery.start(mesh.run)
            mesh.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"let me vote"))
            await wait_for(lambda: target.mesh.statistics().refused_streams >= 1)  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()
        assert "refused stream from a peer outside the committee" in caplog.text
        # Nothing reached the application, and committee members still get through.
        with pytest.raises(trio.WouldBlock):
            target.channels[CONSENSUS_PROTOCOL].receive_nowait()
        c[2].mesh.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"ok"))  # type: ignore[union-attr]
        assert await receive_n(target.channels[CONSENSUS_PROTOCOL], 1) == [
            (2, Envelope("c", b"ok"))
        ]


async def _raw_stream_bytes(c_host: Host, target_peer: object, data: bytes) -> None:
    """Open a raw consensus stream, write ``data``, and wait until the peer resets or closes it."""
    stream = await c_host.libp2p.new_stream(target_peer, [TProtocol(CONSENSUS_PROTOCOL)])  # type: ignore[arg-type]
    await stream.write(data)
    with trio.fail_after(10):
        try:
            while await stream.read(65536):
                pass
        except Exception:
            pass  # reset or EOF: both mean the peer closed it


@pytest.mark.parametrize(
    "name,data",
    [
        ("oversized", struct.pack(">I", 64 * 1024 * 1024) + b"\x00" * 16),
        ("garbage", struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1"),
        ("unknown version", encode_frame(Envelope("c", b""), FrameFormat(version=7))),
        ("wrong shape", struct.pack(">I", 3) + msgpack.packb({"a": 1})),
    ],
    ids=["oversized", "garbage", "unknown-version", "wrong-shape"],
)
async def test_bad_frame_closes_only_that_stream(
    name: str, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kmsnode.net")
    async with cluster(3) as c:
        n1, n2, n3 = c[1], c[2], c[3]
        assert n1.mesh and n2.mesh and n3.mesh and n2.host
        # A healthy long-lived stream 2 -> 1 first.
        n2.mesh.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"before"))
        assert await receive_n(n1.channels[CONSENSUS_PROTOCOL], 1) == [
            (2, Envelope("c", b"before"))
        ]
        # Node 2 (a committee member) also sends a bad frame on a second, raw stream.
        await _raw_stream_bytes(n2.host, n1.identity.peer_id, data)
        await wait_for(lambda: n1.mesh.statistics().rejected_frames == 1)  # type: ignore[union-attr]
        assert "closed stream on a bad frame" in caplog.text
        # Node 1 keeps serving: the old stream from 2 and a stream from 3 both still deliver.
        n2.mesh.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"after"))
        n3.mesh.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"three"))
        got = await receive_n(n1.channels[CONSENSUS_PROTOCOL], 2)
        assert sorted((s, e.body) for s, e in got) == [(2, b"after"), (3, b"three")]
        assert n2.mesh.statistics().links[CONSENSUS_PROTOCOL][NodeId(1)].connects == 1


async def test_reconnect_after_peer_restart() -> None:
    async with cluster(3) as c:
        m1 = c[1].mesh
        assert m1 is not None
        m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", b"one"))
        assert await receive_n(c[2].channels[CONSENSUS_PROTOCOL], 1) == [(1, Envelope("c", b"one"))]
        await c.stop(2)
        await wait_for(lambda: not m1.connected(NodeId(2), CONSENSUS_PROTOCOL))
        # Sent while node 2 is down: queued (and retried) by node 1.
        m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", b"while down"))
        await wait_for(lambda: m1.statistics().links[CONSENSUS_PROTOCOL][NodeId(2)].failures >= 1)
        await c.restart(2)
        got = await receive_n(c[2].channels[CONSENSUS_PROTOCOL], 1, timeout=15)
        assert got == [(1, Envelope("c", b"while down"))]
        stats = m1.statistics().links[CONSENSUS_PROTOCOL][NodeId(2)]
        assert stats.connects == 2
        # And the restarted node can talk back over a fresh stream.
        c[2].mesh.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"back"))  # type: ignore[union-attr]
        assert await receive_n(c[1].channels[CONSENSUS_PROTOCOL], 1) == [
            (2, Envelope("c", b"back"))
        ]


async def test_drop_oldest_when_peer_is_unreachable() -> None:
    spec = ProtocolSpec(CONSENSUS_PROTOCOL, queue_max_messages=5)
    async with cluster(2, [spec]) as c:
        await c.stop(2)
        m1 = c[1].mesh
        assert m1 is not None
        for i in range(20):
            m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", i))
        stats = m1.statistics().links[CONSENSUS_PROTOCOL][NodeId(2)]
        assert stats.frames_dropped == 15 and stats.queued == 5
        await c.restart(2)
        got = await receive_n(c[2].channels[CONSENSUS_PROTOCOL], 5, timeout=15)
        assert [e.body for _, e in got] == [15, 16, 17, 18, 19]  # the newest five survive


async def test_recovers_when_a_connection_cannot_open_streams() -> None:
    # py-libp2p: after a remote stream handler raised, the connection stays "up" but new
    # streams on it hang. The mesh must drop it and redial rather than reuse it forever.
    ids = [NetworkIdentity.generate() for _ in range(2)]
    hosts = [Host(i) for i in ids]

    async def raising_handler(stream: object) -> None:
        await stream.read(100)  # type: ignore[attr-defined]
        await stream.read(100)  # type: ignore[attr-defined]  # StreamEOF escapes

    hosts[1].libp2p.set_stream_handler(TProtocol("/test/raises/1"), raising_handler)
    async with trio.open_nursery() as nursery:
        addrs = [await nursery.start(h.run) for h in hosts]
        committee = Committee(
            Member(NodeId(k + 1), ids[k].peer_id_str, tuple(addrs[k]), ids[k].public_key)
            for k in range(2)
        )
        meshes = [
            Mesh(hosts[k], committee, NodeId(k + 1), backoff=FAST_BACKOFF, dial_timeout=1.0)
            for k in range(2)
        ]
        chans = [m.add_protocol(ProtocolSpec(CONSENSUS_PROTOCOL)) for m in meshes]
        for m in meshes:
            await nursery.start(m.run)
        await hosts[0].connect(hosts[1].peer_id, addrs[1])
        stream = await hosts[0].libp2p.new_stream(hosts[1].peer_id, [TProtocol("/test/raises/1")])
        await stream.write(b"x")
        await stream.close()
        meshes[0].send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", b"still arrives"))
        assert await receive_n(chans[1], 1, timeout=10) == [(1, Envelope("c", b"still arrives"))]
        nursery.cancel_scope.cancel()


async def test_flush_returns_once_queued_frames_are_written() -> None:
    """``flush`` is what the consensus driver awaits before an fsync: it must not return
    while frames for a connected peer are still queued, and costs nothing when none are."""
    async with cluster(2) as c:
        m1 = c[1].mesh
        assert m1 is not None
        m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", 0))
        await receive_n(c[2].channels[CONSENSUS_PROTOCOL], 1)

        def stats() -> object:
            return m1.statistics().links[CONSENSUS_PROTOCOL][NodeId(2)]

        await wait_for(lambda: stats().connected and stats().frames_sent == 1)  # type: ignore[attr-defined]
        with trio.testing.assert_no_checkpoints():
            await m1.flush()
        for i in range(1, 201):
            m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", b"x" * 1000 + bytes([i % 256])))
        assert stats().frames_sent == 1  # type: ignore[attr-defined]
        await m1.flush(timeout=10)
        assert stats().frames_sent == 201 and stats().queued == 0  # type: ignore[attr-defined]
        got = await receive_n(c[2].channels[CONSENSUS_PROTOCOL], 200)
        assert len(got) == 200


async def test_flush_gives_up_on_a_peer_that_does_not_read() -> None:
    # Node 2's application never reads: its inbound buffer (1) fills, the stream's flow
    # control window closes, and node 1's writer stalls with frames queued.
    spec = ProtocolSpec(CONSENSUS_PROTOCOL, inbound_buffer=1)
    async with cluster(2, [spec]) as c:
        m1 = c[1].mesh
        assert m1 is not None
        m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", b"hello"))
        await wait_for(lambda: m1.connected(NodeId(2), CONSENSUS_PROTOCOL))
        for _ in range(64):
            m1.send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", b"y" * 60_000))
        start = trio.current_time()
        with trio.fail_after(5):
            await m1.flush(timeout=0.3)
        waited = trio.current_time() - start
        stats = m1.statistics().links[CONSENSUS_PROTOCOL][NodeId(2)]
        assert stats.frames_sent < 65  # still stuck: flush returned on its deadline
        assert waited >= 0.3
