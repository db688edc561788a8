"""With f byzantine replicas (built by wrapping honest ones) safety holds and, after GST,
honest replicas commit every honest payload."""

from __future__ import annotations

import pytest

from consensus.testing import (
    BadQcLeader,
    Byzantine,
    Equivocator,
    Replayer,
    Silent,
    Simulation,
    VoteForger,
)

from .conftest import run_and_check, submit_workload

WRAPPERS: dict[str, type[Byzantine]] = {
    "equivocating-leader": Equivocator,
    "silent": Silent,
    "forged-and-duplicate-votes": VoteForger,
    "bad-qc-leader": BadQcLeader,
    "replayer": Replayer,
}


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
@pytest.mark.parametrize(("n", "seed"), [(4, 1), (7, 2)])
def test_f_byzantine(kind: str, n: int, seed: int) -> None:
    f = (n - 1) // 3
    byz = {i: WRAPPERS[kind] for i in range(f)}
    sim = Simulation(n, seed, byzantine=byz, drop=0.05, gst=2.0)
    sim.start()
    submit_workload(sim, 40, every=0.05)
    run_and_check(sim, after=2.0)
    honest = sim.honest
    if kind in ("forged-and-duplicate-votes", "bad-qc-leader"):
        assert sum(x.replica.stats.invalid_messages for x in honest) > 0


def test_equivocation_is_seen_by_no_honest_double_vote() -> None:
    sim = Simulation(4, 5, byzantine={1: Equivocator})
    sim.start()
    submit_workload(sim, 30)
    run_and_check(sim)  # the simulator asserts no honest replica voted twice in a round


@pytest.mark.parametrize("seed", range(2))
def test_amnesia_replica(seed: int) -> None:
    # A replica that loses its safety data and rejoins from scratch (byzantine by definition).
    # The identity wrapper marks node 3 byzantine: losing safety data is not honest.
    sim = Simulation(4, seed, byzantine={3: Byzantine})
    sim.start()
    submit_workload(sim, 50, every=0.03)
    victim = sim.node("n3")
    for t in (0.5, 1.0, 1.5):
        sim.at(t, lambda: sim.restart(victim, amnesia=True))
    run_and_check(sim, after=1.5)
