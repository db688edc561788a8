"""Twins: one identity run by two nodes, per-round partitions; a bounded seeded set in CI.

The larger sweep is ``scripts/twins_sweep.py``.
"""

from __future__ import annotations

import pytest

from consensus.testing import TwinsScenario, run_twins

SEEDS = range(64)


@pytest.mark.parametrize("seed", SEEDS)
def test_twins_scenario(seed: int) -> None:
    result = run_twins(TwinsScenario(seed=seed))
    assert result.live, f"honest nodes did not commit every payload after healing (seed={seed})"


@pytest.mark.parametrize("seed", range(8))
def test_twins_with_f_twinned_identities_at_n7(seed: int) -> None:
    result = run_twins(TwinsScenario(seed=seed, n=7, twins=2))
    assert result.live, f"no liveness after healing (seed={seed})"
