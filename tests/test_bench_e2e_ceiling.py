"""The benchmark's crypto ceiling runs end to end (a tiny run: its figures are not checked)."""

from __future__ import annotations

from ._scripts import load_script


def test_the_ceiling_measures_every_step_and_the_whole_pipeline() -> None:
    ceiling = load_script("_bench_e2e_ceiling").measure_ceiling(reps=2, pipeline_n=2)
    names = [name for name, _, _ in ceiling.steps]
    assert "client: verify partials + combine + DEM" in names
    assert all(seconds > 0 for _, _, seconds in ceiling.steps)
    assert ceiling.pipeline_s > 0 and ceiling.crypto_s > 0 and ceiling.profile_top
