"""The replica's typed inputs (events) and outputs (actions).

The driver (trio or the simulator) feeds events to ``Replica.handle`` and executes the
returned actions **in order**: a ``Persist`` must be written (and, when it carries safety
data, fsync'd) before any later ``Send`` or ``Broadcast`` in the same list leaves the process.
That ordering is how safety data reaches disk before a vote or timeout does.
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

    @property
    def proposer(self) -> NodeId:
        """Who proposed the block (its signature says so): a sign of life, for applications."""
        return self.block.proposer


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
    """Write atomically before executing any later action; durably (fsync) if ``must_sync``.

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

    @property
    def must_sync(self) -> bool:
        """Whether this write must reach the disk (fsync) before the actions after it.

        Only what guards safety must: the safety data a vote or timeout depends on. Blocks,
        certificates and the committed log can be fetched again from peers (they are
        certified), and a later synced write to the same log makes earlier ones durable too.
        """
        return self.safety is not None


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
    """Merge every ``Persist`` in ``actions`` into the first one (one transaction, one fsync).

    Writing a later ``Persist`` sooner is always safe: every action still runs after each
    ``Persist`` that preceded it (the actions in between now also wait for the later writes,
    which only makes them more conservative). A replica's event typically yields a commit's
    ``Persist``, then a timer, then the vote's ``Persist`` and the vote: one transaction.
    """
    first: int | None = None
    out: list[Action] = []
    for a in actions:
        if isinstance(a, Persist):
            if first is None:
                first = len(out)
                out.append(a)
            else:
                out[first] = _merge(out[first], a)  # type: ignore[arg-type]
        else:
            out.append(a)
    return out


def _merge(prev: Persist, a: Persist) -> Persist:
    """``prev`` then ``a`` as one ``Persist`` (later values replace, lists append)."""
    return Persist(
        blocks=prev.blocks + a.blocks,
        safety=a.safety if a.safety is not None else prev.safety,
        high_qc=a.high_qc if a.high_qc is not None else prev.high_qc,
        high_tc=a.high_tc if a.high_tc is not None else prev.high_tc,
        commits=prev.commits + a.commits,
        witness=a.witness if a.witness is not None else prev.witness,
    )
