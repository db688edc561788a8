"""Memory diagnostics: a process's resident set, and opt-in heap tracing for operators.

With ``KMSNODE_TRACEMALLOC=1`` in its environment a node traces allocations (Python's
``tracemalloc``, at roughly twice the CPU cost, so off by default) and, on ``SIGUSR1``, writes
the allocation sites holding the most memory to ``memtrace-<n>.txt`` in its data directory,
with the whole snapshot beside it (``memtrace-<n>.snap``, for ``Snapshot.load`` and
``compare_to``): two dumps taken some way apart show what grows. A dump names code locations
and sizes only, no values: nothing secret.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

ENV = "KMSNODE_TRACEMALLOC"
TOP = 40

log = logging.getLogger(__name__)


def process_memory(pid: int | str = "self") -> tuple[int, int] | None:
    """(resident set, its peak) of a process in KiB from ``/proc``; None if it is unreadable."""
    rss = hwm = None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        return None
    return None if rss is None or hwm is None else (rss, hwm)


def install(directory: Path) -> bool:
    """Start tracing and install the ``SIGUSR1`` dump if the environment asks for it."""
    if os.environ.get(ENV, "") not in ("1", "true", "yes"):
        return False
    tracemalloc.start(8)
    counter = itertools.count(1)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        path = directory / f"memtrace-{next(counter)}.txt"
        write_dump(path)
        log.info("wrote a heap trace to %s", path)

    signal.signal(signal.SIGUSR1, dump)
    log.info("heap tracing on (%s): send SIGUSR1 for a dump", ENV)
    return True


def write_dump(path: Path, top: int = TOP) -> None:
    """Write the ``top`` allocation sites (by line, innermost frames of ours) to ``path``."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    snapshot.dump(str(path.with_suffix(".snap")))
    stats = snapshot.statistics("traceback")
    total = sum(s.size for s in stats)
    lines = [f"traced {total / 1024:.0f} KiB in {sum(s.count for s in stats)} blocks"]
    for s in stats[:top]:
        lines.append(f"{s.size / 1024:10.1f} KiB {s.count:8d} blocks")
        lines.extend(f"      {line}" for line in s.traceback.format()[-6:])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
