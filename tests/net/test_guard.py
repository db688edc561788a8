"""ConnectionGuard on real hosts: strangers are bounded, the idlest goes, members always get in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.abc import INetConn

from kmsnode.net import (
    Committee,
    ConnectionGuard,
    Envelope,
    Host,
    Member,
    NetworkIdentity,
    NodeId,
    RequestFailed,
    RequestServer,
    Session,
    host_connection_cap,
    request,
)
from kmsnode.net import guard as guard_module
from kmsnode.net.guard import UNKNOWN_ADDRESS, address_group, remote_ip
from kmsnode.net.reqresp import Request

from .conftest import wait_for

LIMIT = 3
ADDR = "/ip4/127.0.0.1/tcp/0"


GATE: dict[str, trio.Event] = {}


async def echo(req: Request) -> AsyncIterator[Envelope]:
    if req.envelope.kind == "gate":
        await GATE["open"].wait()
    yield Envelope("res", req.envelope.body)


class Clock:
    """A clock the test moves, so "idlest" does not depend on timer resolution."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


ELSEWHERE: set[str] = set()
"""Peer ids (base58) the guard is told connect from 192.0.2.1 (all tests dial from 127.0.0.1)."""


def address_of(conn: INetConn) -> str | None:
    if conn.muxed_conn.peer_id.to_base58() in ELSEWHERE:
        return "192.0.2.1"
    return remote_ip(conn)


@asynccontextmanager
async def guarded_node(
    burst: int, per_address: int = 64
) -> AsyncIterator[tuple[Host, ConnectionGuard, NetworkIdentity, trio.Nursery]]:
    """A node in a 2-member committee (it and ``member``), guarding LIMIT client connections,
    with a request server that reports requests to the guard."""
    me, member = NetworkIdentity.generate(), NetworkIdentity.generate()
    committee = Committee(
        [
            Member(NodeId(1), me.peer_id_str, (ADDR,), me.public_key),
            Member(NodeId(2), member.peer_id_str, (ADDR,), member.public_key),
        ]
    )
    host = Host(me, listen=[ADDR], max_connections=host_connection_cap(LIMIT, 2, burst))
    server = RequestServer(host, echo)
    guard = ConnectionGuard(
        host,
        committee,
        LIMIT,
        per_address=per_address,
        busy=server.peer_busy,
        address_of=address_of,
        clock=Clock(),
    )
    server.on_activity = guard.touch
    server.install()
    async with trio.open_nursery() as nursery:
        await nursery.start(guard.run)
        await nursery.start(host.run)
        yield host, guard, member, nursery
        nursery.cancel_scope.cancel()


async def connect(
    nursery: trio.Nursery, target: Host, identity: NetworkIdentity | None = None
) -> Host:
    peer = Host(identity or NetworkIdentity.generate(), listen=[ADDR])
    await nursery.start(peer.run)
    await peer.connect(target.peer_id, target.addrs())
    return peer


def connected(node: Host, peer: Host) -> bool:
    return node.is_connected(peer.peer_id)


async def test_one_client_too_many_evicts_the_idlest_and_requests_count_as_activity() -> None:
    async with guarded_node(burst=8) as (node, guard, _, nursery):
        clients = [await connect(nursery, node) for _ in range(LIMIT)]
        await wait_for(lambda: guard.connections() == LIMIT)
        # The first client makes a request: now the second is the idlest.
        answers = await request(clients[0], node.peer_id, node.addrs(), Envelope("q", 1))
        assert [a.body for a in answers] == [1]
        newcomer = await connect(nursery, node)
        await wait_for(lambda: not connected(node, clients[1]))
        assert guard.evicted == 1 and guard.connections() == LIMIT
        assert all(connected(node, c) for c in (clients[0], clients[2], newcomer))
        # An evicted client redials and is served (evicting the idlest in turn: the third).
        answers = await request(clients[1], node.peer_id, node.addrs(), Envelope("q", 2))
        assert [a.body for a in answers] == [2]
        await wait_for(lambda: guard.evicted == 2 and not connected(node, clients[2]))


