"""End-to-end runs of honest replicas in the seeded simulator."""

from __future__ import annotations

import pytest

from consensus.testing import Simulation

from .conftest import submit_workload


@pytest.mark.parametrize("n", [1, 4, 7])
@pytest.mark.parametrize("seed", [1, 2])
def test_honest_replicas_commit_every_payload(n: int, seed: int) -> None:
    sim = Simulation(n, seed)
    sim.start()
    submit_workload(sim, 40)
    assert sim.run_until(lambda: sim.now > 0.5 and sim.all_committed(), 60), f"seed={seed}"
    sim.check_safety()
    assert len(sim.committed_payloads()) == 40
