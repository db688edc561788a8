"""The pacemaker's timing policy: how long to wait in a round before timing out."""

from __future__ import annotations

from dataclasses import dataclass

from ._types import Round

__all__ = ["Pacemaker"]


@dataclass(frozen=True)
class Pacemaker:
    """Round timeouts that double with every round since the last commit, up to a cap.

    ``base`` applies to the round right after a commit; each further round without a commit
    multiplies it by ``backoff``, bounded by ``max_timeout``. Times are seconds; the pacemaker
    never reads a clock (the driver owns time).
    """

    base: float = 1.0
    backoff: float = 2.0
    max_timeout: float = 30.0

    def timeout(self, round: Round, last_commit_round: Round) -> float:
        """Seconds to wait in ``round`` given the round of the QC that last committed."""
        behind = max(0, round - last_commit_round - 1)
        # min() before the power keeps huge gaps from overflowing.
        exponent = min(behind, 64)
        return min(self.max_timeout, self.base * self.backoff**exponent)
