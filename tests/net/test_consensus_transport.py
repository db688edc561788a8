"""The consensus package's replicas, driven over libp2p through ``ConsensusTransport``."""

from __future__ import annotations

import pytest
import trio

from consensus import ChainId, Config, Height, MemoryStore, Node, Pacemaker, Signer, Vote
from consensus import NodeId as ConsensusId
from consensus._messages import SyncRequest, encode_message
from consensus._types import BlockId, Round
from kmsnode.net import (
    CONSENSUS_PROTOCOL,
    SYNC_PROTOCOL,
    ConsensusTransport,
    Envelope,
    FrameTooLarge,
    NodeId,
    consensus_frame_limit,
    sync_frame_limit,
)

from .conftest import cluster

CHAIN = ChainId(b"net-test")
SIGNER = Signer.from_seed(b"net-test/1")


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


def test_frame_limits_fit_one_block_and_sync_batches_but_are_capped() -> None:
    _, cfgs = configs(1)
    assert consensus_frame_limit(cfgs[0]) == 5 * 1024 * 1024  # one 4 MiB block + certificates
    assert sync_frame_limit(cfgs[0]) == 64 * 1024 * 1024  # 32 x 4 MiB blocks, capped
    small = Config(
        chain_id=ChainId(b"x"),
        me=ConsensusId(0),
        public_keys=cfgs[0].public_keys,
        max_block_bytes=64 * 1024,
        sync_batch=4,
    )
    assert sync_frame_limit(small) == 4 * 64 * 1024 + 1024 * 1024
    assert consensus_frame_limit(small) == 64 * 1024 + 1024 * 1024


async def test_catch_up_travels_on_its_own_protocol_and_limits() -> None:
    _, cfgs = configs(3)
    async with cluster(3, specs=[]) as c:
        t1 = ConsensusTransport(c[1].mesh, cfgs[0])  # type: ignore[arg-type]
        t2 = ConsensusTransport(c[2].mesh, cfgs[1])  # type: ignore[arg-type]
        vote = encode_message(
            Vote.create(CHAIN, Round(1), BlockId(b"b" * 32), ConsensusId(1), SIGNER)
        )
        request = encode_message(SyncRequest(Height(1), Height(5)))
        await t2.send(ConsensusId(0), vote)
        await t2.send(ConsensusId(0), request)
        with trio.fail_after(10):
            got = {(await t1.receive())[1] for _ in range(2)}
        assert got == {vote, request}  # one inbound channel for both protocols
        links = c[2].mesh.statistics().links  # type: ignore[union-attr]
        assert links[CONSENSUS_PROTOCOL][NodeId(1)].frames_sent == 1
        assert links[SYNC_PROTOCOL][NodeId(1)].frames_sent == 1
        # A frame over one block is refused on /kms/consensus/1 (stream reset), but the same
        # size is a normal catch-up response on /kms/sync/1.
        big = b"\x93\x01\x05" + b"x" * (consensus_frame_limit(cfgs[1]) + 10)
        m2 = c[2].mesh
        assert m2 is not None
        with pytest.raises(FrameTooLarge):
            m2.send(NodeId(1), CONSENSUS_PROTOCOL, Envelope("c", big))
        await t2.send(ConsensusId(0), big)
        with trio.fail_after(20):
            sender, data = await t1.receive()
        assert (sender, len(data)) == (1, len(big))
