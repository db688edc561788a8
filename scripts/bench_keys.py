"""Benchmark: node memory while a fresh 4-node testnet creates many keys (one DKG each).

Creates ``--keys`` keys through the log with ``--conc`` creations in flight and samples each
node's resident set (VmRSS) every ``--every`` keys. Prints the samples and, per node, the
growth per 1,000 keys over the first and the second half of the run: bounded caches (the
consensus dedup window, the answer cache, the recent audit entries, SQLite's page cache) fill
early and then stop growing, so a second-half slope near zero is the evidence that memory per
key is bounded; a slope like the first half's would be a leak. Target: under 200 MB per node
after 10,000 keys (issue 5).

Run: ``python scripts/bench_keys.py [--keys 10000] [--conc 24] [--every 500]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import Bar, log, proc_mem, slope
from bench_e2e import fresh_testnet, pids

from kmsnode.client import AsyncDistributedKMS, ClientConfig
from kmsnode.genesis import Genesis
from testnet._control import statuses, wait_healthy

TARGET_MB = 200.0


async def create_keys(
    args: argparse.Namespace, client_json: Path, node_pids: dict[int, int]
) -> Any:
    """Create the keys; returns (samples, creation latencies, seconds, keys the nodes hold)."""
    cfg = ClientConfig.load(client_json)
    samples: list[tuple[int, float, dict[int, float]]] = []
    latencies: list[float] = []
    async with AsyncDistributedKMS(genesis=cfg.genesis, identity=cfg.identity) as kms:
        await kms.create_key(description="warm-up")
        t0 = time.monotonic()
        samples.append((0, 0.0, {i: proc_mem(p)[0] for i, p in node_pids.items()}))
        started = done = 0
        deadline = t0 + args.budget
        with Bar(f"{args.keys} keys", args.budget) as bar:

            async def maker() -> None:
                nonlocal started, done
                while started < args.keys and time.monotonic() < deadline:
                    started += 1
                    t = time.monotonic()
                    await kms.create_key(description=f"bench key {started}")
                    latencies.append(time.monotonic() - t)
                    done += 1
                    if done % args.every == 0:
                        rss = {i: proc_mem(p)[0] for i, p in node_pids.items()}
                        samples.append((done, time.monotonic() - t0, rss))
                    bar.update(f"{done}/{args.keys} keys, {done / (time.monotonic() - t0):.1f}/s")

            async with trio.open_nursery() as nursery:
                for _ in range(args.conc):
                    nursery.start_soon(maker)
        seconds = time.monotonic() - t0
        if samples[-1][0] != done:
            samples.append((done, seconds, {i: proc_mem(p)[0] for i, p in node_pids.items()}))
        held = len(await kms.list_keys())
    return samples, latencies, seconds, held


def per_thousand(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) against keys, per 1,000 keys."""
    if len(points) < 2:
        return math.nan
    s = slope([(float(k), mb) for k, mb in points])
    return 0.0 if math.isnan(s) else 1000 * s


def report(
    args: argparse.Namespace,
    samples: Any,
    latencies: list[float],
    seconds: float,
    held: int,
    peaks: dict[int, float],
) -> None:
    """Print the samples table and the per-node summary."""
    nodes = sorted(samples[0][2])
    print()
    print(
        f"{'keys':>7} {'seconds':>8} " + " ".join(f"{'node ' + str(i) + ' MB':>11}" for i in nodes)
    )
    for keys, secs, rss in samples:
        print(f"{keys:>7} {secs:>8.0f} " + " ".join(f"{rss[i]:>11.1f}" for i in nodes))
    created = samples[-1][0]
    print()
    print(
        f"created {created} keys in {seconds:.0f} s ({created / seconds:.2f} keys/s, {args.conc} in"
        f" flight; p50 {statistics.median(latencies):.2f} s per key); list_keys sees {held}"
    )
    half = created / 2
    print(
        f"{'node':<6} {'RSS start':>10} {'RSS end':>9} {'peak':>7} "
        f"{'MB/1k keys, 1st half':>22} {'2nd half':>9}  target"
    )
    for i in nodes:
        first = [(k, r[i]) for k, _, r in samples if k <= half]
        second = [(k, r[i]) for k, _, r in samples if k >= half]
        end = samples[-1][2][i]
        verdict = "met" if end < TARGET_MB and peaks[i] < TARGET_MB else "MISSED"
        print(
            f"{i:<6} {samples[0][2][i]:>10.1f} {end:>9.1f} {peaks[i]:>7.1f} "
            f"{per_thousand(first):>22.2f} {per_thousand(second):>9.2f}  "
            f"< {TARGET_MB:.0f} MB: {verdict}"
        )
    if created < args.keys:
        print(
            f"NOTE: stopped at the {args.budget:.0f} s budget after {created} of {args.keys} keys"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--conc", type=int, default=24, help="key creations in flight")
    parser.add_argument("--every", type=int, default=500, help="keys between RSS samples")
    parser.add_argument("--budget", type=float, default=3 * 3600, help="seconds at most")
    parser.add_argument("--keep", action="store_true", help="keep the testnet directory")
    args = parser.parse_args()
    with fresh_testnet(4, args.keep) as tn:
        wait_healthy(tn, 120)
        node_pids = pids(tn)
        log(f"testnet up in {tn.dir}; creating {args.keys} keys, {args.conc} at a time")
        samples, latencies, seconds, held = trio.run(
            create_keys, args, tn.dir / "client.json", node_pids
        )
        peaks = {i: proc_mem(p)[1] for i, p in node_pids.items()}
        st = trio.run(statuses, Genesis.load(tn.dir / "genesis.json"), tn.nodes())
        log("node key counts: " + ", ".join(f"{i}: {s.get('keys')}" for i, s in sorted(st.items())))
        report(args, samples, latencies, seconds, held, peaks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
