"""Connection admission for peers outside the committee: a bounded set, the idlest evicted.

Anyone may connect to a node (clients are not committee members), and a peer identity costs
nothing to make. py-libp2p alone has one global cap (300 connections) that *refuses* whatever
arrives past it: a stranger holding 300 idle connections from 300 identities locked every new
client out, and also the committee member that had to reconnect after a restart, so a cheap
attack on clients became one on consensus liveness.

``ConnectionGuard`` keeps the connections of non-members at most ``limit``, and those from
one address group (the socket's IPv4 address, or IPv6 /64) at most ``per_address``. When a
connection arrives one over either bound, the guard makes room in that scope as it arrives:
it disconnects the other client idle longest there (activity is a request read or answered,
which the request server reports, sessions included), never one with a request being handled,
so no answer is cut off. If every other client there is being served, or the newcomer's peer
already held connections, the newcomer alone is closed. A squatter thus loses its place to a
newcomer, a single host minting identities churns out only its own connections, and an
evicted client redials when it next asks.

Strangers go first. A peer that proved, on its connection, that it speaks for a client the
replicated state knows (a genesis admin, or one granted something) is *vouched for*
(``vouch``; the proof is the client key's signature over the peer id, ``wire.vouch``, checked
by the node), and is evicted only when no stranger in the scope is idle. Without this, an
attacker holding many addresses could churn every registered client out by connecting over
and over; now its arrivals displace its own idle connections. A vouch lasts while the peer
stays connected (a redialled connection is a stranger until its next request; a client whose
grants are revoked keeps its place until then too: it only orders evictions, it grants
nothing). One client key vouches for at most ``VOUCHED_PER_CLIENT`` peers at a time (a new
one replaces the key's least recently active), so a leaked key shields at most that many
connections.

Closing a connection takes py-libp2p ~0.2 s, so closes run concurrently under a deadline
(then the socket is dropped); while ``MAX_CLOSING`` are in progress (a flood), newcomers are
closed on arrival. Committee members are never counted, evicted or turned away, and the
host's own cap (``host_connection_cap``) leaves them room beyond what the guard lets clients
hold.
"""

from __future__ import annotations

import ipaddress
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
    "UNKNOWN_ADDRESS",
    "VOUCHED_PER_CLIENT",
    "ConnectionGuard",
    "address_group",
    "host_connection_cap",
    "remote_ip",
]

_log = logging.getLogger("kmsnode.net.guard")

DEFAULT_CLIENT_CONNECTIONS = 512
"""Connections from outside the committee a node keeps at most (each costs ~100 KB)."""

DEFAULT_PER_ADDRESS = 64
"""Of those, connections from one address group at most (an IPv4 address, an IPv6 /64): one
host minting identities then churns out only its own connections, not other addresses' idle
clients. Raise it for clients behind one NAT or proxy."""

UNKNOWN_ADDRESS = "unknown"
"""The group of connections whose address cannot be read: bounded together, not unbounded."""

CLOSE_TIMEOUT = 2.0
"""Seconds a graceful close may take (a peer that stops reading can stall it) before the
connection's socket is dropped."""

MAX_CLOSING = 32
"""Closes in progress beyond which a new non-member connection is closed at once."""

