"""Wire messages: blocks, votes, certificates, timeouts, proposals and sync, with strict codecs.

Every message is a frozen dataclass with ``encode()`` and a strict ``decode()``; anything
signed or hashed is built from canonical msgpack (see ``_codec``). Decoding checks types,
lengths and ranges only; validity against the committee (signatures, quorums) is checked by
``verify`` methods, so a decoded object is well formed but not yet trusted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Any, ClassVar

from ._codec import as_bytes, as_int, as_list, pack, unpack
from ._crypto import (
    SIGNATURE_BYTES,
    Committee,
    Signer,
    block_signing_message,
    timeout_signing_message,
    vote_signing_message,
)
from ._types import BlockId, ChainId, Height, NodeId, Round
from .errors import DecodeError, InvalidCertificate, InvalidSignature

__all__ = [
    "Block",
    "Message",
    "Proposal",
    "QuorumCert",
    "SyncRequest",
    "SyncResponse",
    "TimeoutCert",
    "TimeoutMsg",
    "Vote",
    "decode_message",
    "encode_message",
    "genesis_block",
    "genesis_qc",
]

WIRE_VERSION = 1
MAX_PAYLOADS_PER_BLOCK = 1_000_000
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
MAX_COMMITTEE = 1024
MAX_SYNC_BLOCKS = 1024
_ID = 32
_ROUND_MAX = 2**62


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


@dataclass(frozen=True)
class QuorumCert:
    """Proof that 2f+1 replicas voted for ``block_id`` in ``round``.

    ``signatures`` is sorted by signer id with no repeats (canonical form; decoding enforces
    it, ``verify`` re-checks it for objects built in memory).
    """

    round: Round
    block_id: BlockId
    signatures: tuple[tuple[NodeId, bytes], ...]

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [self.round, self.block_id, [[i, s] for i, s in self.signatures]]

    @classmethod
    def from_wire(cls, v: Any) -> QuorumCert:
        """Strictly parse the list form."""
        f = as_list(v, "qc", length=3)
        sigs = []
        prev = -1
        for item in as_list(f[2], "qc.signatures", max_length=MAX_COMMITTEE):
            pair = as_list(item, "qc.signature", length=2)
            signer = as_int(pair[0], "qc.signer", hi=MAX_COMMITTEE - 1)
            if signer <= prev:
                raise DecodeError("qc.signatures: signer ids must be strictly increasing")
            prev = signer
            sigs.append((NodeId(signer), as_bytes(pair[1], "qc.signature", size=SIGNATURE_BYTES)))
        return cls(
            Round(as_int(f[0], "qc.round", hi=_ROUND_MAX)),
            BlockId(as_bytes(f[1], "qc.block_id", size=_ID)),
            tuple(sigs),
        )

    def encode(self) -> bytes:
        """Canonical bytes."""
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> QuorumCert:
        """Strict inverse of ``encode``; raises DecodeError."""
        return cls.from_wire(unpack(data, "qc"))

    def verify(self, committee: Committee, chain_id: ChainId) -> None:
        """Return None if this QC is valid, else raise InvalidCertificate.

        The genesis QC (round 0, the genesis block, no signatures) is the only QC without a
        quorum. Otherwise: at least ``quorum`` signers, distinct, members, each signature
        individually valid over (chain id, round, block id).
        """
        if self.round == 0:
            if self.block_id == genesis_block(chain_id).id and not self.signatures:
                return
            raise InvalidCertificate("a round-0 QC must be the genesis QC")
        signers = [i for i, _ in self.signatures]
        if len(set(signers)) != len(signers):
            raise InvalidCertificate("QC has duplicate signers")
        if len(signers) < committee.quorum:
            raise InvalidCertificate(f"QC has {len(signers)} signers, needs {committee.quorum}")
        msg = vote_signing_message(chain_id, self.round, self.block_id)
        for signer, sig in self.signatures:
            if not committee.verify(signer, msg, sig):
                raise InvalidCertificate("QC carries an invalid signature")


@dataclass(frozen=True)
class Block:
    """A proposal's content: a batch of opaque payloads extending the block ``qc`` certifies.

    ``id`` is not sent on the wire: it is recomputed from the header (which includes the
    chain id and a hash of the payloads) whenever a block is built or decoded.
    """

    round: Round
    height: Height
    qc: QuorumCert
    timestamp_ms: int
    proposer: NodeId
    payloads: tuple[bytes, ...]
    signature: bytes
    id: BlockId = field(compare=False)

    @property
    def parent_id(self) -> BlockId:
        """The block this one extends (the one its QC certifies)."""
        return self.qc.block_id

    @staticmethod
    def compute_id(
        chain_id: ChainId,
        round: Round,
        height: Height,
        qc: QuorumCert,
        timestamp_ms: int,
        proposer: NodeId,
        payloads: tuple[bytes, ...],
    ) -> BlockId:
        """SHA-256 over the domain tag and the canonical header."""
        # The lengths, then the bytes back to back: unambiguous, and cheap to build.
        payload_root = _digest(pack(list(map(len, payloads))), b"".join(payloads))
        header = pack(
            [chain_id, round, height, qc.block_id, qc.round, timestamp_ms, proposer, payload_root]
        )
        return BlockId(_digest(b"consensus/block/v1", header))

    @classmethod
    def create(
        cls,
        chain_id: ChainId,
        round: Round,
        height: Height,
        qc: QuorumCert,
        timestamp_ms: int,
        proposer: NodeId,
        payloads: tuple[bytes, ...],
        signer: Signer | None,
    ) -> Block:
        """Build and sign a block (``signer=None`` only for genesis)."""
        bid = cls.compute_id(chain_id, round, height, qc, timestamp_ms, proposer, payloads)
        sig = signer.sign(block_signing_message(bid)) if signer else b""
        return cls(round, height, qc, timestamp_ms, proposer, payloads, sig, bid)

    @cached_property
    def size(self) -> int:
        """Total payload bytes."""
        return sum(map(len, self.payloads))

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [
            self.round,
            self.height,
            self.qc.to_wire(),
            self.timestamp_ms,
            self.proposer,
            list(self.payloads),
            self.signature,
        ]

    @classmethod
    def from_wire(cls, v: Any, chain_id: ChainId) -> Block:
        """Strictly parse the list form and recompute the id."""
        f = as_list(v, "block", length=7)
        rnd = Round(as_int(f[0], "block.round", lo=1, hi=_ROUND_MAX))
        height = Height(as_int(f[1], "block.height", lo=1))
        qc = QuorumCert.from_wire(f[2])
        ts = as_int(f[3], "block.timestamp_ms")
        proposer = NodeId(as_int(f[4], "block.proposer", hi=MAX_COMMITTEE - 1))
        raw = as_list(f[5], "block.payloads", max_length=MAX_PAYLOADS_PER_BLOCK)
        # msgpack yields exact ``bytes`` for bin, so isinstance is exact here (and C-fast).
        if not all(map(isinstance, raw, repeat(bytes))):
            raise DecodeError("block.payloads: every payload must be bytes")
        payloads = tuple(raw)
        sig = as_bytes(f[6], "block.signature", size=SIGNATURE_BYTES)
        bid = cls.compute_id(chain_id, rnd, height, qc, ts, proposer, payloads)
        return cls(rnd, height, qc, ts, proposer, payloads, sig, bid)

    @cached_property
    def encoded(self) -> bytes:
        """Canonical bytes (without the id, which is derived), computed once."""
        return pack(self.to_wire())

    def encode(self) -> bytes:
        """Canonical bytes (without the id, which is derived)."""
        return self.encoded

    @classmethod
    def decode(cls, data: bytes, chain_id: ChainId) -> Block:
        """Strict inverse of ``encode``; raises DecodeError."""
        return cls.from_wire(unpack(data, "block"), chain_id)

    def verify_signature(self, committee: Committee) -> None:
        """Return None if the proposer signed this block id, else raise InvalidSignature."""
        if not committee.verify(self.proposer, block_signing_message(self.id), self.signature):
            raise InvalidSignature("invalid block signature")


_GENESIS: dict[bytes, Block] = {}


def genesis_block(chain_id: ChainId) -> Block:
    """The implicit round-0, height-0 block every chain starts from."""
    g = _GENESIS.get(chain_id)
    if g is None:
        zero_qc = QuorumCert(Round(0), BlockId(bytes(_ID)), ())
        g = Block.create(chain_id, Round(0), Height(0), zero_qc, 0, NodeId(0), (), None)
        _GENESIS[chain_id] = g
    return g


def genesis_qc(chain_id: ChainId) -> QuorumCert:
    """The QC that certifies the genesis block (no signatures)."""
    return QuorumCert(Round(0), genesis_block(chain_id).id, ())


@dataclass(frozen=True)
class Vote:
    """One replica's signed vote for ``block_id`` in ``round``."""

    TAG: ClassVar[int] = 2
    round: Round
    block_id: BlockId
    voter: NodeId
    signature: bytes

    @classmethod
    def create(
        cls, chain_id: ChainId, round: Round, block_id: BlockId, voter: NodeId, signer: Signer
    ) -> Vote:
        """Sign a vote."""
        return cls(
            round, block_id, voter, signer.sign(vote_signing_message(chain_id, round, block_id))
        )

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [self.round, self.block_id, self.voter, self.signature]

    @classmethod
    def from_wire(cls, v: Any, chain_id: ChainId) -> Vote:
        """Strictly parse the list form."""
        f = as_list(v, "vote", length=4)
        return cls(
            Round(as_int(f[0], "vote.round", lo=1, hi=_ROUND_MAX)),
            BlockId(as_bytes(f[1], "vote.block_id", size=_ID)),
            NodeId(as_int(f[2], "vote.voter", hi=MAX_COMMITTEE - 1)),
            as_bytes(f[3], "vote.signature", size=SIGNATURE_BYTES),
        )

    def verify(self, committee: Committee, chain_id: ChainId) -> None:
        """Return None if the signature is valid, else raise InvalidSignature."""
        msg = vote_signing_message(chain_id, self.round, self.block_id)
        if not committee.verify(self.voter, msg, self.signature):
            raise InvalidSignature("invalid vote signature")


