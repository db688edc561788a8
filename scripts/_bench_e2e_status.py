"""Phase deltas for ``bench_e2e.py``: how node counters, the vote-fsync histogram and the
processes' CPU time grew between the start and the end of a phase, and the soak's rows."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from typing import Any

from _bench_common import slope

import consensus

HALF_SEGMENT_S = 5.0
"""Seconds per segment when the half-load p50 is also shown segment by segment."""


def fsync_delta(
    before: dict[str, Any], after: dict[str, Any]
) -> tuple[int, float, float, float] | None:
    """(count, mean ms, p50 bound ms, p90 bound ms) of the vote fsyncs between two statuses."""
    b0, b1 = before.get("consensus_fsync"), after.get("consensus_fsync")
    if not b0 or not b1:
        return None
    buckets = [[u, c1 - c0] for (u, c1), (_, c0) in zip(b1["buckets"], b0["buckets"], strict=True)]
    count = b1["count"] - b0["count"]
    if count <= 0:
        return None
    mean = 1000 * (b1["sum"] - b0["sum"]) / count
    return (
        count,
        mean,
        1000 * consensus.SyncTimings.quantile(buckets, count, 0.5),
        1000 * consensus.SyncTimings.quantile(buckets, count, 0.9),
    )


def stat_deltas(before: dict[int, Any], after: dict[int, Any], counter: str) -> list[int]:
    """Per node (in id order), how much a consensus counter grew between two statuses."""
    out = []
    for i in sorted(after):
        s0 = ((before.get(i) or {}).get("consensus_stats") or {}).get(counter, 0)
        s1 = ((after.get(i) or {}).get("consensus_stats") or {}).get(counter, 0)
        out.append(s1 - s0)
    return out


def ours_cpu(c0: dict[str, float], c1: dict[str, float]) -> float:
    """CPU seconds our processes (the nodes and this client) used between two snapshots."""
    return sum(c1[k] - c0[k] for k in c1 if not k.startswith("_"))


def busy_share(c0: dict[str, float], c1: dict[str, float]) -> float:
    """How busy the whole machine was between two snapshots (0..1 of all cores)."""
    return (c1["_busy"] - c0["_busy"]) / max(1e-9, c1["_total"] - c0["_total"])


def cpu_lines(
    label: str,
    seconds: float,
    done: int,
    c0: dict[str, float],
    c1: dict[str, float],
    crypto_s: float,
    blocks_per_s: float,
) -> list[str]:
    """Where a phase's CPU went: each process's share of a core and ms per completed decrypt,
    beside the crypto ceiling's ms and the consensus blocks per decrypt (a block costs every
    node its own CPU whatever it carries, so fewer requests per block cost more each)."""
    if not c0 or not c1 or done <= 0 or seconds <= 0:
        return []
    busy = c1["_busy"] - c0["_busy"]  # core-seconds
    rate = done / seconds
    out = [
        f" CPU during the {label} ({seconds:.0f}s, {os.cpu_count()} cores, {rate:.1f} dec/s, "
        f"{blocks_per_s / rate:.2f} blocks per decrypt; ms of CPU per completed decrypt):"
    ]
    for proc in sorted(x for x in c1 if not x.startswith("_")):
        used = c1[proc] - c0[proc]
        out.append(
            f"   {proc:<8} {100 * used / seconds:5.1f}% of a core   "
            f"{1000 * used / done:6.1f} ms/decrypt"
        )
    ours = ours_cpu(c0, c1)
    out.append(
        f"   ours     {100 * ours / seconds:5.1f}% of a core   {1000 * ours / done:6.1f} ms/decrypt"
        f"  (crypto ceiling: {1000 * crypto_s:.1f} ms/decrypt)"
    )
    out.append(
        f"   machine busy {100 * busy_share(c0, c1):.0f}% of all cores; other processes "
        f"(not this benchmark) {100 * max(0.0, busy - ours) / seconds:.0f}% of a core"
    )
    return out


def segment_p50s(starts: list[float], latencies: list[float], seconds: float) -> list[float]:
    """Median latency of the requests sent in each ``seconds``-long segment of a phase, in
    order (a trailing part shorter than half of ``seconds`` joins the segment before): at one
    offered load, how much the machine's own speed moved the result."""
    if not starts or len(starts) != len(latencies):
        return []
    t0, t1 = min(starts), max(starts)
    n = max(1, int((t1 - t0) / seconds + 0.5))
    bins: list[list[float]] = [[] for _ in range(n)]
    for t, lat in zip(starts, latencies, strict=True):
        bins[min(n - 1, int((t - t0) / seconds))].append(lat)
    return [statistics.median(b) for b in bins if b]


CEILING_DRIFT = 0.2
"""Relative difference between the before and after ceilings beyond which the machine's own
speed moved enough to make the throughput ratio uncertain."""


