"""Twins-style scenarios: one identity run by two nodes, with per-round network partitions.

A scenario is generated from a seed: which identity is twinned, and for each of the first
``rounds`` rounds a random split of the physical nodes into groups (messages of that round
only flow inside a group). Afterwards the network is whole, so the honest nodes must both
agree (safety) and commit every payload (liveness).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from .._events import PayloadSubmitted
from ._sim import Simulation

__all__ = ["TwinsResult", "TwinsScenario", "run_twins"]


@dataclass(frozen=True)
class TwinsScenario:
    """A reproducible Twins schedule."""

    seed: int
    n: int = 4
    rounds: int = 8
    payloads: int = 6
    twins: int = 1
    """How many identities get a twin (at most f for the safety claim to apply)."""
    heal_at: float = 5.0
    """Virtual time after which the per-round partitions stop applying (the network heals)."""
    broadcast_votes: bool = False
    """Run the replicas with ``Config.broadcast_votes``."""

    def partitions(self, names: list[str]) -> dict[int, list[set[str]]]:
        """Round -> groups of node names, drawn from the seed."""
        rng = random.Random(self.seed * 7919 + 1)
        out: dict[int, list[set[str]]] = {}
        for r in range(1, self.rounds + 1):
            k = rng.choice([1, 2, 2, 3])
            groups: list[set[str]] = [set() for _ in range(k)]
            for name in names:
                groups[rng.randrange(k)].add(name)
            out[r] = [g for g in groups if g]
        return out


@dataclass(frozen=True)
class TwinsResult:
    """What a scenario produced."""

    seed: int
    committed_height: int
    live: bool
    equivocations: int
    """Rounds in which the twins proposed two different blocks."""


def run_twins(scenario: TwinsScenario, *, timeout: float = 120.0) -> TwinsResult:
    """Run ``scenario``; raise AssertionError (naming the seed) if safety breaks.

    Liveness (every payload committed after the partitions end) is reported, and asserted
    by the tests, because with the network whole again it must hold.
    """
    rng = random.Random(scenario.seed)
    twinned = rng.sample(range(scenario.n), scenario.twins)
    sim = Simulation(
        scenario.n,
        scenario.seed,
        twins=twinned,
        delay=(0.001, 0.01),
        broadcast_votes=scenario.broadcast_votes,
    )
    sim.round_partitions = scenario.partitions([x.name for x in sim.nodes])
    sim.round_heal = scenario.heal_at
    sim.start()
    # Give each twin a payload of its own so the twins propose different blocks.
    for node in sim.nodes:
        if node.identity in twinned:
            node.handler.handle(PayloadSubmitted((b"twin-" + node.name.encode(),)), sim.now)
    for i in range(scenario.payloads):
        payload = b"p-%d-%d" % (scenario.seed, i)
        sim.at(0.05 * i, functools.partial(sim.submit, payload))
    sim.run_until(lambda: sim.now > scenario.heal_at, timeout)
    live = sim.run_until(sim.all_committed, timeout)
    sim.check_safety()
    height = max((len(x.log) for x in sim.honest), default=0)
    return TwinsResult(scenario.seed, height, live, sim.equivocations())
