"""Helpers for the network tests: in-process clusters of real hosts on loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from kmsnode.net import (
    CONSENSUS_PROTOCOL,
    SYNC_PROTOCOL,
    Backoff,
    Committee,
    Envelope,
    Host,
    Member,
    Mesh,
    NetworkIdentity,
    NodeId,
    ProtocolSpec,
)

# libp2p logs a lot at INFO (and an ERROR per refused protocol negotiation); keep test output
# readable while our own loggers stay visible to caplog.
logging.getLogger("libp2p").setLevel(logging.CRITICAL)

FAST_BACKOFF = Backoff(initial=0.02, maximum=0.3)
Inbound = trio.MemoryReceiveChannel[tuple[NodeId, Envelope]]


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@dataclass
class ClusterNode:
    """One node of a test cluster: identity, host, mesh, inbound channels, its own nursery."""

    node_id: NodeId
    identity: NetworkIdentity
    listen: list[str]
    host: Host | None = None
    mesh: Mesh | None = None
    channels: dict[str, Inbound] = field(default_factory=dict)
    nursery: trio.Nursery | None = None
    stopped: trio.Event = field(default_factory=trio.Event)


class Cluster:
    """``n`` nodes in one process, each in its own nursery so it can be stopped and restarted."""

    def __init__(self, outer: trio.Nursery, n: int, specs: list[ProtocolSpec]) -> None:
        self.outer = outer
        self.specs = specs
        self.nodes = [
            ClusterNode(NodeId(i + 1), NetworkIdentity.generate(), ["/ip4/127.0.0.1/tcp/0"])
            for i in range(n)
        ]
        self.committee: Committee | None = None

    def __getitem__(self, node_id: int) -> ClusterNode:
        return self.nodes[node_id - 1]

    async def start(self) -> None:
        for node in self.nodes:
            await self._start_host(node)
        self.committee = Committee(
            Member(x.node_id, x.identity.peer_id_str, tuple(x.listen), x.identity.public_key)
            for x in self.nodes
        )
        for node in self.nodes:
            await self._start_mesh(node)

    async def _start_host(self, node: ClusterNode) -> None:
        node.stopped = trio.Event()
        nursery: trio.Nursery = await self.outer.start(_service, node.stopped)
        node.nursery = nursery
        node.host = Host(node.identity, listen=node.listen)
        node.listen = await nursery.start(node.host.run)

    async def _start_mesh(self, node: ClusterNode) -> None:
        assert self.committee is not None and node.host is not None and node.nursery
        node.mesh = Mesh(
            node.host, self.committee, node.node_id, backoff=FAST_BACKOFF, dial_timeout=5
        )
        node.channels = {s.protocol: node.mesh.add_protocol(s) for s in self.specs}
        await node.nursery.start(node.mesh.run)

    async def stop(self, node_id: int) -> None:
        node = self[node_id]
        assert node.nursery is not None
        node.nursery.cancel_scope.cancel()
        await node.stopped.wait()

    async def restart(self, node_id: int) -> None:
        """Start a fresh host and mesh with the same identity on the same address."""
        node = self[node_id]
        await self._start_host(node)
        await self._start_mesh(node)


async def _service(
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[trio.Nursery],  # type: ignore[name-defined,unused-ignore]
) -> None:
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()
    finally:
        stopped.set()


@asynccontextmanager
async def cluster(n: int, specs: list[ProtocolSpec] | None = None) -> AsyncIterator[Cluster]:
    """A started cluster of ``n`` nodes speaking ``specs`` (consensus and sync by default)."""
    if specs is None:
        specs = [ProtocolSpec(CONSENSUS_PROTOCOL), ProtocolSpec(SYNC_PROTOCOL)]
    async with trio.open_nursery() as outer:
        c = Cluster(outer, n, specs)
        await c.start()
        yield c
        outer.cancel_scope.cancel()