@dataclass(frozen=True)
class TimeoutCert:
    """Proof that 2f+1 replicas timed out in ``round``, with the highest QC they reported.

    ``entries`` are (signer, signer's high-QC round, signature), sorted by signer, distinct.
    """

    round: Round
    entries: tuple[tuple[NodeId, Round, bytes], ...]
    high_qc: QuorumCert

    @property
    def max_hqc_round(self) -> Round:
        """The highest high-QC round any signer reported (the vote rule compares to it)."""
        return max((r for _, r, _ in self.entries), default=Round(0))

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [self.round, [[i, r, s] for i, r, s in self.entries], self.high_qc.to_wire()]

    @classmethod
    def from_wire(cls, v: Any) -> TimeoutCert:
        """Strictly parse the list form."""
        f = as_list(v, "tc", length=3)
        entries = []
        prev = -1
        for item in as_list(f[1], "tc.entries", max_length=MAX_COMMITTEE):
            e = as_list(item, "tc.entry", length=3)
            signer = as_int(e[0], "tc.signer", hi=MAX_COMMITTEE - 1)
            if signer <= prev:
                raise DecodeError("tc.entries: signer ids must be strictly increasing")
            prev = signer
            entries.append(
                (
                    NodeId(signer),
                    Round(as_int(e[1], "tc.hqc_round", hi=_ROUND_MAX)),
                    as_bytes(e[2], "tc.signature", size=SIGNATURE_BYTES),
                )
            )
        return cls(
            Round(as_int(f[0], "tc.round", lo=1, hi=_ROUND_MAX)),
            tuple(entries),
            QuorumCert.from_wire(f[2]),
        )

    def verify(self, committee: Committee, chain_id: ChainId) -> None:
        """Return None if valid, else raise InvalidCertificate.

        Checks: a quorum of distinct members, each signature valid over (chain, round, its
        high-QC round), every reported high-QC round below ``round``, and ``high_qc`` is a
        valid QC whose round equals the highest reported one.
        """
        signers = [i for i, _, _ in self.entries]
        if len(set(signers)) != len(signers):
            raise InvalidCertificate("TC has duplicate signers")
        if len(signers) < committee.quorum:
            raise InvalidCertificate(f"TC has {len(signers)} signers, needs {committee.quorum}")
        for signer, hqc_round, sig in self.entries:
            if hqc_round >= self.round:
                raise InvalidCertificate("TC entry reports a high QC not below the TC round")
            msg = timeout_signing_message(chain_id, self.round, hqc_round)
            if not committee.verify(signer, msg, sig):
                raise InvalidCertificate("TC carries an invalid signature")
        if self.high_qc.round != self.max_hqc_round:
            raise InvalidCertificate("TC high QC does not match the highest reported round")
        self.high_qc.verify(committee, chain_id)


