"""Stores: round trips of everything a replica reloads, and refusals of unusable state."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from consensus import (
    SYNC_BUCKETS,
    ChainId,
    Config,
    MemoryStore,
    NodeId,
    SQLiteStore,
    Store,
    SyncTimings,
)
from consensus.errors import ConfigurationError, StorageError
from consensus.testing import SIM_CHAIN_ID, Simulation

from .conftest import submit_workload


def run_with(store_factory: object, seed: int = 11) -> Simulation:
    sim = Simulation(4, seed, store_factory=store_factory)  # type: ignore[arg-type]
    sim.start()
    submit_workload(sim, 25, every=0.02)
    assert sim.run_until(sim.all_committed, 60), f"seed={seed}"
    return sim


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_reload_matches_what_the_replica_had(kind: str, tmp_path: Path) -> None:
    def factory(name: str) -> Store:
        if kind == "memory":
            return MemoryStore()
        return SQLiteStore(tmp_path / f"{name}.db", SIM_CHAIN_ID)

    sim = run_with(factory)
    node = sim.node("n2")
    r = node.replica
    st = node.store.load(1_000_000)
    assert st.root is not None and st.root[0].id == r.root.id
    assert st.safety == r.safety
    assert st.witness is not None and st.witness[0].parent_id == r.root.id
    delivered = [p for block in st.recent_delivered for p in block]
    assert set(delivered) == {p for c in node.log for p in c.payloads}
    log = node.store.committed_log(1, 1000)  # type: ignore[arg-type]
    assert [c.block_id for c in log] == [c.block_id for c in node.log]
    assert [c.payloads for c in log] == [c.payloads for c in node.log]
    rows = node.store.committed_range(2, 3)  # type: ignore[arg-type]
    assert [b.height for b, _ in rows] == [2, 3, 4][: len(rows)]
    for b, qc in rows:
        assert qc.block_id == b.id


def test_window_reload_is_bounded_by_whole_blocks(tmp_path: Path) -> None:
    sim = run_with(lambda name: SQLiteStore(tmp_path / f"{name}.db", SIM_CHAIN_ID))
    node = sim.node("n0")
    st = node.store.load(3)
    assert st.recent_delivered, "at least the newest block is kept"
    sizes = [len(b) for b in st.recent_delivered]
    assert sum(sizes) <= 3 or len(sizes) == 1


def test_sqlite_store_refuses_another_chain(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "x.db", ChainId(b"one")).close()
    with pytest.raises(StorageError, match="another chain"):
        SQLiteStore(tmp_path / "x.db", ChainId(b"two"))


def test_sqlite_store_uses_small_pages_and_a_small_wal(tmp_path: Path) -> None:
    """Each commit writes every page it touches whole into the WAL (and the fsync'd ones
    flush it): a new store uses 4 KiB pages and checkpoints every ~1 MiB of WAL."""
    import sqlite3

    store = SQLiteStore(tmp_path / "x.db", ChainId(b"one"))
    pragma = store._db.execute
    assert pragma("PRAGMA page_size").fetchone()[0] == 4096
    assert pragma("PRAGMA wal_autocheckpoint").fetchone()[0] == 256
    assert pragma("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    # A store created with larger pages keeps them, and its checkpoint interval in bytes.
    old = sqlite3.connect(tmp_path / "old.db")
    old.execute("PRAGMA page_size=65536")
    old.execute("CREATE TABLE t (x)")
    old.close()
    store = SQLiteStore(tmp_path / "old.db", ChainId(b"one"))
    assert store._db.execute("PRAGMA page_size").fetchone()[0] == 65536
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 16
    store.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"me": NodeId(4)},
        {"public_keys": ()},
        {"max_block_payloads": 0},
        {"chain_id": ChainId(b"")},
    ],
)
def test_config_rejects_what_cannot_work(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "chain_id": ChainId(b"c"),
        "me": NodeId(0),
        "public_keys": tuple(bytes([i]) * 32 for i in range(4)),
    }
    base.update(kwargs)
    with pytest.raises(ConfigurationError):
        Config(**base)  # type: ignore[arg-type]


def test_sync_timings_histogram() -> None:
    t = SyncTimings()
    assert math.isnan(SyncTimings.quantile(t.snapshot()["buckets"], 0, 0.5))  # nothing yet
    for x in (0.0001, 0.0005, 0.0006, 0.003, 0.003, 0.003, 2.0):
        t.observe(x)
    snap = t.snapshot()
    assert snap["count"] == 7 and abs(snap["sum"] - 2.0102) < 1e-9
    cumulative = dict((b, c) for b, c in snap["buckets"])
    assert len(snap["buckets"]) == len(SYNC_BUCKETS)  # finite bounds only: plain JSON
    assert cumulative[0.0005] == 2  # a bound is inclusive, as Prometheus's "le"
    assert cumulative[0.001] == 3 and cumulative[0.004] == 6 and cumulative[1.024] == 6
    assert SyncTimings.quantile(snap["buckets"], 7, 0.5) == 0.004
    assert SyncTimings.quantile(snap["buckets"], 7, 0.25) == 0.0005  # 1.75 of 7: bucket 1
    assert SyncTimings.quantile(snap["buckets"], 7, 0.4) == 0.001  # 2.8 of 7: bucket 2
    assert SyncTimings.quantile(snap["buckets"], 7, 0.99) == math.inf


def test_sqlite_store_times_only_fsynced_persists(tmp_path: Path) -> None:
    sim = run_with(lambda name: SQLiteStore(tmp_path / f"{name}.db", SIM_CHAIN_ID))
    for name in ("n0", "n1"):
        store = sim.node(name).store
        assert isinstance(store, SQLiteStore)
        votes = sim.node(name).replica.stats.votes_sent + sim.node(name).replica.stats.timeouts_sent
        assert 0 < store.sync_timings.count <= votes
        assert store.sync_timings.total > 0
