"""Talking to a running testnet: node status over the client protocol, health waits."""

from __future__ import annotations

import time
from typing import Any

import trio

from kmsnode import net
from kmsnode.client import AsyncDistributedKMS, ClientConfig
from kmsnode.genesis import Genesis

from ._launcher import Testnet


async def node_query(
    genesis: Genesis, node: int, kind: str, body: Any = None, timeout: float = 5.0
) -> Any:
    """One request/response exchange with a node over the client protocol (status, audit)."""
    host = net.Host(net.NetworkIdentity.generate())
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        info = genesis.node(node)
        answers = await net.request(
            host,
            net.parse_peer_id(info.peer_id),
            info.addrs,
            net.Envelope(kind, body),
            timeout=timeout,
        )
        nursery.cancel_scope.cancel()
    for env in answers:
        if env.kind == kind:
            return env.body
    raise net.RequestFailed(info.peer_id, f"no {kind} answer: {answers}")


async def statuses(
    genesis: Genesis, nodes: list[int], timeout: float = 3.0, body: Any = None
) -> dict[int, Any]:
    """Each node's status dict, or None when it does not answer in time (``body``: options,
    e.g. ``{"latency_window": seconds}``)."""
    out: dict[int, Any] = {}
    host = net.Host(net.NetworkIdentity.generate())
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)

        async def one(i: int) -> None:
            info = genesis.node(i)
            try:
                answers = await net.request(
                    host,
                    net.parse_peer_id(info.peer_id),
                    info.addrs,
                    net.Envelope("status", body),
                    timeout=timeout,
                )
                out[i] = next((e.body for e in answers if e.kind == "status"), None)
            except net.RequestFailed:
                out[i] = None

        async with trio.open_nursery() as inner:
            for i in nodes:
                inner.start_soon(one, i)
        nursery.cancel_scope.cancel()
    return out


def wait_healthy(tn: Testnet, timeout: float = 90.0) -> dict[int, Any]:
    """Wait until every running node answers and the log commits a client request.

    Raises:
        TimeoutError: with the nodes that never answered.
    """
    genesis = Genesis.load(tn.dir / "genesis.json")
    running = [i for i in tn.nodes() if tn.alive(i)]
    deadline = time.monotonic() + timeout
    last: dict[int, Any] = {}
    while time.monotonic() < deadline:
        last = trio.run(statuses, genesis, running)
        if all(last.get(i) is not None for i in running):
            break
        dead = [i for i in running if not tn.alive(i)]
        if dead:
            log = tn.dir / f"node{dead[0]}" / "node.log"
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            raise TimeoutError(
                f"node {dead[0]} exited while starting; {log} ends:\n" + "\n".join(tail)
            )
        time.sleep(0.2)
    else:
        missing = [i for i in running if last.get(i) is None]
        raise TimeoutError(
            f"nodes {missing} did not answer within {timeout:.0f}s; see their node.log"
        )

    async def probe() -> None:
        cfg = ClientConfig.load(tn.dir / "client.json")
        async with AsyncDistributedKMS(
            genesis=cfg.genesis, identity=cfg.identity, timeout=30
        ) as kms:
            await kms.list_keys()

    trio.run(probe)
    return trio.run(statuses, genesis, running)


def wait_partitioned(tn: Testnet, cuts: dict[int, set[int]], timeout: float = 10.0) -> None:
    """Wait until every running node reports the cut it was given (``partitioned_from``).

    Raises:
        TimeoutError: with the nodes whose status does not show it yet.
    """
    genesis = Genesis.load(tn.dir / "genesis.json")
    running = [i for i in tn.nodes() if tn.alive(i)]
    deadline = time.monotonic() + timeout
    while True:
        st = trio.run(statuses, genesis, running)
        pending = [
            i
            for i in running
            if st.get(i) is None or set(st[i].get("partitioned_from", ())) != cuts.get(i, set())
        ]
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nodes {pending} did not apply the partition in {timeout:.0f}s")
        time.sleep(0.1)