async def test_a_member_gets_in_past_the_client_limit_and_is_never_evicted() -> None:
    async with guarded_node(burst=0) as (node, guard, member_identity, nursery):
        for _ in range(LIMIT):
            await connect(nursery, node)
        await wait_for(lambda: guard.connections() == LIMIT)
        # The host's cap leaves room for members beyond the clients' limit ...
        member = await connect(nursery, node, member_identity)
        assert connected(node, member)
        assert guard.connections() == LIMIT and guard.evicted == 0
        # ... and newcomers evict clients, never the member (not counted, not a candidate).
        for _ in range(LIMIT + 1):
            await connect(nursery, node)
        await wait_for(lambda: guard.evicted == LIMIT + 1 and guard.connections() == LIMIT)
        assert connected(node, member)


async def test_without_room_for_members_a_full_host_refuses_them() -> None:
    """What the guard's cap prevents: py-libp2p's own cap refuses whoever comes last."""
    host = Host(NetworkIdentity.generate(), listen=[ADDR], max_connections=LIMIT)
    RequestServer(host, echo).install()
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        clients = [await connect(nursery, host) for _ in range(LIMIT)]
        answers = await request(clients[0], host.peer_id, host.addrs(), Envelope("q", 1))
        assert [a.body for a in answers] == [1]  # the ones that got in are served
        late = Host(NetworkIdentity.generate(), listen=[ADDR])
        await nursery.start(late.run)
        with pytest.raises(RequestFailed):
            await request(late, host.peer_id, host.addrs(), Envelope("q", 2), timeout=5)
        nursery.cancel_scope.cancel()


def test_the_limit_must_be_positive() -> None:
    me = NetworkIdentity.generate()
    committee = Committee([Member(NodeId(1), me.peer_id_str, (ADDR,), me.public_key)])
    with pytest.raises(ValueError):
        ConnectionGuard(Host(me), committee, 0)


async def test_requests_on_a_session_count_and_a_peer_being_served_is_never_evicted() -> None:
    GATE["open"] = trio.Event()
    async with guarded_node(burst=8) as (node, guard, _, nursery):
        on_session = await connect(nursery, node)
        session = Session(on_session, node.peer_id, node.addrs())
        await nursery.start(session.run)
        waiting = await connect(nursery, node)
        quick = await connect(nursery, node)
        await wait_for(lambda: guard.connections() == LIMIT)
        # Activity in this order: ``waiting`` asks (and is kept waiting), ``quick`` asks and
        # is answered, the session client asks and is answered. ``waiting`` is the idlest.
        nursery.start_soon(request, waiting, node.peer_id, node.addrs(), Envelope("gate", 0))
        await wait_for(lambda: guard.busy(waiting.peer_id))
        assert [
            a.body for a in await request(quick, node.peer_id, node.addrs(), Envelope("q", 1))
        ] == [1]
        assert [a.body for a in await session.request(Envelope("q", 2), timeout=10)] == [2]
        # A newcomer: ``waiting`` is being served, so ``quick`` (next idlest) goes instead.
        newcomer = await connect(nursery, node)
        await wait_for(lambda: not connected(node, quick))
        assert guard.evicted == 1
        assert all(connected(node, c) for c in (on_session, waiting, newcomer))
        GATE["open"].set()
        await wait_for(lambda: not guard.busy(waiting.peer_id))


async def test_a_flood_of_strangers_leaves_room_for_members_and_no_connection_uncounted() -> None:
    flood = 24
    async with guarded_node(burst=0) as (node, guard, member_identity, nursery):

        async def dial() -> None:
            with contextlib.suppress(Exception):  # turned away or refused: expected here
                await connect(nursery, node)

        async with trio.open_nursery() as dials:
            for _ in range(flood):
                dials.start_soon(dial)
        member = await connect(nursery, node, member_identity)
        network = node.libp2p.get_network()

        def strangers() -> int:
            return sum(
                1 for c in network.get_connections() if c.muxed_conn.peer_id != member.peer_id
            )

        await wait_for(lambda: guard.closing() == 0 and strangers() == guard.connections())
        assert guard.connections() <= LIMIT
        assert guard.evicted + guard.turned_away >= flood - LIMIT
        assert connected(node, member)


