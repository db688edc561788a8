"""Connection admission for peers outside the committee: a bounded set, the idlest evicted.

Anyone may connect to a node (clients are not committee members), and a peer identity costs
nothing to make. py-libp2p alone has one global cap (300 connections) that *refuses* whatever
arrives past it: a stranger holding 300 idle connections from 300 identities locked every new
client out, and also the committee member that had to reconnect after a restart, so a cheap
attack on clients became one on consensus liveness.

``ConnectionGuard`` keeps the connections of non-members at most ``limit``. When one more
arrives, the non-member idle longest is disconnected: activity is a request read or answered
(the request server reports both, sessions included), and a peer with a request being
handled is never chosen, so no answer is cut off. A squatter loses its place to a newcomer;
an evicted client redials when it next asks. Closing a connection takes py-libp2p ~0.2 s, so
closes run concurrently under a deadline (then the socket is dropped); while ``MAX_CLOSING``
are in progress (a flood), newcomers are closed on arrival.
Committee members are never counted, evicted or turned away, and the host's own cap
(``host_connection_cap``) leaves them room beyond what the guard lets clients hold.

Connections from one IP address (the socket's) are also bounded, by ``per_address``: one
more there evicts the idlest client *from that address*, so a single host minting identities
churns out only its own connections, not other addresses' idle clients.
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

__all__ = [
    "CLOSE_TIMEOUT",
    "DEFAULT_CLIENT_CONNECTIONS",
    "DEFAULT_PER_ADDRESS",
    "MAX_CLOSING",
    "ConnectionGuard",
    "host_connection_cap",
    "remote_ip",
]

_log = logging.getLogger("kmsnode.net.guard")

DEFAULT_CLIENT_CONNECTIONS = 512
"""Connections from outside the committee a node keeps at most (each costs ~100 KB)."""

DEFAULT_PER_ADDRESS = 64
"""Of those, connections from one IP address at most: one host minting identities then
churns out only its own connections, not other addresses' idle clients."""

CLOSE_TIMEOUT = 2.0
"""Seconds a graceful close may take (a peer that stops reading can stall it) before the
connection's socket is dropped."""

MAX_CLOSING = 32
"""Closes in progress beyond which a new non-member connection is closed at once."""

_PER_PEER = 3
"""py-libp2p's own bound on connections per peer (``max_connections_per_peer``)."""


def host_connection_cap(client_limit: int, committee_size: int, burst: int = 64) -> int:
    """The host's hard connection cap for a guard of ``client_limit``: the clients, as many
    again being closed or arriving in a burst, and room for every member's connections."""
    return 2 * client_limit + MAX_CLOSING + _PER_PEER * committee_size + burst


