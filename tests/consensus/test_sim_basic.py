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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lone_payload_commits_on_every_node_without_waiting_for_a_timeout(seed: int) -> None:
    # The leader that forms the QC committing a block must tell the others (it announces the
    # 2-chain witness): otherwise only it learns of the commit and every other replica waits
    # for a round timeout (0.5 s here) or for the next payload.
    sim = Simulation(4, seed)
    sim.start()
    sim.run_for(0.2)
    sim.submit(b"lone payload")
    start = sim.now
    assert sim.run_until(lambda: sim.all_committed(), 5), f"seed={seed}"
    assert sim.now - start < 0.3, f"took {sim.now - start:.3f}s of simulated time (seed={seed})"
    sim.check_safety()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lone_payload_costs_two_blocks_and_one_announcement(seed: int) -> None:
    """An idle leader announces the commit (the 2-chain witness) instead of proposing an
    empty block for that alone: the log grows by the payload's block and its certifying
    child, and nothing is proposed after it."""
    sim = Simulation(4, seed)
    sim.start()
    sim.run_for(0.2)
    heights = {x.name: x.replica.root.height for x in sim.nodes}
    proposals = sum(x.replica.stats.proposals_sent for x in sim.nodes)
    sim.submit(b"lone payload")
    assert sim.run_until(lambda: sim.all_committed(), 5), f"seed={seed}"
    sim.run_for(0.1)  # would be long enough for a needless third proposal to go out
    assert sum(x.replica.stats.proposals_sent for x in sim.nodes) - proposals == 2, seed
    assert sum(x.replica.stats.commits_announced for x in sim.nodes) == 1, seed
    for x in sim.nodes:
        assert x.replica.root.height == heights[x.name] + 1, (seed, x.name)
        assert x.replica.root.payloads == (b"lone payload",), (seed, x.name)
    sim.check_safety()