async def test_one_address_minting_identities_displaces_only_its_own_connections() -> None:
    async with guarded_node(burst=8, per_address=1) as (node, guard, _, nursery):
        # The idlest client of all is at another address.
        other = NetworkIdentity.generate()
        ELSEWHERE.add(other.peer_id_str)
        elsewhere = await connect(nursery, node, other)
        first = await connect(nursery, node)
        await wait_for(lambda: guard.connections() == 2)
        assert guard.connections("192.0.2.1") == guard.connections("127.0.0.1") == 1
        # A second identity from 127.0.0.1 is one too many there: the idlest *from
        # 127.0.0.1* goes, although the client elsewhere has been idle longer.
        second = await connect(nursery, node)
        await wait_for(lambda: not connected(node, first))
        assert connected(node, elsewhere) and connected(node, second)
        assert guard.evicted == 1


async def test_when_everyone_else_at_an_address_is_served_the_newcomer_is_turned_away() -> None:
    GATE["open"] = trio.Event()
    async with guarded_node(burst=8, per_address=1) as (node, guard, _, nursery):
        served = await connect(nursery, node)
        nursery.start_soon(request, served, node.peer_id, node.addrs(), Envelope("gate", 0))
        await wait_for(lambda: guard.busy(served.peer_id))
        late = Host(NetworkIdentity.generate(), listen=[ADDR])
        await nursery.start(late.run)
        with contextlib.suppress(Exception):  # closed on arrival, maybe mid-handshake
            await late.connect(node.peer_id, node.addrs())
        await wait_for(lambda: guard.turned_away == 1 and not connected(node, late))
        assert guard.evicted == 0 and connected(node, served)
        GATE["open"].set()


async def test_when_every_client_is_being_served_a_newcomer_is_turned_away() -> None:
    GATE["open"] = trio.Event()
    async with guarded_node(burst=8) as (node, guard, _, nursery):
        clients = [await connect(nursery, node) for _ in range(LIMIT)]
        for c in clients:
            nursery.start_soon(request, c, node.peer_id, node.addrs(), Envelope("gate", 0))
        await wait_for(lambda: all(guard.busy(c.peer_id) for c in clients))
        late = Host(NetworkIdentity.generate(), listen=[ADDR])
        await nursery.start(late.run)
        with contextlib.suppress(Exception):  # closed on arrival, maybe mid-handshake
            await late.connect(node.peer_id, node.addrs())
        await wait_for(lambda: guard.turned_away == 1 and not connected(node, late))
        assert guard.evicted == 0 and all(connected(node, c) for c in clients)
        GATE["open"].set()


def b58(host: Host) -> str:
    return host.peer_id.to_base58()


async def test_strangers_are_evicted_before_a_registered_client_however_idle() -> None:
    """An attacker connecting over and over, from several addresses, churns out only its own
    idle connections, never a client the state knows, though that one is the idlest; within
    an address group (per_address) as across all clients."""
    async with guarded_node(burst=8, per_address=2) as (node, guard, _, nursery):
        known = await connect(nursery, node)
        await wait_for(lambda: guard.connections() == 1)
        assert guard.vouch(b58(known), b"client key")
        local = await connect(nursery, node)
        far = NetworkIdentity.generate()
        ELSEWHERE.add(far.peer_id_str)
        strangers = [local, await connect(nursery, node, far)]
        await wait_for(lambda: guard.connections() == LIMIT)
        for i in range(4):
            newcomer = NetworkIdentity.generate()
            if i % 2:
                ELSEWHERE.add(newcomer.peer_id_str)  # the flood comes from both addresses
            await connect(nursery, node, newcomer)
            await wait_for(lambda n=i + 1: guard.evicted == n and guard.connections() == LIMIT)
        await wait_for(lambda: not any(connected(node, s) for s in strangers))
        assert connected(node, known) and guard.is_vouched(b58(known)) and guard.vouched() == 1


