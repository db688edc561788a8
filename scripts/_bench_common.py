"""Helpers the benchmark scripts share: a progress bar, stderr logging, a process's memory."""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Any

from kmsnode.memtrace import process_memory

try:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
except ImportError:  # the bench extra is not installed: a plain stderr line instead
    Progress = None  # type: ignore[assignment,misc]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- progress -------------------------------------------------------------------------------------
class Bar:
    """A time-based progress bar (rich if installed, else a stderr line)."""

    def __init__(self, label: str, seconds: float) -> None:
        self.label, self.seconds = label, seconds
        self.t0 = time.monotonic()
        self._last = 0.0
        self._progress: Any = None

    def __enter__(self) -> Bar:
        if Progress is not None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.seconds, info="")
        return self

    def update(self, info: str) -> None:
        elapsed = min(self.seconds, time.monotonic() - self.t0)
        if self._progress is not None:
            self._progress.update(self._task, completed=elapsed, info=info)
        elif time.monotonic() - self._last > 1.0:
            self._last = time.monotonic()
            print(
                f"\r{self.label}: {elapsed:5.1f}/{self.seconds:.0f}s {info}    ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.seconds)
            self._progress.stop()
        else:
            print(file=sys.stderr)


def proc_mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB (nan when it is gone)."""
    kib = process_memory(pid)
    return (kib[0] / 1024, kib[1] / 1024) if kib else (math.nan, math.nan)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y against x (nan for fewer than two distinct x)."""
    if len(points) < 2:
        return math.nan
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else math.nan
