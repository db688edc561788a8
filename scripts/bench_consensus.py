"""Benchmark the consensus log: committed payloads/s and commit latency at n = 4, 7, 16.

Runs n trio ``Node``s in one process over the in-memory network with 256-byte payloads,
real Ed25519 signatures and real SQLite persistence (WAL, fsync), and prints a table.
A client keeps a window of payloads outstanding and hands each batch to every node (as the
request gossip would) or, with ``--no-gossip``, to one node. Latency is measured from
submission to delivery at node 0.

All n replicas share one process (and here two cores), so the work per payload grows with
n; in a deployment each replica has its own machine.

    python scripts/bench_consensus.py [--seconds 6] [--sizes 4,7,16] [--batch 4096]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

import trio

from consensus import Config, MemoryNetwork, Node, NodeId, Pacemaker, Signer, SQLiteStore
from consensus._types import ChainId

PAYLOAD = 256


async def run_one(
    n: int, seconds: float, batch: int, inflight: int, gossip: bool
) -> dict[str, float]:
    chain = ChainId(b"bench-%d" % n)
    signers = [Signer.from_seed(b"bench/%d" % i) for i in range(n)]
    keys = tuple(s.public_key() for s in signers)
    net = MemoryNetwork(n)
    submitted_at: dict[bytes, float] = {}
    latencies: list[float] = []
    committed = 0
    with tempfile.TemporaryDirectory() as tmp:
        nodes = []
        for i in range(n):
            cfg = Config(
                chain_id=chain,
                me=NodeId(i),
                public_keys=keys,
                pacemaker=Pacemaker(base=2.0, backoff=2.0, max_timeout=10.0),
                max_block_payloads=batch,
                mempool_max_payloads=inflight * 2,
            )
            store = SQLiteStore(os.path.join(tmp, f"n{i}.db"), chain)
            nodes.append(Node(cfg, signers[i], store, net.transport(NodeId(i))))
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            done = trio.Event()
            room = trio.Event()
            outstanding = 0
            pad = random.Random(n).randbytes(PAYLOAD - 8)

            async def consume() -> None:
                nonlocal committed, outstanding, room
                async for block in nodes[0].committed():
                    now = time.perf_counter()
                    for p in block.payloads:
                        t0 = submitted_at.pop(p, None)
                        if t0 is not None:
                            latencies.append(now - t0)
                            outstanding -= 1
                    committed += len(block.payloads)
                    room.set()
                    room = trio.Event()

            async def produce() -> None:
                # A client window bounds outstanding payloads (as real clients would).
                nonlocal outstanding
                seq = 0
                while not done.is_set():
                    if outstanding >= inflight:
                        await room.wait()
                        continue
                    batch = []
                    now = time.perf_counter()
                    for _ in range(min(512, inflight - outstanding)):
                        seq += 1
                        p = seq.to_bytes(8, "big") + pad  # unique by its sequence number
                        submitted_at[p] = now
                        batch.append(p)
                    outstanding += len(batch)
                    if gossip:  # every node hears every payload, as the request gossip does
                        for node in nodes:
                            await node.submit_many(batch)
                    else:  # clients spread their payloads over the nodes
                        await nodes[(seq // 512) % n].submit_many(batch)
                    await trio.sleep(0)

            nursery.start_soon(consume)
            nursery.start_soon(produce)
            await trio.sleep(1.0)  # warm-up
            c0, l0, t0 = committed, len(latencies), time.perf_counter()
            await trio.sleep(seconds)
            c1, t1 = committed, time.perf_counter()
            stats = nodes[0].replica.stats
            blocks, payloads = stats.blocks_committed, stats.payloads_committed
            lat = sorted(latencies[l0:])
            done.set()
            nursery.cancel_scope.cancel()
        for node in nodes:
            node.store.close()
    rate = (c1 - c0) / (t1 - t0)
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    return {
        "n": n,
        "rate": rate,
        "p50": p50 * 1000,
        "p99": p99 * 1000,
        "blocks": blocks,
        "per_block": payloads / max(1, blocks),
        "timeouts": stats.timeouts_sent,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--sizes", default="4,7,16")
    ap.add_argument("--batch", type=int, default=4096, help="max payloads per block")
    ap.add_argument("--inflight", type=int, default=20000, help="client window")
    ap.add_argument(
        "--no-gossip",
        dest="gossip",
        action="store_false",
        help="submit each payload batch to one node (default: every node gets every payload)",
    )
    args = ap.parse_args()
    mode = "every node gets every payload" if args.gossip else "each payload to one node"
    print(
        f"256-byte payloads, Ed25519, SQLite (WAL, fsync), in-memory network, one process; "
        f"<= {args.batch} payloads/block, client window {args.inflight}, {mode}; "
        f"{args.seconds:g}s after 1s warm-up; load average {os.getloadavg()[0]:.1f}"
    )
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        rows.append(trio.run(run_one, n, args.seconds, args.batch, args.inflight, args.gossip))
    print(
        f"{'n':>3} {'payloads/s':>12} {'p50 ms':>9} {'p99 ms':>9} {'vs n=4':>7}"
        f" {'blocks':>7} {'payloads/block':>15} {'timeouts':>9}"
    )
    base = next((r["rate"] for r in rows if r["n"] == 4), None)
    for r in rows:
        rel = f"{r['rate'] / base:.2f}" if base else "-"
        print(
            f"{int(r['n']):>3} {r['rate']:>12,.0f} {r['p50']:>9.1f} {r['p99']:>9.1f} {rel:>7}"
            f" {int(r['blocks']):>7} {r['per_block']:>15,.0f} {int(r['timeouts']):>9}"
        )


if __name__ == "__main__":
    main()