@dataclass(frozen=True)
class TimeoutMsg:
    """A replica's signed timeout for ``round`` with its highest QC.

    ``last_tc`` is the TC for ``round - 1`` when the sender entered ``round`` by a TC: it lets
    lagging replicas catch up to the round without the leader (view synchronisation).
    """

    TAG: ClassVar[int] = 3
    round: Round
    high_qc: QuorumCert
    sender: NodeId
    signature: bytes
    last_tc: TimeoutCert | None = None

    @classmethod
    def create(
        cls,
        chain_id: ChainId,
        round: Round,
        high_qc: QuorumCert,
        sender: NodeId,
        signer: Signer,
        last_tc: TimeoutCert | None,
    ) -> TimeoutMsg:
        """Sign a timeout."""
        sig = signer.sign(timeout_signing_message(chain_id, round, high_qc.round))
        return cls(round, high_qc, sender, sig, last_tc)

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [
            self.round,
            self.high_qc.to_wire(),
            self.sender,
            self.signature,
            None if self.last_tc is None else self.last_tc.to_wire(),
        ]

    @classmethod
    def from_wire(cls, v: Any, chain_id: ChainId) -> TimeoutMsg:
        """Strictly parse the list form."""
        f = as_list(v, "timeout", length=5)
        return cls(
            Round(as_int(f[0], "timeout.round", lo=1, hi=_ROUND_MAX)),
            QuorumCert.from_wire(f[1]),
            NodeId(as_int(f[2], "timeout.sender", hi=MAX_COMMITTEE - 1)),
            as_bytes(f[3], "timeout.signature", size=SIGNATURE_BYTES),
            None if f[4] is None else TimeoutCert.from_wire(f[4]),
        )

    def verify(self, committee: Committee, chain_id: ChainId) -> None:
        """Check the signature, the high QC (and the attached TC); raise InvalidMessage."""
        if self.high_qc.round >= self.round:
            raise InvalidCertificate("timeout high QC must be below the timeout round")
        msg = timeout_signing_message(chain_id, self.round, self.high_qc.round)
        if not committee.verify(self.sender, msg, self.signature):
            raise InvalidSignature("invalid timeout signature")
        self.high_qc.verify(committee, chain_id)
        if self.last_tc is not None:
            self.last_tc.verify(committee, chain_id)


