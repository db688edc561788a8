"""Byzantine replicas built by wrapping an honest one and corrupting what it sends.

Each wrapper holds the replica's real signing key (a byzantine node owns its key) but can
only send under its own authenticated identity, as on the real network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .._crypto import Signer
from .._events import Action, Broadcast, Event, MessageReceived, Send
from .._messages import Block, Message, Proposal, QuorumCert, Vote
from .._replica import Replica
from .._types import BlockId, NodeId, Round

__all__ = ["BadQcLeader", "Byzantine", "Equivocator", "Replayer", "Silent", "VoteForger"]


@dataclass
class Byzantine:
    """Base wrapper: runs the honest replica, then ``corrupt`` rewrites its actions."""

    replica: Replica
    signer: Signer
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def handle(self, event: Event, now: float) -> list[Action]:
        """Run the honest logic, then misbehave."""
        return self.corrupt(self.replica.handle(event, now), event, now)

    def corrupt(self, actions: list[Action], event: Event, now: float) -> list[Action]:
        """Rewrite the honest actions (identity here)."""
        return actions

    @property
    def others(self) -> list[NodeId]:
        """Every other identity."""
        return [NodeId(i) for i in range(self.replica.committee.n) if i != self.replica.me]


class Silent(Byzantine):
    """Never sends anything (a crashed or censoring replica that still runs)."""

    def corrupt(self, actions: list[Action], event: Event, now: float) -> list[Action]:
        return [a for a in actions if not isinstance(a, (Send, Broadcast))]


class Equivocator(Byzantine):
    """As leader, sends two different validly signed blocks for the same round to two halves."""

    def corrupt(self, actions: list[Action], event: Event, now: float) -> list[Action]:
        out: list[Action] = []
        r = self.replica
        for a in actions:
            if isinstance(a, Broadcast) and isinstance(a.message, Proposal):
                b = a.message.block
                twin = Block.create(
                    r.chain_id,
                    b.round,
                    b.height,
                    b.qc,
                    b.timestamp_ms,
                    b.proposer,
                    (*b.payloads, b"equivocation-%d" % b.round),
                    self.signer,
                )
                others = self.others
                self.rng.shuffle(others)
                half = len(others) // 2
                out.extend(Send(i, a.message) for i in others[:half])
                out.extend(Send(i, Proposal(twin, a.message.tc)) for i in others[half:])
            else:
                out.append(a)
        return out


class VoteForger(Byzantine):
    """Sends garbage-signed, duplicated, impersonating and conflicting votes with its own."""

    def corrupt(self, actions: list[Action], event: Event, now: float) -> list[Action]:
        out: list[Action] = []
        r = self.replica
        for a in actions:
            out.append(a)
            if isinstance(a, Send) and isinstance(a.message, Vote):
                v = a.message
                other = NodeId((r.me + 1) % r.committee.n)
                conflicting = BlockId(bytes(self.rng.randrange(256) for _ in range(32)))
                out += [
                    Send(a.to, Vote(v.round, v.block_id, v.voter, bytes(64))),  # forged signature
                    Send(a.to, v),  # duplicate
                    Send(a.to, Vote(v.round, v.block_id, other, v.signature)),  # impersonation
                    Send(a.to, Vote.create(r.chain_id, v.round, conflicting, r.me, self.signer)),
                ]
        return out


class BadQcLeader(Byzantine):
    """As leader, proposes blocks with a broken QC: duplicate signers, too few signers, or a
    valid QC moved to another round. Honest replicas must reject every such block."""

    mode: int = 0

    def corrupt(self, actions: list[Action], event: Event, now: float) -> list[Action]:
        out: list[Action] = []
        r = self.replica
        for a in actions:
            if isinstance(a, Broadcast) and isinstance(a.message, Proposal):
                b = a.message.block
                qc = b.qc
                self.mode = (self.mode + 1) % 3
                if self.mode == 0 and qc.signatures:
                    first = qc.signatures[0]
                    bad = QuorumCert(qc.round, qc.block_id, (first,) * r.committee.quorum)
                elif self.mode == 1:
                    bad = QuorumCert(qc.round, qc.block_id, qc.signatures[: r.committee.quorum - 1])
                else:
                    bad = QuorumCert(Round(qc.round + 1), qc.block_id, qc.signatures)
                forged = Block.create(
                    r.chain_id,
                    b.round,
                    b.height,
                    bad,
                    b.timestamp_ms,
                    b.proposer,
                    b.payloads,
                    self.signer,
                )
                out.append(Broadcast(Proposal(forged, a.message.tc)))
            else:
                out.append(a)
        return out


@dataclass
class Replayer(Byzantine):
    """Re-sends old messages (its own and ones it received) to random peers."""

    seen: list[Message] = field(default_factory=list)

    def corrupt(self, actions: list[Action], event: Event, now: float) -> list[Action]:
        if isinstance(event, MessageReceived):
            self.seen.append(event.message)
        for a in actions:
            if isinstance(a, (Send, Broadcast)):
                self.seen.append(a.message)
        if len(self.seen) > 5000:
            del self.seen[:2500]
        out = list(actions)
        if self.seen:
            for _ in range(2):
                old = self.seen[self.rng.randrange(len(self.seen))]
                out.append(Send(self.rng.choice(self.others), old))
        return out