VOUCHED_PER_CLIENT = 8
"""Peers (a client's processes or machines) one client key may vouch for at once."""

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
        self._group: dict[INetConn, str] = {}
        """Per non-member connection: the address group it came from (``address_group``)."""
        self.busy: Callable[[ID], bool] = busy or (lambda peer: False)
        self._clock = clock
        self._last_active: dict[ID, float] = {}
        self._closing: set[INetConn] = set()
        self._nursery: trio.Nursery | None = None
        self.evicted = 0
        """Non-member peers disconnected to make room."""
        self.turned_away = 0
        """Non-member connections closed on arrival while a flood was being closed."""
        self._vouched: dict[ID, bytes] = {}
        """Connected non-member peers vouched for, and the client key that vouched."""
        self._vouched_b58: set[str] = set()
        """The same peers as base58 strings: the per-request check, without parsing ids."""
        self._vouches: dict[bytes, set[ID]] = {}
        """Per client key: the connected peers it vouches for now."""

    # -- activity ---------------------------------------------------------------------------
    def touch(self, peer: ID) -> None:
        """Record that a non-member ``peer`` did something (a request) just now."""
        if peer in self._last_active:
            self._last_active[peer] = self._clock()

    def vouch(self, peer_b58: str, client: bytes) -> bool:
        """Record that the non-member ``peer_b58`` (base58) proved it speaks for ``client``,
        whom the replicated state knows: it is then evicted only after every idle stranger.
        When ``client`` already vouches for ``VOUCHED_PER_CLIENT`` peers, the least recently
        active of them becomes a stranger again. Returns False for a peer not connected."""
        if peer_b58 in self._vouched_b58:
            return True
        try:
            peer = ID.from_base58(peer_b58)
        except Exception:
            return False
        if peer not in self._last_active:
            return False  # a member, or gone already
        if peer in self._vouched:
            return True  # named in another spelling
        peers = self._vouches.setdefault(client, set())
        if len(peers) >= VOUCHED_PER_CLIENT:
            self._unvouch(min(peers, key=self._last_active.__getitem__))
        peers.add(peer)
        self._vouched[peer] = client
        self._vouched_b58.add(peer.to_base58())
        return True

    def is_vouched(self, peer_b58: str) -> bool:
        """Whether the peer (base58) is vouched for now (the node's check before a proof)."""
        return peer_b58 in self._vouched_b58

    def vouched(self) -> int:
        """Connected non-member peers vouched for by a known client."""
        return len(self._vouched)

    def _unvouch(self, peer: ID) -> None:
        client = self._vouched.pop(peer, None)
        if client is None:
            return
        self._vouched_b58.discard(peer.to_base58())
        peers = self._vouches[client]
        peers.discard(peer)
        if not peers:
            del self._vouches[client]

    def _forget(self, peer: ID) -> None:
        """Drop every record of a non-member peer that holds no connection any more."""
        self._last_active.pop(peer, None)
        self._unvouch(peer)

    def connections(self, group: str | None = None) -> int:
        """Connections non-members hold now (from address ``group`` only, if given), not
        counting those being closed (at most ``MAX_CLOSING``: past that, newcomers are closed
        on arrival)."""
        closing = self._closing
        if group is not None:
            return sum(
                1
                for conn, g in self._group.items()
                if g == group and conn not in closing and _peer(conn) in self._last_active
            )
        network = self.host.libp2p.get_network()
        return sum(
            1
            for peer in self._last_active
            for conn in network.get_connections(peer)
            if conn not in closing
        )

    def _peers(self, group: str | None) -> list[ID]:
        """Tracked peers (with a live connection from ``group``, if given)."""
        if group is None:
            return list(self._last_active)
        closing = self._closing
        found = {_peer(c) for c, g in self._group.items() if g == group and c not in closing}
        return [p for p in found if p in self._last_active]

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
        try:
            group = address_group(self.address_of(conn))
        except Exception:
            group = UNKNOWN_ADDRESS
        self._group[conn] = group
        self._last_active[peer] = self._clock()
        if self.connections(group) > self.per_address:
            self._make_room(network, group, conn)
        if conn not in self._closing and self.connections() > self.limit:
            self._make_room(network, None, conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._group.pop(conn, None)
        peer = conn.muxed_conn.peer_id
        if not network.get_connections(peer):
            self._forget(peer)

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
            async with trio.open_nursery() as nursery:  # the closes run here
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            remove = getattr(network, "remove_notifee", None)
            if remove is not None:
                remove(self)

    def _make_room(self, network: INetwork, group: str | None, newcomer: INetConn) -> None:
        """One connection too many (from ``group``, or of all clients if None): evict the
        idlest other stranger there, or if none is idle, the idlest vouched-for client; if the
        newcomer's peer already held connections, or every other client there is being
        served, close only the newcomer (a peer adding connections displaces nobody, and no
        answer is cut off). Each arrival thus leaves the count where it was before it."""
        peer = _peer(newcomer)
        closing = self._closing
        held = [c for c in network.get_connections(peer) if c is not newcomer and c not in closing]
        idle = [p for p in self._peers(group) if p != peer and not self.busy(p)]
        if held or not idle:
            self.turned_away += 1
            self._close_soon(newcomer)
            return
        strangers = [p for p in idle if p not in self._vouched]
        self._evict(network, min(strangers or idle, key=self._last_active.__getitem__), group)

    def _evict(self, network: INetwork, victim: ID, group: str | None) -> None:
        self._forget(victim)
        self.evicted += 1
        _log.info(
            "evicted the idlest client connection peer=%s within=%s",
            victim,
            group or "all clients",
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


def _peer(conn: INetConn) -> ID:
    return conn.muxed_conn.peer_id


def remote_ip(conn: INetConn) -> str | None:
    """The IP address a connection comes from (the socket's, not what the peer claims), or
    None if it cannot be read. py-libp2p reports IPv4 peers only, so the socket is asked
    directly when it has nothing."""
    secured = getattr(getattr(conn, "muxed_conn", None), "secured_conn", None)
    try:
        remote = secured.get_remote_address() if secured is not None else None
        if remote:
            return str(remote[0])
        # Down the layers (Noise session, its reader-writer, the raw connection, py-libp2p's
        # TCP stream) to trio's SocketStream, whose socket knows its peer.
        layer: Any = secured
        for _ in range(8):
            sock = getattr(layer, "socket", None)
            if sock is not None and hasattr(sock, "getpeername"):
                return str(sock.getpeername()[0])
            layer = getattr(layer, "conn", None) or getattr(layer, "stream", None)
            if layer is None:
                break
        return None
    except Exception:
        return None


def address_group(host: str | None) -> str:
    """The group a connection's address counts in: the IPv4 address; for IPv6 its /64 (one
    host usually holds a whole /64), an IPv4-mapped one as the IPv4 address; everything
    unreadable together in ``UNKNOWN_ADDRESS``."""
    if host is None:
        return UNKNOWN_ADDRESS
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return UNKNOWN_ADDRESS
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
