"""Shared helpers for consensus tests: seeded workloads and the invariant check."""

from __future__ import annotations

import functools

from consensus.testing import Simulation


def submit_workload(sim: Simulation, count: int, *, every: float = 0.01, tag: str = "p") -> None:
    """Schedule ``count`` distinct payloads, one every ``every`` seconds, to every node.

    They count as submitted at once, so ``all_committed`` waits for all of them.
    """
    for i in range(count):
        payload = f"{tag}-{sim.seed}-{i}".encode()
        sim.submitted.append(payload)
        sim.at(sim.now + every * i, functools.partial(sim.submit, payload))


def run_and_check(sim: Simulation, *, timeout: float = 120.0, after: float = 0.0) -> None:
    """Run until every honest node committed every payload; then check safety invariants."""
    ok = sim.run_until(lambda: sim.now >= after and sim.all_committed(), timeout)
    sim.check_safety()
    heights = {x.name: len(x.log) for x in sim.nodes}
    assert ok, f"not every payload committed (seed={sim.seed}, now={sim.now:.1f}, {heights})"