@dataclass(frozen=True)
class Proposal:
    """The leader's block for its round, with the TC for ``round - 1`` if that round timed out."""

    TAG: ClassVar[int] = 1
    block: Block
    tc: TimeoutCert | None = None

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [self.block.to_wire(), None if self.tc is None else self.tc.to_wire()]

    @classmethod
    def from_wire(cls, v: Any, chain_id: ChainId) -> Proposal:
        """Strictly parse the list form."""
        f = as_list(v, "proposal", length=2)
        return cls(
            Block.from_wire(f[0], chain_id), None if f[1] is None else TimeoutCert.from_wire(f[1])
        )


@dataclass(frozen=True)
class SyncRequest:
    """Ask a peer for the certified blocks from ``from_height`` onwards.

    ``committed_height`` tells the peer how far the requester has committed, so a peer that
    committed further can also send the proof of its last commit (the 2-chain witness).
    """

    TAG: ClassVar[int] = 4
    from_height: Height
    committed_height: Height

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [self.from_height, self.committed_height]

    @classmethod
    def from_wire(cls, v: Any, chain_id: ChainId) -> SyncRequest:
        """Strictly parse the list form."""
        f = as_list(v, "sync_request", length=2)
        return cls(
            Height(as_int(f[0], "sync_request.from_height", lo=1)),
            Height(as_int(f[1], "sync_request.committed_height")),
        )


