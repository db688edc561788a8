"""Runs the consensus package over the mesh: an implementation of ``consensus.Transport``.

Ids: consensus numbers replicas ``0 .. n-1`` in the order of ``Config.public_keys``; the
genesis numbers nodes ``1 .. n``. The adapter maps consensus index ``i`` to the ``i``-th
committee node id in ascending order (so with ids ``1..n``, ``i <-> i + 1``); the node must
build ``Config.public_keys`` in that same order.

Wire: each consensus message (``consensus.encode_message`` bytes, opaque here) travels as
``Envelope("c", data)`` on ``/kms/consensus/1``. The sender handed to consensus is the
Noise-authenticated peer's index, never anything read from the data (DESIGN §9, last item).

Catch-up traffic (``SyncRequest``/``SyncResponse``, told apart by ``consensus.is_catch_up``
from the frame header) goes over ``/kms/sync/1``: its own stream per peer, so a response of
many blocks never queues ahead of a proposal or a vote, and its own frame limit
(``sync_frame_limit``, sized for the largest ``SyncResponse`` the config allows) while
``/kms/consensus/1`` frames stay within one block (``consensus_frame_limit``). Both deliver
into one inbound channel, read by ``receive``.
"""

from __future__ import annotations

import logging

import trio

from consensus import Config, is_catch_up
from consensus import NodeId as ConsensusId

from .committee import NodeId
from .errors import FrameTooLarge
from .framing import Envelope, FrameFormat
from .mesh import CONSENSUS_PROTOCOL, SYNC_PROTOCOL, Mesh, ProtocolSpec

__all__ = ["CONSENSUS_KIND", "ConsensusTransport", "consensus_frame_limit", "sync_frame_limit"]

_log = logging.getLogger("kmsnode.net.consensus")

CONSENSUS_KIND = "c"
_CODEC_MAX = 64 * 1024 * 1024  # consensus._codec.MAX_MESSAGE_BYTES
_OVERHEAD = 1024 * 1024  # QCs, TCs and headers around the block payloads


def consensus_frame_limit(config: Config) -> int:
    """The frame limit of ``/kms/consensus/1``: the largest proposal (one block, certificates)."""
    return min(config.max_block_bytes + _OVERHEAD, _CODEC_MAX)


def sync_frame_limit(config: Config) -> int:
    """The frame limit of ``/kms/sync/1``: the largest ``SyncResponse`` ``config`` allows."""
    largest = max(1, config.sync_batch) * config.max_block_bytes + _OVERHEAD
    return min(largest, _CODEC_MAX)


class ConsensusTransport:
    """``consensus.Transport`` over a ``Mesh``: authenticated, lossy, never stalling.

    Registers ``/kms/consensus/1`` and ``/kms/sync/1`` on the mesh when built, so build it
    before the mesh runs.

    Args:
        mesh: the committee mesh.
        config: the replica's consensus config (committee size and size limits).
        protocol: the protocol id for proposals, votes and timeouts.
        sync_protocol: the protocol id for catch-up.

    Raises:
        ValueError: the consensus committee and the mesh committee differ in size, or
            ``config.me`` is not this node's index.
    """

    def __init__(
        self,
        mesh: Mesh,
        config: Config,
        *,
        protocol: str = CONSENSUS_PROTOCOL,
        sync_protocol: str = SYNC_PROTOCOL,
    ) -> None:
        ids = mesh.committee.node_ids()
        if len(ids) != len(config.public_keys):
            raise ValueError(
                f"consensus has {len(config.public_keys)} replicas but the committee has "
                f"{len(ids)} nodes; build both from the same genesis"
            )
        self._to_mesh: list[NodeId] = ids
        self._to_consensus: dict[NodeId, ConsensusId] = {
            node: ConsensusId(i) for i, node in enumerate(ids)
        }
        if self._to_mesh[config.me] != mesh.me:
            raise ValueError(
                f"consensus index {config.me} is node {self._to_mesh[config.me]}, "
                f"but this mesh is node {mesh.me}"
            )
        self.mesh = mesh
        self.protocol = protocol
        self.sync_protocol = sync_protocol
        self.fmt = FrameFormat(max_frame_bytes=consensus_frame_limit(config))
        self.sync_fmt = FrameFormat(max_frame_bytes=sync_frame_limit(config))
        self._inbound = mesh.add_protocol(ProtocolSpec(protocol, fmt=self.fmt))
        mesh.add_protocol(ProtocolSpec(sync_protocol, fmt=self.sync_fmt), inbound_of=protocol)
        self.dropped_oversized = 0
        self.dropped_invalid = 0

    def consensus_id(self, node_id: NodeId) -> ConsensusId:
        """The consensus index of committee node ``node_id``."""
        return self._to_consensus[node_id]

    def node_id(self, replica: ConsensusId) -> NodeId:
        """The committee node id of consensus index ``replica``."""
        return self._to_mesh[replica]

    async def send(self, to: ConsensusId, data: bytes) -> None:
        """Queue ``data`` for replica ``to``; drops (and logs) a message too large to frame.

        Raises:
            IndexError: ``to`` is not a replica index (a bug in the caller).
        """
        node_id = self._to_mesh[to]
        try:
            protocol = self.sync_protocol if is_catch_up(data) else self.protocol
            self.mesh.send(node_id, protocol, Envelope(CONSENSUS_KIND, data))
        except FrameTooLarge as exc:
            self.dropped_oversized += 1
            _log.error(
                "dropped an outbound consensus message too large to frame node=%d size=%d limit=%d",
                node_id,
                exc.size,
                exc.limit,
                extra={"event": "consensus_oversized", "node": node_id},
            )

    async def flush(self) -> None:
        """Let what was sent leave before the driver blocks the event loop (``Mesh.flush``)."""
        await self.mesh.flush()

    async def receive(self) -> tuple[ConsensusId, bytes]:
        """The next consensus message and the index of its authenticated sender."""
        while True:
            try:  # no scheduler pass when a message is already queued
                sender, envelope = self._inbound.receive_nowait()
            except trio.WouldBlock:
                sender, envelope = await self._inbound.receive()
            if envelope.kind != CONSENSUS_KIND or type(envelope.body) is not bytes:
                self.dropped_invalid += 1
                _log.warning(
                    "dropped a consensus frame of the wrong shape node=%d kind=%s",
                    sender,
                    envelope.kind[:16],
                    extra={"event": "consensus_bad_envelope", "node": sender},
                )
                continue
            return self._to_consensus[sender], envelope.body
