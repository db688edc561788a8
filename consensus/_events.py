"""The replica's typed inputs (events) and outputs (actions).

The driver (trio or the simulator) feeds events to ``Replica.handle`` and executes the
returned actions **in order**: a ``Persist`` must be durable before any later ``Send`` or
``Broadcast`` in the same list leaves the process. That ordering is how safety data reaches
disk before a vote or timeout does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._messages import Block, Message, QuorumCert, TimeoutCert
from ._rules import SafetyData
from ._types import BlockId, Height, NodeId, Round

__all__ = [
    "Action",
    "Broadcast",
    "CommittedBlock",
    "Deliver",
    "Event",
    "MessageReceived",
    "PayloadSubmitted",
    "Persist",
    "Send",
    "ServeSync",
    "SetTimer",
    "Start",
    "TimerFired",
    "coalesce",
]


# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The driver is ready: arm the round timer, propose if leading."""


@dataclass(frozen=True)
class MessageReceived:
    """``message`` arrived from the authenticated peer ``sender``."""

    sender: NodeId
    message: Message


@dataclass(frozen=True)
class TimerFired:
    """The round timer set for ``round`` expired."""

    round: Round


@dataclass(frozen=True)
class PayloadSubmitted:
    """The application submits payloads (drivers batch submissions into one event).

    Payloads that do not fit in the mempool are counted in ``ReplicaStats.rejected_full``;
    drivers check ``Replica.mempool_room`` first and apply back-pressure to their callers.
    """

    payloads: tuple[bytes, ...]


Event = Start | MessageReceived | TimerFired | PayloadSubmitted


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommittedBlock:
    """One entry of the committed log, as the application receives it.

    ``payloads`` are the block's payloads minus any already delivered (de-duplicated
    deterministically); ``qc`` certifies this block; ``dropped`` are the indices removed.
    """

    height: Height
    round: Round
    block_id: BlockId
    payloads: tuple[bytes, ...]
    qc: QuorumCert
    timestamp_ms: int
    block: Block = field(repr=False)
    dropped: tuple[int, ...] = ()


@dataclass(frozen=True)
class Send:
    """Send ``message`` to ``to``."""

    to: NodeId
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """Send ``message`` to every other committee member."""

    message: Message


@dataclass(frozen=True)
class Persist:
    """Write atomically and durably before executing any later action.

    ``safety``/``high_qc``/``high_tc`` replace the stored ones when not None; ``blocks`` are
    added; ``commits`` are appended to the committed log.
    """

    blocks: tuple[Block, ...] = ()
    safety: SafetyData | None = None
    high_qc: QuorumCert | None = None
    high_tc: TimeoutCert | None = None
    commits: tuple[CommittedBlock, ...] = ()
    witness: tuple[Block, QuorumCert] | None = None
    """The certified child that proves the last commit (kept to serve catch-up)."""


@dataclass(frozen=True)
class SetTimer:
    """(Re)arm the single round timer: fire ``TimerFired(round)`` after ``delay`` seconds."""

    round: Round
    delay: float


@dataclass(frozen=True)
class Deliver:
    """Hand a committed block to the application (after its ``Persist``)."""

    block: CommittedBlock


@dataclass(frozen=True)
class ServeSync:
    """Read committed blocks ``from_height ..`` (at most ``limit``) from the store and send
    them to ``to`` as a ``SyncResponse`` (the core does not keep old blocks in memory)."""

    to: NodeId
    from_height: Height
    limit: int
    witness: tuple[Block, QuorumCert] | None = None
    """Appended when the range reaches the last commit: the child block and its QC that
    prove (by the 2-chain rule) that the last block is committed."""


Action = Send | Broadcast | Persist | SetTimer | Deliver | ServeSync


def coalesce(actions: list[Action]) -> list[Action]:
    """Merge runs of adjacent ``Persist`` actions into one (one transaction, one fsync).

    Order is otherwise preserved, so every ``Persist`` still completes before the actions
    that followed it.
    """
    out: list[Action] = []
    for a in actions:
        prev = out[-1] if out else None
        if isinstance(a, Persist) and isinstance(prev, Persist):
            out[-1] = Persist(
                blocks=prev.blocks + a.blocks,
                safety=a.safety if a.safety is not None else prev.safety,
                high_qc=a.high_qc if a.high_qc is not None else prev.high_qc,
                high_tc=a.high_tc if a.high_tc is not None else prev.high_tc,
                commits=prev.commits + a.commits,
                witness=a.witness if a.witness is not None else prev.witness,
            )
        else:
            out.append(a)
    return out