class ConnectionGuard(INotifee):
    """Evicts the idlest non-member when non-members hold more than ``limit`` connections.

    Start with ``await nursery.start(guard.run)``; ``touch(peer)`` marks activity and
    ``busy(peer)`` (given) says whether a peer has a request being handled.
    """

    def __init__(
        self,
        host: Host,
        committee: Committee,
        limit: int = DEFAULT_CLIENT_CONNECTIONS,
        *,
        per_address: int = DEFAULT_PER_ADDRESS,
        busy: Callable[[ID], bool] | None = None,
        address_of: Callable[[INetConn], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or per_address < 1:
            raise ValueError("connection limits must be at least 1")
        self.host = host
        self.committee = committee
        self.limit = limit
        self.per_address = per_address
        self.address_of = address_of or remote_ip
        self._address: dict[ID, str | None] = {}
        """Per tracked peer: the IP address its first connection came from (None: unknown)."""
        self.busy: Callable[[ID], bool] = busy or (lambda peer: False)
        self._clock = clock
        self._last_active: dict[ID, float] = {}
        self._closing: set[INetConn] = set()
        self._nursery: trio.Nursery | None = None
        self._trim = trio.Event()
        self.evicted = 0
        """Non-member peers disconnected to make room."""
        self.turned_away = 0
        """Non-member connections closed on arrival while a flood was being closed."""

    # -- activity ---------------------------------------------------------------------------
    def touch(self, peer: ID) -> None:
        """Record that a non-member ``peer`` did something (a request) just now."""
        if peer in self._last_active:
            self._last_active[peer] = self._clock()

    def connections(self, address: str | None = None) -> int:
        """Connections non-members hold now (from ``address`` only, if given), not counting
        those being closed (at most ``MAX_CLOSING``: past that, newcomers are closed on
        arrival)."""
        network = self.host.libp2p.get_network()
        closing = self._closing
        return sum(
            1
            for peer in self._peers(address)
            for conn in network.get_connections(peer)
            if conn not in closing
        )

    def _peers(self, address: str | None) -> list[ID]:
        if address is None:
            return list(self._last_active)
        return [p for p in self._last_active if self._address.get(p) == address]

    def closing(self) -> int:
        """Non-member connections being closed now."""
        return len(self._closing)

    # -- INotifee (py-libp2p calls these from its own tasks: no raising, no blocking) --------
    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if self.committee.node_of(peer) is not None:
            return
        if len(self._closing) >= MAX_CLOSING:
            self.turned_away += 1
            self._close_soon(conn)
            return
        self._last_active[peer] = self._clock()
        address = self._address.setdefault(peer, self.address_of(conn))
        if address is not None and self.connections(address) > self.per_address:
            self._trim_to(network, self.per_address, address, newcomer=conn)
        if self.connections() > self.limit:
            self._trim.set()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if not network.get_connections(peer):
            self._last_active.pop(peer, None)
            self._address.pop(peer, None)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass  # opening (or resetting) a stream is not activity: anyone can do it for free

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
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await self._trim.wait()
                    self._trim = trio.Event()
                    self._trim_to(network, self.limit)
        finally:
            self._nursery = None
            remove = getattr(network, "remove_notifee", None)
            if remove is not None:
                remove(self)

    def _trim_to(
        self,
        network: INetwork,
        limit: int,
        address: str | None = None,
        newcomer: INetConn | None = None,
    ) -> None:
        """Evict the idlest peers (from ``address`` only, if given) until they hold at most
        ``limit``; if all are busy, close ``newcomer`` instead (else stay over until one is
        done)."""
        while self.connections(address) > limit:
            idle = [p for p in self._peers(address) if not self.busy(p)]
            if not idle:
                if newcomer is not None:  # everyone there is being served: turn it away
                    self.turned_away += 1
                    self._close_soon(newcomer)
                return
            victim = min(idle, key=self._last_active.__getitem__)
            del self._last_active[victim]
            self._address.pop(victim, None)
            self.evicted += 1
            _log.info(
                "evicted the idlest client connection peer=%s limit=%d address=%s",
                victim,
                limit,
                address or "any",
                extra={"event": "client_evicted", "peer": str(victim)},
            )
            # Exactly the connections it holds now: one it opens meanwhile is a newcomer.
            for conn in list(network.get_connections(victim)):
                self._close_soon(conn)

    def _close_soon(self, conn: INetConn) -> None:
        if conn in self._closing or self._nursery is None:
            return
        self._closing.add(conn)
        self._nursery.start_soon(self._close, conn)

    async def _close(self, conn: INetConn) -> None:
        try:
            with trio.move_on_after(CLOSE_TIMEOUT) as graceful:
                await conn.close()
            if graceful.cancelled_caught:
                await self._abort(conn)
        except Exception as exc:  # already gone, or closing failed: drop the socket
            _log.debug("closing a client connection: %s", type(exc).__name__)
            await self._abort(conn)
        finally:
            self._closing.discard(conn)

    async def _abort(self, conn: INetConn) -> None:
        """Drop the connection's socket and the swarm's record of it, whatever state the
        graceful close was left in (py-libp2p's ``SwarmConn`` internals, checked first)."""
        with trio.move_on_after(1.0):
            try:
                secured = getattr(getattr(conn, "muxed_conn", None), "secured_conn", None)
                if secured is not None:
                    await secured.close()
                cleanup = getattr(conn, "_cleanup", None)
                if cleanup is not None:
                    await cleanup()
            except Exception as exc:
                _log.debug("aborting a client connection: %s", type(exc).__name__)


def remote_ip(conn: INetConn) -> str | None:
    """The IP address a connection comes from (the socket's, not what the peer claims), or
    None if py-libp2p does not expose it."""
    secured = getattr(getattr(conn, "muxed_conn", None), "secured_conn", None)
    try:
        remote = secured.get_remote_address() if secured is not None else None
    except Exception:
        return None
    return str(remote[0]) if remote else None