async def test_a_keys_vouches_are_bounded_and_registered_clients_share_the_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One client key vouches for a bounded number of peers (a new one displaces its least
    recently active); with no stranger idle, the idlest registered client goes, so one that
    reconnects is let in."""
    monkeypatch.setattr(guard_module, "VOUCHED_PER_CLIENT", 2)
    async with guarded_node(burst=8) as (node, guard, _, nursery):
        c0, c1, c2 = [await connect(nursery, node) for _ in range(LIMIT)]
        await wait_for(lambda: guard.connections() == LIMIT)
        assert guard.vouch(b58(c1), b"key a") and guard.vouch(b58(c2), b"key a")
        assert guard.vouch(b58(c1), b"key a") and guard.vouched() == 2  # idempotent
        # A third peer for key a: c1, the least recently active of its two, is a stranger
        # again, and the next newcomer displaces it although c0 is idler.
        assert guard.vouch(b58(c0), b"key a")
        assert guard.vouched() == 2 and not guard.is_vouched(b58(c1))
        n1 = await connect(nursery, node)
        await wait_for(lambda: not connected(node, c1))
        assert guard.evicted == 1 and all(connected(node, c) for c in (c0, c2, n1))
        # Every client registered now: the idlest of them goes, and its vouch with it.
        assert guard.vouch(b58(n1), b"key b") and guard.vouched() == LIMIT
        n2 = await connect(nursery, node)
        await wait_for(lambda: not connected(node, c0))
        assert guard.evicted == 2 and guard.vouched() == LIMIT - 1
        assert not guard.is_vouched(b58(c0)) and not guard.vouch(b58(c0), b"key a")
        assert not guard.vouch(b58(node), b"key b")  # not a client connection
        assert not guard.vouch("not a peer id", b"key b")
        assert connected(node, n2)


async def test_a_registered_client_that_hangs_up_takes_its_vouch_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_module, "VOUCHED_PER_CLIENT", 1)
    async with guarded_node(burst=8) as (node, guard, _, nursery):
        leaving = await connect(nursery, node)
        await wait_for(lambda: guard.connections() == 1)
        assert guard.vouch(b58(leaving), b"key")
        await leaving.libp2p.disconnect(node.peer_id)  # the client hangs up
        await wait_for(lambda: guard.vouched() == 0 and guard.connections() == 0)
        # Its key's one place is free: a new peer of the same key is vouched for.
        back = await connect(nursery, node)
        await wait_for(lambda: guard.connections() == 1)
        assert guard.vouch(b58(back), b"key") and guard.vouched() == 1


@pytest.mark.parametrize("listen", ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"])
async def test_remote_ip_is_the_sockets_address(listen: str) -> None:
    """py-libp2p reports no address for IPv6 peers: the socket is asked directly."""
    node, client = Host(NetworkIdentity.generate(), listen=[listen]), None
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        client = Host(NetworkIdentity.generate(), listen=[listen])
        await nursery.start(client.run)
        await client.connect(node.peer_id, node.addrs())
        await wait_for(lambda: node.is_connected(client.peer_id))
        (conn,) = node.libp2p.get_network().get_connections(client.peer_id)
        assert remote_ip(conn) == ("127.0.0.1" if "ip4" in listen else "::1")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4-mapped: the IPv4 address
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # one host usually holds a /64
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, UNKNOWN_ADDRESS),  # unreadable addresses are bounded together
        ("not an address", UNKNOWN_ADDRESS),
    ],
)
def test_address_groups(host: str | None, group: str) -> None:
    assert address_group(host) == group
