"""Helpers the benchmark scripts share: a progress bar, stderr logging, a process's memory."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any

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
    rss = hwm = math.nan
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm
