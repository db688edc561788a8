"""Leader election: who proposes in a round, behind a small interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ._types import NodeId, Round

__all__ = ["LeaderElection", "RoundRobin"]


class LeaderElection(Protocol):
    """Maps a round to its leader; must be a deterministic function of the round."""

    def leader(self, round: Round) -> NodeId:
        """The replica that proposes in ``round``."""
        ...


@dataclass(frozen=True)
class RoundRobin:
    """Leaders rotate through the committee in id order: ``round mod n``."""

    n: int

    def leader(self, round: Round) -> NodeId:
        """The replica that proposes in ``round``."""
        return NodeId(round % self.n)
