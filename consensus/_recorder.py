"""A flight recorder: the last protocol events with monotonic timestamps, for latency forensics.

A replica's latency is spread over hops between processes (a proposal's transit, the vote's
fsync, the vote's transit, the next proposal); averages per process do not show which hop a
slow round lost its time in. With a recorder, every node keeps its recent events (message
kinds, rounds, heights, counts: never payload contents) stamped with ``time.monotonic_ns``,
which on one machine is a clock all processes share, so a tool can merge the nodes' records
into one timeline. Bounded: the oldest events go first.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["Event", "FlightRecorder"]

Event = tuple[int, str, tuple[int | str | None, ...]]
"""(monotonic nanoseconds, event name, fields)."""


class FlightRecorder:
    """The last ``capacity`` events, in the order recorded.

    Raises:
        ValueError: ``capacity`` is not positive.
    """

    def __init__(self, capacity: int, clock: Callable[[], int] = time.monotonic_ns) -> None:
        if capacity <= 0:
            raise ValueError("a flight recorder needs room for at least one event")
        self.capacity = capacity
        self._clock = clock
        self._events: deque[Event] = deque(maxlen=capacity)
        self.recorded = 0
        """Events recorded since start (more than ``capacity`` means some were overwritten)."""

    def record(self, event: str, *fields: int | str | None) -> None:
        """Stamp and keep one event (fields: ids, rounds, heights, counts; nothing secret)."""
        self._events.append((self._clock(), event, fields))
        self.recorded += 1

    def events(self, since_ns: int = 0, limit: int | None = None) -> list[Event]:
        """Events stamped at or after ``since_ns``, oldest first; the newest ``limit`` of them."""
        out = [e for e in self._events if e[0] >= since_ns]
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out

    def __len__(self) -> int:
        return len(self._events)
