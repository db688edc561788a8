"""The 2-chain (DiemBFT v4 / Jolteon) safety and liveness rules as small pure objects.

Each rule takes plain rounds and returns a decision, so every clause of DESIGN §5 has a
table-driven test. ``SafetyData`` is the persistent state the vote and timeout rules guard;
it must be durably written before the vote or timeout it permits leaves the replica.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ._codec import as_int, as_list, pack, unpack
from ._messages import Vote
from ._types import ChainId, Round

__all__ = ["CommitRule", "ProposeRule", "SafetyData", "TimeoutRule", "VoteRule"]

_ROUND_ZERO = Round(0)


@dataclass(frozen=True)
class SafetyData:
    """What a replica must never forget: the highest round it voted or timed out in, the
    highest QC round among blocks it voted for, and its last vote (to resend it verbatim)."""

    last_voted_round: Round = _ROUND_ZERO
    one_chain_round: Round = _ROUND_ZERO
    last_vote: Vote | None = None

    def after_vote(self, vote: Vote, qc_round: Round) -> SafetyData:
        """The state after voting ``vote`` for a block whose QC has round ``qc_round``."""
        return SafetyData(
            last_voted_round=vote.round,
            one_chain_round=max(self.one_chain_round, qc_round),
            last_vote=vote,
        )

    def after_timeout(self, round: Round) -> SafetyData:
        """The state after signing a timeout for ``round``."""
        return replace(self, last_voted_round=max(self.last_voted_round, round))

    def encode(self) -> bytes:
        """Canonical bytes for storage."""
        lv = None if self.last_vote is None else self.last_vote.to_wire()
        return pack([self.last_voted_round, self.one_chain_round, lv])

    @classmethod
    def decode(cls, data: bytes, chain_id: ChainId) -> SafetyData:
        """Strict inverse of ``encode``; raises DecodeError."""
        f = as_list(unpack(data, "safety"), "safety", length=3)
        lv: Any = f[2]
        return cls(
            Round(as_int(f[0], "safety.last_voted_round")),
            Round(as_int(f[1], "safety.one_chain_round")),
            None if lv is None else Vote.from_wire(lv, chain_id),
        )


@dataclass(frozen=True)
class VoteRule:
    """Vote for block B only if ``B.round > last_voted_round`` and either
    ``B.round == B.qc.round + 1`` or (``B.round == tc.round + 1`` and
    ``B.qc.round >= tc.max_hqc_round``)."""

    def allows(
        self,
        safety: SafetyData,
        block_round: Round,
        qc_round: Round,
        tc_round: Round | None,
        tc_max_hqc_round: Round | None,
    ) -> bool:
        """Whether voting is safe; ``tc_*`` are None when the proposal carries no TC."""
        if block_round <= safety.last_voted_round:
            return False
        if block_round == qc_round + 1:
            return True
        return (
            tc_round is not None
            and tc_max_hqc_round is not None
            and block_round == tc_round + 1
            and qc_round >= tc_max_hqc_round
        )


@dataclass(frozen=True)
class TimeoutRule:
    """Time out ``round`` only if ``round >= last_voted_round``, (``round == hqc.round + 1`` or
    ``round == tc.round + 1``) and ``hqc.round >= one_chain_round``."""

    def allows(
        self, safety: SafetyData, round: Round, hqc_round: Round, tc_round: Round | None
    ) -> bool:
        """Whether signing a timeout is safe; ``tc_round`` is the replica's highest TC round."""
        if round < safety.last_voted_round:
            return False
        if not (round == hqc_round + 1 or (tc_round is not None and round == tc_round + 1)):
            return False
        return hqc_round >= safety.one_chain_round


@dataclass(frozen=True)
class CommitRule:
    """Commit B when B <- QC <- B' <- QC with ``B'.round == B.round + 1``."""

    def commits(self, parent_round: Round, child_round: Round) -> bool:
        """Whether certifying a child of round ``child_round`` commits its parent."""
        return child_round == parent_round + 1


@dataclass(frozen=True)
class ProposeRule:
    """The leader of the current round proposes once, extending its highest QC; it attaches
    the TC for ``round - 1`` exactly when its highest QC is not from ``round - 1``."""

    def should_propose(
        self, is_leader: bool, round: Round, proposed_round: Round, has_work: bool
    ) -> bool:
        """Whether to propose now: leader, not yet proposed this round, something to order."""
        return is_leader and proposed_round < round and has_work

    def needs_tc(self, round: Round, hqc_round: Round) -> bool:
        """Whether the proposal for ``round`` must carry the TC for ``round - 1``."""
        return hqc_round + 1 != round
