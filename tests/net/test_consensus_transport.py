"""The consensus package's replicas, driven over libp2p through ``ConsensusTransport``."""

from __future__ import annotations

import pytest
import trio

from consensus import ChainId, Config, MemoryStore, Node, Pacemaker, Signer
from consensus import NodeId as ConsensusId
from kmsnode.net import (
    CONSENSUS_PROTOCOL,
    ConsensusTransport,
    Envelope,
    NodeId,
    consensus_frame_limit,
)

from .conftest import cluster


def configs(n: int) -> tuple[list[Signer], list[Config]]:
    signers = [Signer.from_seed(b"net-test/%d" % i) for i in range(n)]
    keys = tuple(s.public_key() for s in signers)
    cfgs = [
        Config(
            chain_id=ChainId(b"net-test"),
            me=ConsensusId(i),
            public_keys=keys,
            pacemaker=Pacemaker(base=1.0),
        )
        for i in range(n)
    ]
    return signers, cfgs


async def test_four_replicas_commit_over_libp2p() -> None:
    signers, cfgs = configs(4)
    async with cluster(4, specs=[]) as c:
        transports = [ConsensusTransport(x.mesh, cfgs[i]) for i, x in enumerate(c.nodes)]  # type: ignore[arg-type]
        assert (
            transports[0].node_id(ConsensusId(0)) == 1
            and transports[0].consensus_id(NodeId(4)) == 3
        )
        nodes = [Node(cfgs[i], signers[i], MemoryStore(), transports[i]) for i in range(4)]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            for node in nodes:
                await node.submit(b"payload over libp2p")
            with trio.fail_after(20):
                async for block in nodes[0].committed():
                    if b"payload over libp2p" in block.payloads:
                        break
            assert all(t.dropped_invalid == 0 for t in transports)
            nursery.cancel_scope.cancel()


async def test_wrong_envelopes_are_dropped_and_sender_is_authenticated() -> None:
    _, cfgs = configs(3)
    async with cluster(3, specs=[]) as c:
        t1 = ConsensusTransport(c[1].mesh, cfgs[0])  # type: ignore[arg-type]
        ConsensusTransport(c[2].mesh, cfgs[1])  # type: ignore[arg-type]
        m2 = c[2].mesh
        assert m2 is not None
        m2.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("x", b"not consensus"))
        m2.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", "a str, not bytes"))
        m2.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", b"real"))
        with trio.fail_after(10):
            sender, data = await t1.receive()
        assert (sender, data) == (1, b"real")  # consensus index 1 == node 2
        assert t1.dropped_invalid == 2


async def test_mismatched_committees_are_refused() -> None:
    _, cfgs = configs(4)
    async with cluster(3, specs=[]) as c:
        with pytest.raises(ValueError, match="same genesis"):
            ConsensusTransport(c[1].mesh, cfgs[0])  # type: ignore[arg-type]
    _, cfgs3 = configs(3)
    async with cluster(3, specs=[]) as c:
        with pytest.raises(ValueError, match="this mesh is node"):
            ConsensusTransport(c[1].mesh, cfgs3[1])  # type: ignore[arg-type]


def test_frame_limit_fits_sync_batches_but_is_capped() -> None:
    _, cfgs = configs(1)
    assert consensus_frame_limit(cfgs[0]) == 64 * 1024 * 1024  # 32 x 4 MiB blocks, capped
    small = Config(
        chain_id=ChainId(b"x"),
        me=ConsensusId(0),
        public_keys=cfgs[0].public_keys,
        max_block_bytes=64 * 1024,
        sync_batch=4,
    )
    assert consensus_frame_limit(small) == 4 * 64 * 1024 + 1024 * 1024
