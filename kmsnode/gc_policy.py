"""The garbage collector's policy for a long-running node: freeze the startup heap, time pauses.

A node starts with about 100,000 GC-tracked objects (modules, classes and functions of trio,
py-libp2p, cryptography...) that live as long as the process. Every full (generation 2)
collection walked all of them again: measured on the 4-node testnet at 50 decrypts/s, each
full collection stopped a node's event loop for 60-150 ms, and the four nodes, allocating
alike, collected within a few ms of each other, so the log stalled for all of them at once.
``freeze_startup_heap`` moves what exists once the node is up into the permanent generation
(``gc.freeze``), which the collector never walks; full collections then took 12-16 ms on the
same run. Cycles created later are collected as before.

``PauseMeter`` counts collections and their pauses per generation for the node's metrics, so
an operator sees a regression (as Go's ``go_gc_duration_seconds`` shows one).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PauseMeter", "freeze_startup_heap"]


def freeze_startup_heap() -> int:
    """Collect once, then exempt every object alive now from later collections; returns how
    many objects are frozen. Call it once the node has finished starting."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@dataclass
class PauseMeter:
    """Collections and stop-the-world pause time per generation, from ``gc.callbacks``."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    pause_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _started: float = 0.0

    def install(self) -> PauseMeter:
        """Start observing this process's collections (once); returns self."""
        if self._observe not in gc.callbacks:
            gc.callbacks.append(self._observe)
        return self

    def uninstall(self) -> None:
        """Stop observing."""
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info.get("generation")
        if not isinstance(generation, int) or not 0 <= generation <= 2:
            return
        pause = time.perf_counter() - self._started
        self.collections[generation] += 1
        self.pause_seconds[generation] += pause
        self.longest_seconds[generation] = max(self.longest_seconds[generation], pause)

    def snapshot(self) -> dict[str, Any]:
        """Counts, total and longest pause per generation, and the frozen objects' count."""
        return {
            "frozen_objects": gc.get_freeze_count(),
            "collections": list(self.collections),
            "pause_seconds": [round(s, 6) for s in self.pause_seconds],
            "longest_pause_seconds": [round(s, 6) for s in self.longest_seconds],
        }
