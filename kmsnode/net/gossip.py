"""Client requests spread among committee members over a gossipsub topic (best effort).

A client that reaches only some nodes asks them to pass its request on; each such node
publishes it on ``/kms/requests/1/<chain id>``, and every member feeds what arrives to its
mempool after the same checks as a client's own submit. Gossip is only ever a shortcut: the
client asks again on silence, and votes, proposals, sync and answers never travel here.

py-libp2p's ``Pubsub`` talks to every peer that connects, so on a node serving clients it
would dial each client for a pubsub stream. ``RequestGossip`` keeps it to the committee:

- connection events reach pubsub only for members (a filter around its notifee);
- a pubsub stream from a peer outside the committee is reset before pubsub sees it;
- the topic validator accepts a message only if it was published by a member (messages are
  signed by their publisher's libp2p key, ``strict_signing``) and fits ``max_message_bytes``;
- only this one topic may be subscribed to (``allowed_topics``);
- every other member is a gossipsub *direct peer*, so a message goes to all of them at once
  rather than after the mesh forms (over n members in a full mesh, flooding is what gossip
  comes down to).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.pubsub_notifee import PubsubNotifee
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from .committee import Committee, NodeId
from .host import Host

__all__ = ["GOSSIP_PROTOCOLS", "GossipStatistics", "RequestGossip", "request_topic"]

_log = logging.getLogger("kmsnode.net.gossip")

GOSSIP_PROTOCOLS = (TProtocol(PROTOCOL_ID_V12), TProtocol(PROTOCOL_ID_V11))
"""The gossipsub versions offered (members all run this code; no floodsub, no v1.0)."""

MAX_PER_PEER_PER_SECOND = 500.0
"""Gossipsub's per-peer, per-topic rate limit (its default, 10/s, would drop most of a busy
relay; what passes is checked again by the node and by its stranger budget)."""

REPAIR_INTERVAL = 2.0
"""Seconds between checks for connected members pubsub has no stream with."""


def request_topic(chain_id: str) -> str:
    """The topic a chain's client requests are gossiped on."""
    return f"/kms/requests/1/{chain_id}"


@dataclass
class GossipStatistics:
    """Counters for the console and metrics."""

    published: int = 0
    publish_failures: int = 0
    received: int = 0
    dropped_inbox_full: int = 0
    refused_streams: int = 0
    refused_messages: int = 0
    repairs: int = 0


class _MembersOnly(INotifee):
    """Passes pubsub's notifee the connection events of committee members only."""

    def __init__(self, inner: INotifee, is_member: Callable[[ID], bool]) -> None:
        self.inner = inner
        self.is_member = is_member

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        if self.is_member(conn.muxed_conn.peer_id):
            await self.inner.connected(network, conn)
        else:
            await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        if self.is_member(conn.muxed_conn.peer_id):
            await self.inner.disconnected(network, conn)
        else:
            await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


