"""Request gossip over gossipsub among real hosts on loopback: members get what a member
publishes; a peer outside the committee can neither open the pubsub protocol nor get a
message accepted."""

from __future__ import annotations

import contextlib
import types
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from kmsnode.net import Host, NetworkIdentity
from kmsnode.net.gossip import GOSSIP_PROTOCOLS, RequestGossip, _MembersOnly, request_topic

from .conftest import Cluster, cluster, wait_for

TOPIC = request_topic("test-chain")


async def _gossip_on(c: Cluster, nursery: trio.Nursery) -> dict[int, RequestGossip]:
    """Gossip on every node of ``c``, started after the hosts are all connected."""
    assert c.committee is not None
    for a in c.nodes:
        for b in c.nodes:
            if a.node_id < b.node_id:
                assert a.host is not None
                await a.host.connect(c.committee.peer_id(b.node_id), b.listen)
    out = {}
    for node in c.nodes:
        assert node.host is not None and c.committee is not None
        g = RequestGossip(node.host, c.committee, node.node_id, TOPIC, max_message_bytes=1024)
        await nursery.start(g.run)
        out[int(node.node_id)] = g
    return out


async def test_a_published_request_reaches_every_other_member() -> None:
    async with cluster(4) as c, trio.open_nursery() as nursery:
        gossip = await _gossip_on(c, nursery)
        got: dict[int, list[tuple[int, bytes]]] = {i: [] for i in gossip}

        async def drain(i: int) -> None:
            async for item in gossip[i].inbox:
                got[i].append(item)

        for i in gossip:
            nursery.start_soon(drain, i)
        await wait_for(lambda: all(len(g.pubsub.peers) == 3 for g in gossip.values()))
        assert gossip[2].publish(b"request-bytes")
        await wait_for(lambda: all(got[i] == [(2, b"request-bytes")] for i in (1, 3, 4)))
        assert got[2] == []  # not echoed to the publisher
        biggest = b"y" * 1024  # max_message_bytes
        assert gossip[3].publish(biggest)
        await wait_for(lambda: all(got[i][-1:] == [(3, biggest)] for i in (1, 2, 4)))
        assert gossip[4].publish(biggest + b"z")  # too big: refused, by its publisher first
        assert gossip[4].publish(b"after")  # from the same publisher: arrives after it
        await wait_for(lambda: all(got[i][-1:] == [(4, b"after")] for i in (1, 2, 3)))
        assert gossip[4].stats.refused_messages == 1
        assert all(data != biggest + b"z" for i in got for _, data in got[i])
        nursery.cancel_scope.cancel()


async def test_a_peer_outside_the_committee_cannot_open_the_pubsub_protocol() -> None:
    async with cluster(4) as c, trio.open_nursery() as nursery:
        gossip = await _gossip_on(c, nursery)
        stranger = Host(NetworkIdentity.generate())
        await nursery.start(stranger.run)
        target = c[1]
        assert c.committee is not None
        peer = c.committee.peer_id(target.node_id)
        await stranger.connect(peer, target.listen)
        # The member resets the stream before pubsub sees it: the open fails, or reading ends.
        with trio.fail_after(10), contextlib.suppress(Exception):
            stream = await stranger.libp2p.new_stream(peer, list(GOSSIP_PROTOCOLS))
            await stream.read(1)
        await wait_for(lambda: gossip[1].stats.refused_streams == 1)
        assert stranger.libp2p.get_id() not in gossip[1].pubsub.peers
        nursery.cancel_scope.cancel()


def _message(origin: ID, data: bytes) -> rpc_pb2.Message:
    return rpc_pb2.Message(data=data, topicIDs=[TOPIC], from_id=origin.to_bytes(), seqno=b"1")


async def test_the_validator_takes_members_messages_that_fit_and_nothing_else() -> None:
    async with cluster(4) as c, trio.open_nursery() as nursery:
        gossip = await _gossip_on(c, nursery)
        assert c.committee is not None
        g = gossip[1]
        member = c.committee.peer_id(c[2].node_id)
        outsider = NetworkIdentity.generate().peer_id
        assert g._validate(member, _message(member, b"x" * 1024))
        assert not g._validate(member, _message(member, b"x" * 1025))  # too big
        assert not g._validate(member, _message(outsider, b"x"))  # not published by a member
        assert not g._validate(outsider, _message(member, b"x"))  # not forwarded by one
        bad = rpc_pb2.Message(data=b"x", topicIDs=[TOPIC], from_id=b"\x00junk", seqno=b"1")
        assert not g._validate(member, bad)
        assert g.stats.refused_messages == 4
        nursery.cancel_scope.cancel()


async def test_pubsub_hears_of_members_connections_only() -> None:
    heard: list[str] = []

    class Inner:
        async def connected(self, network: object, conn: object) -> None:
            heard.append("connected")

        async def disconnected(self, network: object, conn: object) -> None:
            heard.append("disconnected")

    member, outsider = NetworkIdentity.generate().peer_id, NetworkIdentity.generate().peer_id
    notifee = _MembersOnly(Inner(), lambda p: p == member)  # type: ignore[arg-type]

    def conn(peer: ID) -> Any:
        return types.SimpleNamespace(muxed_conn=types.SimpleNamespace(peer_id=peer))

    await notifee.connected(None, conn(outsider))  # type: ignore[arg-type]
    await notifee.disconnected(None, conn(outsider))  # type: ignore[arg-type]
    assert heard == []
    await notifee.connected(None, conn(member))  # type: ignore[arg-type]
    await notifee.disconnected(None, conn(member))  # type: ignore[arg-type]
    assert heard == ["connected", "disconnected"]
