"""Scheduled key deletions (part of the replicated state, pure): a heap by due time."""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from ._keys import KeyRecord, KeyState, VersionState


class DeletionSchedule:
    """Keys pending deletion by due time (log ms). An entry whose key is no longer pending
    deletion with that due time (cancelled) is dropped when it comes up."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, record: KeyRecord, due_ms: int) -> None:
        """Make ``record`` pending deletion at ``due_ms``."""
        record.state = KeyState.PENDING_DELETION
        record.deletion_due_ms = due_ms
        heapq.heappush(self._heap, (due_ms, record.key_id))

    def cancel(self, record: KeyRecord) -> None:
        """Take ``record`` off the schedule (its state is the caller's to set)."""
        record.deletion_due_ms = None
        self._heap = [d for d in self._heap if d[1] != record.key_id]
        heapq.heapify(self._heap)

    def next_due(self, keys: Mapping[str, KeyRecord]) -> int | None:
        """When the next scheduled deletion comes due, if any."""
        while self._heap:
            due, key_id = self._heap[0]
            record = keys.get(key_id)
            if record is not None and record.deletion_due_ms == due:
                return due
            heapq.heappop(self._heap)  # cancelled: drop it
        return None

    def pop_due(self, keys: Mapping[str, KeyRecord], now_ms: int) -> list[KeyRecord]:
        """Mark every key due by ``now_ms`` deleted (with its versions); return them in order."""
        out = []
        while (due := self.next_due(keys)) is not None and due <= now_ms:
            _, key_id = heapq.heappop(self._heap)
            record = keys[key_id]
            record.state = KeyState.DELETED
            record.deletion_due_ms = None
            record.deleted_ms = now_ms
            for version in record.versions:
                version.state = VersionState.DELETED
            out.append(record)
        return out
