"""The node's copy of the whole audit trail, on disk (SQLite); memory keeps only recent entries.

Every node holds the same trail (it is replicated state, rebuilt from the log on restart), so
this is a cache that serves the audit endpoint; its integrity comes from the hash chain.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from .state import AuditEntry


class AuditStore:
    """Audit entries by index in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = sqlite3.connect(os.fspath(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # rebuilt from the log if lost
        self._db.execute("CREATE TABLE IF NOT EXISTS audit (idx INTEGER PRIMARY KEY, entry TEXT)")

    def append(self, entries: Iterable[AuditEntry]) -> None:
        rows = [(e.index, json.dumps(e.to_json())) for e in entries]
        if rows:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO audit VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    def page(self, start: int, limit: int) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT entry FROM audit WHERE idx >= ? ORDER BY idx LIMIT ?", (start, limit)
        )
        return [json.loads(row[0]) for row in cur]

    def close(self) -> None:
        self._db.close()
