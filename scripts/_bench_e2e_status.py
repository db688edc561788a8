"""Reading node statuses for ``bench_e2e.py``: how counters and the vote-fsync histogram
grew between two statuses of a phase."""

from __future__ import annotations

from typing import Any

import consensus


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
