"""Merge the nodes' flight recorders into one timeline and say where a round's time goes.

Start the testnet with the recorder on, put load on it, then read the last seconds:

    KMSNODE_FLIGHT_RECORDER=200000 python -m testnet up -n 4
    python scripts/timeline.py --dir .testnet --seconds 10          # hop summary
    python scripts/timeline.py --dir .testnet --seconds 1 --print   # every event, merged

The nodes stamp events with ``time.monotonic_ns``, a clock every process on one machine
shares, so the merged order is the real order (across machines it would not be). For each
round the summary splits the time between the leader's proposal and the next leader's: the
proposal's transit to each replica, the replica's work before its vote (checks and the vote's
fsync), the vote's transit to the next leader, and what the next leader took to propose.
Round timer expiries are listed: a healthy log under load has none (an idle one does).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testnet._launcher import Testnet

Row = tuple[int, int, str, list[Any]]
"""(monotonic ns, consensus index of the node, event, fields)."""


def fetch(tn: Testnet, since_ns: int) -> list[Row]:
    """Every node's recorded events since ``since_ns``, merged in time order."""
    ids = sorted(int(i) for i in tn.record()["nodes"])
    rows: list[Row] = []
    for index, node in enumerate(ids):
        where = tn.console(node)
        if where is None:
            raise SystemExit(f"node {node} has no console")
        url, token_file = where
        req = urllib.request.Request(
            f"{url}api/events?since_ns={since_ns}",
            headers={"Authorization": "Bearer " + token_file.read_text().strip()},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = json.load(resp)
        if not data.get("enabled"):
            raise SystemExit(f"node {node}: flight recorder off ({data.get('hint')}); restart it")
        rows.extend((e[0], index, e[1], e[2:]) for e in data["events"])
    rows.sort(key=lambda r: r[0])
    return rows


def hops(rows: list[Row]) -> dict[str, list[float]]:
    """Per-round hop durations in ms (lists to take quantiles of), and round timeouts."""
    proposed: dict[int, tuple[int, int]] = {}  # round -> (time, leader)
    received: dict[tuple[int, int], int] = {}  # (round, node) -> time the proposal arrived
    voted: dict[tuple[int, int], int] = {}  # (round, node) -> time its vote left
    vote_in: dict[int, list[int]] = defaultdict(list)  # round -> arrival times at next leader
    fsync_start: dict[int, int] = {}
    out: dict[str, list[float]] = defaultdict(list)
    for t, node, event, f in rows:
        if event == "broadcast" and f[1] == "Proposal":
            proposed[f[2]] = (t, node)
        elif event == "recv" and f[1] == "Proposal":
            received.setdefault((f[2], node), t)
        elif event == "send" and f[1] == "Vote":
            voted[(f[2], node)] = t
        elif event == "recv" and f[1] == "Vote":
            vote_in[f[2]].append(t)
        elif event == "persist" and f[0] == 1:
            fsync_start[node] = t
        elif event == "persisted" and f[0] == 1 and node in fsync_start:
            out["vote fsync"].append((t - fsync_start.pop(node)) / 1e6)
        elif event == "timer":  # a round's timer expired (idle rounds expire too)
            out["round timeouts"].append(float(f[0]))
    ms = 1e6
    for rnd, (tb, leader) in sorted(proposed.items()):
        for (r, node), tr in received.items():
            if r == rnd and node != leader:
                out["proposal transit"].append((tr - tb) / ms)
                if (r, node) in voted:
                    out["proposal in -> vote out"].append((voted[(r, node)] - tr) / ms)
        votes = sorted(vote_in.get(rnd, []))
        sent = sorted(t for (r, _), t in voted.items() if r == rnd)
        if votes and sent:
            out["vote transit (first)"].append((votes[0] - sent[0]) / ms)
        nxt = proposed.get(rnd + 1)
        if nxt is not None:
            out["round (proposal to proposal)"].append((nxt[0] - tb) / ms)
            before = [v for v in votes if v <= nxt[0]]
            if before:  # the vote that completed the QC: the last one in before the proposal
                out["QC's last vote in -> next proposal"].append((nxt[0] - before[-1]) / ms)
    return out


def summary(out: dict[str, list[float]]) -> str:
    """A table of p50/p90 per hop, and the timeouts."""
    lines = [f"{'hop':34} {'p50 ms':>8} {'p90 ms':>8} {'count':>7}"]
    for name, xs in out.items():
        if name == "round timeouts" or not xs:
            continue
        s = sorted(xs)
        lines.append(
            f"{name:34} {statistics.median(s):8.2f} {s[int(0.9 * (len(s) - 1))]:8.2f} {len(s):7d}"
        )
    timeouts = out.get("round timeouts", [])
    lines.append(
        f"round timeouts: {len(timeouts)}"
        + (f" (rounds {sorted(set(timeouts))[:10]})" if timeouts else "")
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=".testnet", help="the testnet directory")
    ap.add_argument("--seconds", type=float, default=10.0, help="how far back to look")
    ap.add_argument("--print", action="store_true", help="print every event, merged")
    args = ap.parse_args()
    rows = fetch(Testnet(Path(args.dir)), time.monotonic_ns() - int(args.seconds * 1e9))
    if not rows:
        raise SystemExit("no events in that window")
    if args.print:
        t0 = rows[0][0]
        for t, node, event, f in rows:
            print(f"{(t - t0) / 1e6:10.3f}  {'    ' * node}n{node} {event} {' '.join(map(str, f))}")
        print()
    print(f"{len(rows)} events over {(rows[-1][0] - rows[0][0]) / 1e9:.1f} s")
    print(summary(hops(rows)))


if __name__ == "__main__":
    main()