@dataclass(frozen=True)
class SyncResponse:
    """A chain of blocks, each certified by the next one's QC, the last one by ``qc``.

    The receiver trusts nothing here: it checks the links, every QC, and that the first block
    extends a block it already has.
    """

    TAG: ClassVar[int] = 5
    blocks: tuple[Block, ...]
    qc: QuorumCert

    def to_wire(self) -> list[Any]:
        """The msgpack-ready list form."""
        return [[b.to_wire() for b in self.blocks], self.qc.to_wire()]

    @classmethod
    def from_wire(cls, v: Any, chain_id: ChainId) -> SyncResponse:
        """Strictly parse the list form."""
        f = as_list(v, "sync_response", length=2)
        blocks = as_list(f[0], "sync_response.blocks", max_length=MAX_SYNC_BLOCKS)
        return cls(tuple(Block.from_wire(b, chain_id) for b in blocks), QuorumCert.from_wire(f[1]))


Message = Proposal | Vote | TimeoutMsg | SyncRequest | SyncResponse
_BY_TAG: dict[int, Any] = {
    c.TAG: c for c in (Proposal, Vote, TimeoutMsg, SyncRequest, SyncResponse)
}


def encode_message(msg: Message) -> bytes:
    """Frame a message as ``[version, tag, body]`` in canonical msgpack."""
    return pack([WIRE_VERSION, msg.TAG, msg.to_wire()])


def is_catch_up(data: bytes) -> bool:
    """Whether ``encode_message`` bytes are a ``SyncRequest``/``SyncResponse`` (catch-up),
    read from the frame's header without decoding it: transports carry catch-up apart, so a
    bulk response never queues ahead of proposals and votes."""
    # ``[version, tag, body]`` packs as 0x93, then two positive fixints.
    return (
        len(data) > 3
        and data[0] == 0x93
        and data[1] == WIRE_VERSION
        and data[2] in (SyncRequest.TAG, SyncResponse.TAG)
    )


def decode_message(data: bytes, chain_id: ChainId) -> Message:
    """Strictly decode a framed message; raises DecodeError naming the problem."""
    f = as_list(unpack(data, "message"), "message", length=3)
    version = as_int(f[0], "message.version")
    if version != WIRE_VERSION:
        raise DecodeError(f"message: unsupported wire version {version} (expected {WIRE_VERSION})")
    tag = as_int(f[1], "message.tag")
    cls = _BY_TAG.get(tag)
    if cls is None:
        raise DecodeError(f"message: unknown tag {tag}")
    return cls.from_wire(f[2], chain_id)  # type: ignore[no-any-return]
