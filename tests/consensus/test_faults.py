"""Honest replicas under delays, drops, reordering, partitions that heal, crashes and restarts."""

from __future__ import annotations

import pytest

from consensus import SQLiteStore
from consensus.testing import SIM_CHAIN_ID, Simulation

from .conftest import run_and_check, submit_workload


@pytest.mark.parametrize("seed", range(3))
def test_lossy_network_before_gst(seed: int) -> None:
    sim = Simulation(4, seed, drop=0.2, gst=3.0, delay=(0.001, 0.05))
    sim.start()
    submit_workload(sim, 60, every=0.05)
    run_and_check(sim, after=3.0)


@pytest.mark.parametrize("seed", range(3))
def test_partition_heals(seed: int) -> None:
    sim = Simulation(7, seed)
    sim.partition([{"n0", "n1", "n2"}, {"n3", "n4", "n5", "n6"}], start=0.2, end=3.0)
    sim.start()
    submit_workload(sim, 50, every=0.05)
    run_and_check(sim, after=3.0)


@pytest.mark.parametrize("seed", range(2))
def test_minority_partition_catches_up_by_sync(seed: int) -> None:
    # n0 is cut off for long enough that the others commit many blocks without it.
    sim = Simulation(4, seed, sync_batch=4)
    sim.partition([{"n0"}, {"n1", "n2", "n3"}], start=0.0, end=4.0)
    sim.start()
    submit_workload(sim, 80, every=0.04)
    run_and_check(sim, after=4.0)
    assert sim.node("n0").replica.stats.sync_blocks_received > 0


@pytest.mark.parametrize("seed", range(2))
def test_crash_and_restart_from_store(seed: int) -> None:
    sim = Simulation(4, seed)
    sim.start()
    submit_workload(sim, 60, every=0.03)
    victim = sim.node("n2")
    sim.at(0.5, lambda: sim.crash(victim))
    sim.at(2.0, lambda: sim.restart(victim))
    sim.at(2.5, lambda: sim.crash(sim.node("n3")))
    sim.at(2.6, lambda: sim.restart(sim.node("n3")))
    run_and_check(sim, after=2.6)


def test_restart_from_sqlite(tmp_path: object) -> None:
    import pathlib

    assert isinstance(tmp_path, pathlib.Path)
    sim = Simulation(
        4, 7, store_factory=lambda name: SQLiteStore(tmp_path / f"{name}.db", SIM_CHAIN_ID)
    )
    sim.start()
    submit_workload(sim, 30, every=0.03)
    victim = sim.node("n1")
    sim.at(0.4, lambda: sim.crash(victim))
    sim.at(1.5, lambda: sim.restart(victim))
    run_and_check(sim, after=1.5)
    # The restarted replica reloaded its safety data rather than starting over.
    assert victim.replica.safety.last_voted_round >= 1
    assert victim.replica.committed_height == len(victim.log)


def test_all_crash_and_restart_keeps_committed_log(tmp_path: object) -> None:
    import pathlib

    assert isinstance(tmp_path, pathlib.Path)
    sim = Simulation(
        4, 3, store_factory=lambda name: SQLiteStore(tmp_path / f"{name}.db", SIM_CHAIN_ID)
    )
    sim.start()
    submit_workload(sim, 20, every=0.02, tag="a")
    assert sim.run_until(sim.all_committed, 30)
    before = [len(x.log) for x in sim.nodes]
    for x in sim.nodes:
        sim.crash(x)
    for x in sim.nodes:
        sim.restart(x)
    assert [x.replica.committed_height for x in sim.nodes] == before
    submit_workload(sim, 20, every=0.02, tag="b")
    run_and_check(sim)
