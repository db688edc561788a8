"""Payloads waiting to be proposed, and the window of recently delivered ones.

A payload's identity is its bytes: two byte-identical payloads are the same request. Keying
on the bytes (whose hash CPython computes in C and caches) keeps per-payload work in C set
and dict operations, which is what lets one process simulate 16 replicas at speed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from .errors import MempoolFull, PayloadTooLarge

__all__ = ["CommittedWindow", "Mempool", "MempoolStats"]


@dataclass(frozen=True)
class MempoolStats:
    """A snapshot for status pages."""

    pending: int
    pending_bytes: int
    rejected_full: int
    duplicates: int


class Mempool:
    """Pending payloads in arrival order.

    ``add`` refuses duplicates (returns False) and raises ``MempoolFull`` at the size bound:
    that exception is the back-pressure signal for whoever submits. ``batch`` hands out the
    oldest payloads up to a count and a byte limit, skipping payloads already in flight in
    uncommitted blocks; payloads leave only when ``remove`` is called on commit.
    """

    def __init__(self, max_payloads: int, max_bytes: int, max_payload_bytes: int) -> None:
        self.max_payloads = max_payloads
        self.max_bytes = max_bytes
        self.max_payload_bytes = max_payload_bytes
        self._items: dict[bytes, None] = {}
        self._bytes = 0
        self._rejected_full = 0
        self._duplicates = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, payload: object) -> bool:
        return payload in self._items

    def add(self, payload: bytes) -> bool:
        """Queue ``payload``; False if already queued.

        Raises:
            PayloadTooLarge: the payload exceeds ``max_payload_bytes``.
            MempoolFull: the count or byte bound is reached.
        """
        size = len(payload)
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(size, self.max_payload_bytes)
        if payload in self._items:
            self._duplicates += 1
            return False
        if len(self._items) >= self.max_payloads or self._bytes + size > self.max_bytes:
            self._rejected_full += 1
            raise MempoolFull(len(self._items), self.max_payloads)
        self._items[payload] = None
        self._bytes += size
        return True

    def add_many(
        self, payloads: Iterable[bytes], skip: Collection[bytes] | CommittedWindow = ()
    ) -> int:
        """Queue every new payload not in ``skip`` (e.g. recently committed) as far as the
        bounds allow; returns how many were added. Oversized payloads are refused silently
        (counted as rejected); bulk callers check sizes before.

        This is the fast path for batches: the per-payload work stays in C set operations.
        """
        items = self._items
        if isinstance(skip, CommittedWindow):
            skip = skip.members  # a plain set: membership tests stay in C
        unique = list(dict.fromkeys(payloads))
        if items.keys().isdisjoint(unique) and (not skip or _disjoint(skip, unique)):
            fresh = unique  # the usual case, checked without a Python-level loop
        else:
            fresh = [p for p in unique if p not in items and p not in skip]
        if fresh and max(map(len, fresh)) > self.max_payload_bytes:
            too_big = [p for p in fresh if len(p) > self.max_payload_bytes]
            big = set(too_big)
            fresh = [p for p in fresh if p not in big]
        room = max(0, self.max_payloads - len(items))
        if len(fresh) > room:
            self._rejected_full += len(fresh) - room
            fresh = fresh[:room]
        size = sum(map(len, fresh))
        while fresh and self._bytes + size > self.max_bytes:
            self._rejected_full += 1
            size -= len(fresh.pop())
        items.update(dict.fromkeys(fresh))
        self._bytes += size
        return len(fresh)

    def batch(self, max_count: int, max_bytes: int, exclude: Collection[bytes]) -> list[bytes]:
        """The oldest payloads not in ``exclude``, at most ``max_count`` and ``max_bytes``."""
        out: list[bytes] = []
        size = 0
        for payload in self._items:
            if len(out) >= max_count:
                break
            if payload in exclude:
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
        return any(p not in exclude for p in self._items)

    def remove(self, payloads: Iterable[bytes]) -> None:
        """Drop committed payloads (those we do not hold are ignored)."""
        if not self._items:
            return
        pop = self._items.pop
        # Values are None, so pop(p, 0) is None exactly when p was present.
        removed = [p for p in payloads if pop(p, 0) is None]
        self._bytes -= sum(map(len, removed))

    def stats(self) -> MempoolStats:
        """Counters for status pages."""
        return MempoolStats(len(self._items), self._bytes, self._rejected_full, self._duplicates)


def _disjoint(skip: Collection[bytes], payloads: list[bytes]) -> bool:
    if isinstance(skip, (set, frozenset)):
        return skip.isdisjoint(payloads)
    return not any(p in skip for p in payloads)


ENTRY_OVERHEAD = 100
"""Bytes of memory a payload costs the window beyond its own length (its bytes object header
and its set slot), counted in the byte bound so that many tiny payloads are bounded too."""


class CommittedWindow:
    """The payloads of the most recent committed blocks, at most ``capacity`` of them and
    ``max_bytes`` in all, ``ENTRY_OVERHEAD`` per payload included (but always the newest
    block), evicted a whole block at a time.

    It is a deterministic function of the committed log, so every honest replica filters the
    same duplicates out of a committed block and delivers the same payloads; a restarted
    replica rebuilds it from the store with ``restore``.
    """

    def __init__(self, capacity: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._set: set[bytes] = set()
        self._blocks: deque[tuple[bytes, ...]] = deque()
        self._count = 0
        self._bytes = 0

    def __contains__(self, payload: object) -> bool:
        return payload in self._set

    def __len__(self) -> int:
        return self._count

    @property
    def payload_bytes(self) -> int:
        """Bytes held as the ``max_bytes`` bound counts them (payloads + per-entry overhead)."""
        return self._bytes

    @property
    def members(self) -> set[bytes]:
        """The payloads in the window (read-only view for fast bulk membership tests)."""
        return self._set

    def filter(self, payloads: Sequence[bytes]) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
        """Split a committed block's payloads into (to deliver, indices of duplicates)."""
        if self._set.isdisjoint(payloads) and len(set(payloads)) == len(payloads):
            return tuple(payloads), ()
        seen: set[bytes] = set()
        keep: list[bytes] = []
        dropped: list[int] = []
        for i, p in enumerate(payloads):
            if p in self._set or p in seen:
                dropped.append(i)
            else:
                seen.add(p)
                keep.append(p)
        return tuple(keep), tuple(dropped)

    def add_block(self, delivered: tuple[bytes, ...]) -> None:
        """Record a committed block's delivered payloads, evicting the oldest blocks."""
        self._set.update(delivered)
        self._blocks.append(delivered)
        self._count += len(delivered)
        self._bytes += sum(map(len, delivered)) + ENTRY_OVERHEAD * len(delivered)
        # Bounded by count and by bytes: the window holds whole payloads, and a count alone
        # would let large payloads (DKG deals are kilobytes) grow it without limit.
        while (self._count > self.capacity or self._bytes > self.max_bytes) and len(
            self._blocks
        ) > 1:
            old = self._blocks.popleft()
            self._set.difference_update(old)
            self._count -= len(old)
            self._bytes -= sum(map(len, old)) + ENTRY_OVERHEAD * len(old)

    def restore(self, blocks: Sequence[tuple[bytes, ...]]) -> None:
        """Rebuild from delivered payloads of the last committed blocks, oldest first."""
        for delivered in blocks:
            self.add_block(delivered)
