"""Testing tier: a seeded in-memory network simulator, byzantine wrappers and Twins scenarios.

Everything here is deterministic given a seed, so a failing schedule can be replayed exactly.
"""

from __future__ import annotations

from ._byzantine import (
    BadQcLeader as BadQcLeader,
)
from ._byzantine import (
    Byzantine as Byzantine,
)
from ._byzantine import (
    Equivocator as Equivocator,
)
from ._byzantine import (
    Replayer as Replayer,
)
from ._byzantine import (
    Silent as Silent,
)
from ._byzantine import (
    VoteForger as VoteForger,
)
from ._sim import SIM_CHAIN_ID as SIM_CHAIN_ID
from ._sim import SimNode as SimNode
from ._sim import Simulation as Simulation
from ._sim import make_committee as make_committee
from ._twins import TwinsScenario as TwinsScenario
from ._twins import run_twins as run_twins

__all__ = [
    "SIM_CHAIN_ID",
    "BadQcLeader",
    "Byzantine",
    "Equivocator",
    "Replayer",
    "Silent",
    "SimNode",
    "Simulation",
    "TwinsScenario",
    "VoteForger",
    "make_committee",
    "run_twins",
]
