"""Persistent replica state: safety data, blocks, certificates and the committed log.

``Store`` is the interface the drivers use; ``SQLiteStore`` is the real one (WAL journal; a
``persist`` that carries safety data is fsync'd before it returns, and so, the WAL being one
sequential file, is everything written before it), ``MemoryStore`` keeps
the same data in dictionaries for simulations (its "disk" survives a simulated crash as long
as the test keeps the object).
"""

from __future__ import annotations

import bisect
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._codec import pack, unpack
from ._events import CommittedBlock, Persist
from ._messages import Block, QuorumCert, TimeoutCert
from ._rules import SafetyData
from ._types import ChainId, Height
from .errors import ConsensusError, StorageError

__all__ = ["SYNC_BUCKETS", "MemoryStore", "SQLiteStore", "Store", "StoredState", "SyncTimings"]

SYNC_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024)
"""Upper bounds (seconds) of the fsync-duration histogram, as etcd buckets its WAL fsyncs."""


@dataclass
class SyncTimings:
    """How long the fsync'd persists took: what every vote and timeout waits for, so a slow
    disk shows here first. A histogram over ``SYNC_BUCKETS`` with count and sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(SYNC_BUCKETS) + 1))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        """Record one fsync'd persist that took ``seconds``."""
        self.counts[bisect.bisect_left(SYNC_BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def snapshot(self) -> dict[str, Any]:
        """``{"buckets": [[upper bound, cumulative count], ...], "count", "sum"}`` in
        Prometheus's terms (finite bounds only: ``count`` is the ``+Inf`` bucket), so that it
        stays plain JSON."""
        cumulative, running = [], 0
        for bound, n in zip(SYNC_BUCKETS, self.counts, strict=False):
            running += n
            cumulative.append([bound, running])
        return {"buckets": cumulative, "count": self.count, "sum": self.total}

    @staticmethod
    def quantile(buckets: Sequence[Sequence[float]], count: int, q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` (``inf`` above the last
        bound, ``nan`` when ``count`` is 0): the quantile is at most this."""
        if count <= 0:
            return math.nan
        for bound, cumulative in buckets:
            if cumulative >= q * count:
                return bound
        return math.inf


@dataclass
class StoredState:
    """Everything a replica reloads on restart."""

    safety: SafetyData = field(default_factory=SafetyData)
    high_qc: QuorumCert | None = None
    high_tc: TimeoutCert | None = None
    root: tuple[Block, QuorumCert] | None = None
    """The last committed block and the QC that certifies it (None: genesis)."""
    blocks: list[Block] = field(default_factory=list)
    """Stored blocks above the root (certified or not)."""
    recent_delivered: list[tuple[bytes, ...]] = field(default_factory=list)
    """Delivered payloads of the last committed blocks, oldest block first (de-duplication):
    the newest blocks totalling at most the window, and at least the newest one."""
    witness: tuple[Block, QuorumCert] | None = None
    """The certified child proving the root committed (to serve catch-up)."""


class Store(Protocol):
    """Durable storage for one replica."""

    def load(self, window: int) -> StoredState:
        """The state to restart from (empty state for a fresh store)."""
        ...

    def persist(self, p: Persist) -> None:
        """Apply ``p`` atomically; durably before returning when ``p.must_sync``."""
        ...

    def committed_range(self, from_height: Height, limit: int) -> list[tuple[Block, QuorumCert]]:
        """Committed blocks from ``from_height`` (ascending) with the QC certifying each."""
        ...

    def committed_log(self, from_height: Height, limit: int) -> list[CommittedBlock]:
        """The committed log from ``from_height`` as the application received it."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


def _delivered(block: Block, dropped: Sequence[int]) -> tuple[bytes, ...]:
    if not dropped:
        return block.payloads
    skip = set(dropped)
    return tuple(p for i, p in enumerate(block.payloads) if i not in skip)


def _entry(block: Block, qc: QuorumCert, dropped: Sequence[int]) -> CommittedBlock:
    return CommittedBlock(
        block.height,
        block.round,
        block.id,
        _delivered(block, dropped),
        qc,
        block.timestamp_ms,
        block,
        tuple(dropped),
    )


def _take_window(
    newest_first: Iterator[tuple[Block, Sequence[int]]], window: int
) -> list[tuple[bytes, ...]]:
    out: list[tuple[bytes, ...]] = []
    count = 0
    for block, dropped in newest_first:
        d = _delivered(block, dropped)
        if out and count + len(d) > window:
            break
        out.append(d)
        count += len(d)
    out.reverse()
    return out


class MemoryStore:
    """A ``Store`` in dictionaries, for the simulator."""

    def __init__(self) -> None:
        self.safety = SafetyData()
        self.high_qc: QuorumCert | None = None
        self.high_tc: TimeoutCert | None = None
        self.blocks: dict[bytes, Block] = {}
        self.committed: list[tuple[Block, QuorumCert, tuple[int, ...]]] = []
        self.witness: tuple[Block, QuorumCert] | None = None
        self.writes = 0

    def load(self, window: int) -> StoredState:
        """The state to restart from."""
        root = None
        root_height = 0
        if self.committed:
            b, qc, _ = self.committed[-1]
            root = (b, qc)
            root_height = b.height
        recent = _take_window(((b, d) for b, _, d in reversed(self.committed)), window)
        return StoredState(
            safety=self.safety,
            high_qc=self.high_qc,
            high_tc=self.high_tc,
            root=root,
            blocks=[b for b in self.blocks.values() if b.height > root_height],
            recent_delivered=recent,
            witness=self.witness,
        )

    def persist(self, p: Persist) -> None:
        """Apply ``p``."""
        self.writes += 1
        for b in p.blocks:
            self.blocks.setdefault(b.id, b)
        if p.safety is not None:
            self.safety = p.safety
        if p.high_qc is not None:
            self.high_qc = p.high_qc
        if p.high_tc is not None:
            self.high_tc = p.high_tc
        if p.witness is not None:
            self.witness = p.witness
        for c in p.commits:
            if c.height != len(self.committed) + 1:
                raise StorageError(
                    f"commit at height {c.height} does not extend the log at {len(self.committed)}"
                )
            self.committed.append((c.block, c.qc, c.dropped))

    def committed_range(self, from_height: Height, limit: int) -> list[tuple[Block, QuorumCert]]:
        """Committed blocks from ``from_height`` with their certifying QCs."""
        return [(b, qc) for b, qc, _ in self.committed[from_height - 1 : from_height - 1 + limit]]

    def committed_log(self, from_height: Height, limit: int) -> list[CommittedBlock]:
        """The committed log from ``from_height``."""
        rows = self.committed[from_height - 1 : from_height - 1 + limit]
        return [_entry(b, qc, dropped) for b, qc, dropped in rows]

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    id BLOB PRIMARY KEY, height INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_height ON blocks(height);
CREATE TABLE IF NOT EXISTS committed (
    height INTEGER PRIMARY KEY, block_id BLOB NOT NULL, qc BLOB NOT NULL, dropped BLOB NOT NULL
);
"""


_PAGE_SIZE = 4096
_CHECKPOINT_BYTES = 1 << 20


class SQLiteStore:
    """A ``Store`` in one SQLite file (WAL; fsync on every ``persist`` that ``must_sync``).

    The other writes (blocks, QCs, the committed log) reach the disk with the next synced
    one or a checkpoint: a process crash loses none of them (they are in the OS's cache), and
    a power loss can lose only such a tail, which the replica fetches again from its peers.

    Raises:
        StorageError: the file belongs to another chain or holds a corrupt record.
    """

    def __init__(self, path: str | os.PathLike[str], chain_id: ChainId) -> None:
        self.chain_id = chain_id
        # The driver may run persist() in a worker thread, one call at a time.
        self._db = sqlite3.connect(os.fspath(path), isolation_level=None, check_same_thread=False)
        # Small pages: every commit writes each page it touches whole into the WAL and
        # checksums it, and the fsync'd ones flush it. With 64 KiB pages an fsync'd persist
        # cost 0.9 ms (0.5 ms CPU), with 4 KiB 0.6 ms (0.35 ms CPU): four replicas, one disk.
        # (Takes effect only when the file is created; older stores keep their page size.)
        self._db.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._synchronous = True
        self.sync_timings = SyncTimings()
        # Checkpoint (which blocks the writer while it copies pages and fsyncs the database)
        # every ~1 MiB of WAL: measured, a WAL that stays small (overwritten in place) fsyncs
        # faster than one that grows.
        page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_BYTES // page_size}")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT v FROM meta WHERE k='chain_id'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('chain_id', ?)", (chain_id,))
        elif bytes(row[0]) != chain_id:
            raise StorageError(f"{path} holds state for another chain; use a fresh data directory")

    def _meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _block(self, block_id: bytes) -> Block:
        row = self._db.execute("SELECT data FROM blocks WHERE id=?", (block_id,)).fetchone()
        if row is None:
            raise StorageError(f"committed block {block_id.hex()} missing from the store")
        return Block.decode(bytes(row[0]), self.chain_id)

    def load(self, window: int) -> StoredState:
        """The state to restart from."""
        try:
            st = StoredState()
            raw = self._meta("safety")
            if raw is not None:
                st.safety = SafetyData.decode(raw, self.chain_id)
            raw = self._meta("high_qc")
            if raw is not None:
                st.high_qc = QuorumCert.decode(raw)
            raw = self._meta("high_tc")
            if raw is not None:
                st.high_tc = TimeoutCert.from_wire(unpack(raw, "high_tc"))
            root_height = 0
            rows = self._db.execute(
                "SELECT height, block_id, qc, dropped FROM committed ORDER BY height DESC"
            )

            def newest_first() -> Iterator[tuple[Block, Sequence[int]]]:
                nonlocal root_height
                for height, block_id, qc_raw, dropped_raw in rows:
                    block = self._block(bytes(block_id))
                    if st.root is None:
                        st.root = (block, QuorumCert.decode(bytes(qc_raw)))
                        root_height = height
                    yield block, unpack(bytes(dropped_raw), "dropped")

            st.recent_delivered = _take_window(newest_first(), window)
            raw = self._meta("witness")
            if raw is not None:
                wb, wq = unpack(raw, "witness")
                st.witness = (
                    Block.from_wire(wb, self.chain_id),
                    QuorumCert.from_wire(wq),
                )
            st.blocks = [
                Block.decode(bytes(r[0]), self.chain_id)
                for r in self._db.execute(
                    "SELECT data FROM blocks WHERE height > ?", (root_height,)
                )
            ]
            return st
        except ConsensusError as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"corrupt consensus store: {exc}") from exc

    def persist(self, p: Persist) -> None:
        """Apply ``p`` in one transaction, fsync'd when ``p.must_sync`` (and timed then)."""
        if not p.must_sync:
            self._transaction(p)
            return
        start = time.perf_counter()
        try:
            self._transaction(p)
        finally:
            self.sync_timings.observe(time.perf_counter() - start)

    def _transaction(self, p: Persist) -> None:
        db = self._db
        if p.must_sync != self._synchronous:
            # Per-connection and outside any transaction; WAL mode with NORMAL skips the
            # fsync at commit (a measured 1-2.5 ms each with four replicas on one disk).
            db.execute(f"PRAGMA synchronous={'FULL' if p.must_sync else 'NORMAL'}")
            self._synchronous = p.must_sync
        db.execute("BEGIN IMMEDIATE")
        try:
            if p.blocks:
                db.executemany(
                    "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?)",
                    [(b.id, b.height, b.encode()) for b in p.blocks],
                )
            if p.safety is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('safety', ?)", (p.safety.encode(),))
            if p.high_qc is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('high_qc', ?)", (p.high_qc.encode(),)
                )
            if p.high_tc is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('high_tc', ?)",
                    (pack(p.high_tc.to_wire()),),
                )
            if p.witness is not None:
                w = pack([p.witness[0].to_wire(), p.witness[1].to_wire()])
                db.execute("INSERT OR REPLACE INTO meta VALUES ('witness', ?)", (w,))
            for c in p.commits:
                known = db.execute("SELECT 1 FROM blocks WHERE id=?", (c.block_id,)).fetchone()
                if known is None:
                    db.execute(
                        "INSERT INTO blocks VALUES (?, ?, ?)",
                        (c.block_id, c.height, c.block.encode()),
                    )
                db.execute(
                    "INSERT INTO committed VALUES (?, ?, ?, ?)",
                    (c.height, c.block_id, c.qc.encode(), pack(list(c.dropped))),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def committed_range(self, from_height: Height, limit: int) -> list[tuple[Block, QuorumCert]]:
        """Committed blocks from ``from_height`` with their certifying QCs."""
        rows = self._db.execute(
            "SELECT c.qc, b.data FROM committed c JOIN blocks b ON b.id = c.block_id "
            "WHERE c.height >= ? ORDER BY c.height LIMIT ?",
            (from_height, limit),
        ).fetchall()
        return [
            (Block.decode(bytes(data), self.chain_id), QuorumCert.decode(bytes(qc)))
            for qc, data in rows
        ]

    def committed_log(self, from_height: Height, limit: int) -> list[CommittedBlock]:
        """The committed log from ``from_height``."""
        rows = self._db.execute(
            "SELECT c.qc, c.dropped, b.data FROM committed c JOIN blocks b ON b.id = c.block_id "
            "WHERE c.height >= ? ORDER BY c.height LIMIT ?",
            (from_height, limit),
        ).fetchall()
        return [
            _entry(
                Block.decode(bytes(data), self.chain_id),
                QuorumCert.decode(bytes(qc)),
                unpack(bytes(dropped), "dropped"),
            )
            for qc, dropped, data in rows
        ]

    def close(self) -> None:
        """Close the database."""
        self._db.close()
