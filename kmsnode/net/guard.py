"""Connection admission for peers outside the committee: a bounded set, the idlest evicted.

Anyone may connect to a node (clients are not committee members), and a peer identity costs
nothing to make. py-libp2p alone has one global cap (300 connections) that *refuses* whatever
arrives past it: a stranger holding 300 idle connections from 300 identities locked every new
client out, and also the committee member that had to reconnect after a restart, so a cheap
attack on clients became one on consensus liveness.

``ConnectionGuard`` keeps the connections of non-members at most ``limit``. When one more
arrives, the non-member that has been idle longest (no stream opened, no request made: the
request server reports requests on long-lived sessions) is disconnected, so a squatter loses
its place to a newcomer and an active client keeps it; a client that was evicted redials
when it next needs the node. Committee members are never counted, never evicted, and the
host's own cap leaves room for them beyond ``limit`` (``Host(max_connections=...)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from .committee import Committee
from .host import Host

__all__ = ["DEFAULT_CLIENT_CONNECTIONS", "ConnectionGuard", "host_connection_cap"]

_log = logging.getLogger("kmsnode.net.guard")

DEFAULT_CLIENT_CONNECTIONS = 512
"""Connections from outside the committee a node keeps at most (each costs ~100 KB)."""

_PER_PEER = 3
"""py-libp2p's own bound on connections per peer (``max_connections_per_peer``)."""


def host_connection_cap(client_limit: int, committee_size: int, burst: int = 64) -> int:
    """The host's hard connection cap for a guard of ``client_limit``: room for every member's
    connections, plus ``burst`` handshakes that finish before the guard trims."""
    return client_limit + _PER_PEER * committee_size + burst


class ConnectionGuard(INotifee):
    """Evicts the idlest non-member when non-members hold more than ``limit`` connections.

    Start with ``await nursery.start(guard.run)``; ``touch(peer)`` marks activity.
    """

    def __init__(
        self,
        host: Host,
        committee: Committee,
        limit: int = DEFAULT_CLIENT_CONNECTIONS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("the connection limit must be at least 1")
        self.host = host
        self.committee = committee
        self.limit = limit
        self._clock = clock
        self._last_active: dict[ID, float] = {}
        self._trim = trio.Event()
        self.evicted = 0
        """Non-member peers disconnected to make room."""

    # -- activity ---------------------------------------------------------------------------
    def touch(self, peer: ID) -> None:
        """Record that a non-member ``peer`` did something (a request) just now."""
        if peer in self._last_active:
            self._last_active[peer] = self._clock()

    def connections(self) -> int:
        """Connections non-members hold now."""
        conns = self.host.libp2p.get_network().connections
        return sum(len(conns.get(peer, ())) for peer in self._last_active)

    # -- INotifee (py-libp2p calls these from its own tasks: no raising, no blocking) --------
    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if self.committee.node_of(peer) is not None:
            return
        self._last_active[peer] = self._clock()
        if self.connections() > self.limit:
            self._trim.set()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not network.connections.get(peer):
            self._last_active.pop(peer, None)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        self.touch(stream.muxed_conn.peer_id)

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    # -- trimming ---------------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Watch connections until cancelled."""
        network = self.host.libp2p.get_network()
        network.register_notifee(self)
        try:
            task_status.started()
            while True:
                await self._trim.wait()
                self._trim = trio.Event()
                await self._trim_to_limit(network)
        finally:
            remove = getattr(network, "remove_notifee", None)
            if remove is not None:
                remove(self)

    async def _trim_to_limit(self, network: INetwork) -> None:
        while self.connections() > self.limit and self._last_active:
            victim = min(self._last_active, key=self._last_active.__getitem__)
            del self._last_active[victim]
            self.evicted += 1
            _log.info(
                "evicted the idlest client connection peer=%s limit=%d",
                victim,
                self.limit,
                extra={"event": "client_evicted", "peer": str(victim)},
            )
            try:
                await network.close_peer(victim)
            except Exception as exc:  # already gone, or closing failed: it no longer counts
                _log.debug("closing evicted peer %s: %s", victim, type(exc).__name__)