class RequestGossip:
    """One member's end of the request topic: ``publish`` and the ``inbox`` of what others
    published. Construct it before the host dials anyone; run it with ``nursery.start``.

    Args:
        host: this node's host.
        committee: the members (the only peers pubsub talks to).
        me: this node's id.
        topic: the topic (``request_topic(chain_id)``).
        max_message_bytes: larger messages are refused by the validator.
        inbox_size: received messages buffered for the consumer; beyond it they are dropped.
    """

    def __init__(
        self,
        host: Host,
        committee: Committee,
        me: NodeId,
        topic: str,
        *,
        max_message_bytes: int,
        inbox_size: int = 1024,
    ) -> None:
        self.committee = committee
        self.me = me
        self.topic = topic
        self.max_message_bytes = max_message_bytes
        self.stats = GossipStatistics()
        libp2p = host.libp2p
        others = [
            PeerInfo(committee.peer_id(n), [Multiaddr(a) for a in committee.member(n).addrs])
            for n in committee.node_ids()
            if n != me
        ]
        n = len(committee)
        self.router = GossipSub(
            protocols=list(GOSSIP_PROTOCOLS),
            degree=max(1, n - 1),
            degree_low=max(1, min(n - 1, 2)),
            degree_high=max(1, n - 1),
            direct_peers=others,
            heartbeat_interval=5,
            # The mesh keeps members connected (and ``_repair`` the pubsub streams over
            # those connections): gossipsub's own dialling stays idle.
            direct_connect_interval=3600,
            direct_connect_initial_delay=3600,
            max_messages_per_topic_per_second=MAX_PER_PEER_PER_SECOND,
            # Loopback test networks put every member on one address.
            eclipse_protection_enabled=False,
        )
        network = libp2p.get_network()
        before = list(network.notifees)  # type: ignore[attr-defined]
        self.pubsub = Pubsub(
            libp2p,
            self.router,
            strict_signing=True,
            allowed_topics={topic},
            # One RPC carries a message and maybe piggybacked control (IHAVE/IWANT lists).
            max_inbound_rpc_size=2 * max_message_bytes + 65536,
        )
        # Pubsub registered a notifee for every connection: swap it for the members-only one.
        added = [
            x
            for x in network.notifees  # type: ignore[attr-defined]
            if x not in before and isinstance(x, PubsubNotifee)
        ]
        if len(added) != 1:
            raise RuntimeError("py-libp2p's Pubsub no longer registers one PubsubNotifee")
        network.notifees.remove(added[0])  # type: ignore[attr-defined]
        self._notifee = _MembersOnly(added[0], self._is_member)
        network.register_notifee(self._notifee)
        for protocol in self.router.get_protocols():
            libp2p.set_stream_handler(protocol, self._guarded_handler)
        self.pubsub.set_topic_validator(topic, self._validate, False)
        self._network = network
        self._running = False
        self._inbox_send, self.inbox = trio.open_memory_channel[tuple[NodeId, bytes]](inbox_size)
        self._outbox_send, self._outbox = trio.open_memory_channel[bytes](inbox_size)

    def _is_member(self, peer_id: ID) -> bool:
        return self.committee.node_of(peer_id) is not None

    async def _guarded_handler(self, stream: INetStream) -> None:
        if not self._running or not self._is_member(stream.muxed_conn.peer_id):
            # A stranger's, or one that came before pubsub ran (the member's side retries).
            self.stats.refused_streams += 1
            await _reset_quietly(stream)
            return
        try:
            await self.pubsub.stream_handler(stream)
        except Exception as exc:  # whatever pubsub makes of a member's stream, not our crash
            _log.debug("pubsub stream ended: %s", type(exc).__name__)
            await _reset_quietly(stream)

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        try:
            origin = ID(msg.from_id)
        except Exception:
            origin = None
        ok = (
            origin is not None
            and self._is_member(origin)
            and self._is_member(forwarder)
            and len(msg.data) <= self.max_message_bytes
        )
        if not ok:
            self.stats.refused_messages += 1
        return ok

    def publish(self, data: bytes) -> bool:
        """Queue ``data`` for the topic; False (and nothing sent) if the queue is full."""
        try:
            self._outbox_send.send_nowait(data)
        except trio.WouldBlock:
            self.stats.publish_failures += 1
            return False
        return True

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run pubsub and gossipsub, subscribed to the topic, until cancelled."""
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(background_trio_service(self.pubsub))
            await stack.enter_async_context(background_trio_service(self.router))
            await self.pubsub.wait_until_ready()
            subscription = await self.pubsub.subscribe(self.topic)
            self._running = True
            try:
                await self._serve(subscription, task_status)
            finally:
                self._running = False

    async def _serve(self, subscription: Any, task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_loop)
            nursery.start_soon(self._repair)
            task_status.started()
            async for msg in _messages(subscription):
                self._deliver(msg)

    async def _repair(self) -> None:
        """Now and then, hand pubsub the connected members it has no stream with: those
        connected before it ran, and those whose stream failed to open (a member whose pubsub
        was not up yet when the connection came)."""
        while True:
            for peer_id, conns in list(self._network.connections.items()):
                if conns and self._is_member(peer_id) and peer_id not in self.pubsub.peers:
                    self.stats.repairs += 1
                    await self._notifee.connected(self._network, conns[0])
            await trio.sleep(REPAIR_INTERVAL)

    def _deliver(self, msg: rpc_pb2.Message) -> None:
        if msg.from_id == self.pubsub.my_id.to_bytes():
            return  # our own publication, echoed by the local subscription
        sender = self.committee.node_of(ID(msg.from_id))
        if sender is None:
            return
        self.stats.received += 1
        try:
            self._inbox_send.send_nowait((sender, bytes(msg.data)))
        except trio.WouldBlock:
            self.stats.dropped_inbox_full += 1

    async def _publish_loop(self) -> None:
        async for data in self._outbox:
            try:
                await self.pubsub.publish(self.topic, data)
                self.stats.published += 1
            except Exception as exc:
                self.stats.publish_failures += 1
                _log.warning("request gossip publish failed: %s", type(exc).__name__)


async def _messages(subscription: Any) -> AsyncIterator[rpc_pb2.Message]:
    while True:
        yield await subscription.get()


async def _reset_quietly(stream: INetStream) -> None:
    with contextlib.suppress(Exception):
        await stream.reset()
