"""Payloads waiting to be proposed: de-duplicated, bounded, handed out in size-limited batches."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .errors import MempoolFull, PayloadTooLarge

__all__ = ["CommittedWindow", "Mempool", "MempoolStats", "payload_digest"]


def payload_digest(payload: bytes) -> bytes:
    """The identity of a payload for de-duplication: SHA-256 of its bytes."""
    return hashlib.sha256(payload).digest()


@dataclass(frozen=True)
class MempoolStats:
    """A snapshot for status pages."""

    pending: int
    pending_bytes: int
    rejected_full: int
    duplicates: int


class Mempool:
    """Pending payloads in arrival order, keyed by digest.

    ``add`` refuses duplicates (returns False) and raises ``MempoolFull`` at the size bound:
    that exception is the back-pressure signal for whoever submits. ``batch`` hands out the
    oldest payloads up to a count and a byte limit, skipping digests already in flight in
    uncommitted blocks; payloads leave only when ``remove`` is called on commit.
    """

    def __init__(self, max_payloads: int, max_bytes: int, max_payload_bytes: int) -> None:
        self.max_payloads = max_payloads
        self.max_bytes = max_bytes
        self.max_payload_bytes = max_payload_bytes
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self._rejected_full = 0
        self._duplicates = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, digest: object) -> bool:
        return digest in self._items

    def add(self, payload: bytes, digest: bytes) -> bool:
        """Queue ``payload``; False if already queued.

        Raises:
            PayloadTooLarge: the payload exceeds ``max_payload_bytes``.
            MempoolFull: the count or byte bound is reached.
        """
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(len(payload), self.max_payload_bytes)
        if digest in self._items:
            self._duplicates += 1
            return False
        if len(self._items) >= self.max_payloads or self._bytes + len(payload) > self.max_bytes:
            self._rejected_full += 1
            raise MempoolFull(len(self._items), self.max_payloads)
        self._items[digest] = payload
        self._bytes += len(payload)
        return True

    def batch(self, max_count: int, max_bytes: int, exclude: Collection[bytes]) -> list[bytes]:
        """The oldest payloads not in ``exclude``, at most ``max_count`` and ``max_bytes``."""
        out: list[bytes] = []
        size = 0
        for digest, payload in self._items.items():
            if len(out) >= max_count:
                break
            if digest in exclude:
                continue
            if size + len(payload) > max_bytes:
                break
            out.append(payload)
            size += len(payload)
        return out

    def has_work(self, exclude: Collection[bytes]) -> bool:
        """Whether some payload is not already in flight."""
        if len(self._items) > len(exclude):
            return True
        return any(d not in exclude for d in self._items)

    def remove(self, digests: Iterable[bytes]) -> None:
        """Drop committed payloads."""
        items = self._items
        for d in digests:
            p = items.pop(d, None)
            if p is not None:
                self._bytes -= len(p)

    def stats(self) -> MempoolStats:
        """Counters for status pages."""
        return MempoolStats(len(self._items), self._bytes, self._rejected_full, self._duplicates)


class CommittedWindow:
    """Digests of the last ``capacity`` delivered payloads, in commit order.

    It is a deterministic function of the committed log, so every honest replica filters
    the same duplicates out of a committed block and delivers the same payloads.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, digest: object) -> bool:
        return digest in self._order

    def __len__(self) -> int:
        return len(self._order)

    def add(self, digest: bytes) -> None:
        """Record a delivered payload, evicting the oldest beyond capacity."""
        self._order[digest] = None
        if len(self._order) > self.capacity:
            self._order.popitem(last=False)