def ceiling_note(before_s: float, after_s: float, rate: float) -> str:
    """What the two ceiling measurements (seconds per decrypt, before and after the run) say
    about the throughput ratio of ``rate`` decrypts/s: the faster one is the ceiling; when
    they differ by more than ``CEILING_DRIFT``, the ratio against the slower one too, since
    this machine's speed then moved by that much during the run."""
    fast, slow = min(before_s, after_s), max(before_s, after_s)
    if fast <= 0 or slow / fast - 1 <= CEILING_DRIFT:
        return "the faster one is the ceiling above"
    return (
        f"the faster one is the ceiling above; they differ by {100 * (slow / fast - 1):.0f}%: "
        f"the machine's speed moved, and against the slower one the ratio is "
        f"{100 * rate * slow:.0f}%"
    )


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nan for none)."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    """RSS trend in MB per minute from (seconds, MB) samples (nan for fewer than three)."""
    return math.nan if len(points) < 3 else 60 * slope(points)


def soak_rows(
    seconds: float,
    soak: Any,
    pts: dict[int, list[tuple[float, float]]],
    row: Callable[..., None],
) -> None:
    """Report the soak through ``row(what, ours, ceiling, note)``: latency overall and by
    minute, which of node 1's bounded structures grew, and each node's RSS trend."""
    row(
        f"soak {seconds:.0f}s half load",
        f"{soak.rate:.1f}/s",
        "",
        f"p50 {1000 * pct(soak.latencies, 0.5):.0f} ms, "
        f"p99 {1000 * pct(soak.latencies, 0.99):.0f} ms",
    )
    minutes = segment_p50s(soak.starts, soak.latencies, 60.0)
    if len(minutes) > 1:
        row(
            "  soak p50 by minute",
            " ".join(f"{1000 * x:.0f}" for x in minutes) + " ms",
            "",
            "a rising series would mean the node slows as it runs",
        )
    # What the node holds in memory, before and after: which bounded structures grew.
    m0 = (soak.status0.get(1) or {}).get("memory", {})
    m1 = (soak.status1.get(1) or {}).get("memory", {})
    grew = [f"{k} {m0[k]}->{m1[k]}" for k in m1 if k in m0 and m1[k] != m0[k]]
    if grew:
        row("  node 1 memory() before -> after", "", "", ", ".join(grew))
    for i in sorted(pts):
        s = slope_mb_per_min(pts[i])
        mid = len(pts[i]) // 2
        s1, s2 = slope_mb_per_min(pts[i][:mid]), slope_mb_per_min(pts[i][mid:])
        first, last = pts[i][0][1], pts[i][-1][1]
        row(
            f"  node {i} RSS trend",
            f"{first:.0f} -> {last:.0f} MB",
            "",
            f"{s:+.2f} MB/min (1st half {s1:+.2f}, 2nd half {s2:+.2f}; "
            f"least squares, {len(pts[i])} samples)",
        )
    # Bounded caches fill first (answer cache, dedup window, and the replay window, which
    # holds every request of the last 10 minutes): the series shows when growth stops.
    for i in sorted(pts)[:1]:
        t0 = pts[i][0][0]
        marks = [p for k, p in enumerate(pts[i]) if k % 120 == 0 or k == len(pts[i]) - 1]
        row(
            f"  node {i} RSS every 2 min",
            " ".join(f"{v:.0f}" for _, v in marks),
            "",
            f"MB at {', '.join(f'{(ts - t0) / 60:.0f}' for ts, _ in marks)} min",
        )


def height_delta(phase: Any) -> int | None:
    """Blocks node 1 committed during ``phase`` (None without both statuses)."""
    try:
        return int(phase.status1[1]["height"]) - int(phase.status0[1]["height"])
    except (KeyError, TypeError, ValueError):
        return None


def curve_table(points: list[tuple[float, Any]]) -> list[str]:
    """The load curve: one ``curve_line`` per (fraction of the sustained rate, phase), or
    nothing when only the half-load and sustained runs are there."""
    if len(points) <= 2:
        return []
    out = [
        " Load curve (open loop below 1.0; 1.0 is the closed-loop sustained run):",
        "  x sust  offered     done  p50 ms   p99 ms  CPU ms/dec  busy  blocks/dec",
        "  ------  -------  -------  ------  -------  ----------  ----  ----------",
    ]
    for fraction, ph in points:
        out.append(
            curve_line(
                fraction,
                ph.offered or ph.rate,
                len(ph.latencies),
                ph.seconds,
                pct(ph.latencies, 0.5),
                pct(ph.latencies, 0.99),
                ph.cpu0,
                ph.cpu1,
                height_delta(ph),
            )
        )
    return out


def curve_line(
    fraction: float,
    offered: float,
    done: int,
    seconds: float,
    p50: float,
    p99: float,
    c0: dict[str, float],
    c1: dict[str, float],
    blocks: int | None,
) -> str:
    """One row of the load curve: at ``fraction`` of the sustained rate, the latency, the CPU
    all our processes spent per completed decrypt, how busy the machine was and the blocks per
    decrypt. Read down the column: CPU per decrypt falls as load rises, because a lone request
    pays for its own wake-ups, messages and blocks that a busy system shares out."""
    if done <= 0 or seconds <= 0 or not c0 or not c1:
        return f"  {fraction:5.2f}  {offered:7.1f}  no decrypt completed"
    ours = ours_cpu(c0, c1)
    busy = busy_share(c0, c1)
    per_block = f"{blocks / done:6.2f}" if blocks is not None else "     ?"
    return (
        f"  {fraction:5.2f}  {offered:7.1f}  {done / seconds:7.1f}  {1000 * p50:7.1f}  "
        f"{1000 * p99:7.1f}  {1000 * ours / done:8.1f}  {100 * busy:6.0f}%  {per_block}"
    )
