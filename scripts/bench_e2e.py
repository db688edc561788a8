"""Benchmark: decrypt throughput and latency against a fresh 4-node testnet, beside its ceiling.

What one run does (every phase is bounded by time and stops by itself):

1. **Ceiling** (before the testnet starts, so it has the core to itself): the cryptographic work
   one decrypt costs the n nodes and the client, in this process, on one core, with no network
   and no consensus, from the real functions:

   - ``crypto``: the sum of the per-decrypt crypto steps, each timed on its own (client: reply
     key generation and request signature; on each of the n nodes: request signature check,
     share read from the encrypted keystore, ciphertext check + partial + DLEQ proof, sealing
     to the reply key, response signature; client: t response signature checks, t openings of
     the sealed partials, partial verification + combination + DEM). This is *the* ceiling.
     It is measured before and again after the testnet run, and the faster of the two is used
     (this VM's speed drifts between runs).
   - ``pipeline``: the same requests through ``kmsnode.testing.LocalNetwork`` (the n state
     machines + executors + client core, one simulated log): crypto plus the deterministic
     state machine and encodings, as a cross-check of the sum above.

2. A fresh testnet (``testnet._launcher.Testnet`` in a temp dir, always torn down, even on an
   error or Ctrl-C), a key, a set of ciphertexts.
3. **Sweep**: closed-loop decrypts from several ``AsyncDistributedKMS`` clients at each
   concurrency of ``--conc`` for ``--sweep-seconds``; the best becomes the **sustained** run
   (``--duration``): decrypts/s, p50/p99.
4. **Half load**: open-loop at half the sustained rate (``--duration``): p50/p99 (target
   p50 < 50 ms). Then the **load curve**: open loop at each ``--curve`` fraction of the
   sustained rate (``--curve-seconds`` each): p50/p99, CPU per decrypt, machine busy, blocks
   per decrypt. CPU per decrypt falls as load rises (a lone request pays for its own
   wake-ups, messages and blocks), so the machine is nearly as busy at half load as at full.
5. **Keys**: one DKG timed alone, then up to ``--keys`` more within ``--key-budget`` seconds;
   RSS per node before/after and growth per key (extrapolated to 10,000 keys, marked as such,
   only from 1,000 keys up; ``scripts/bench_keys.py`` measures 10,000).
6. Optional **soak** (``--soak SECONDS``): half load, RSS sampled every few seconds, with a
   least-squares slope per node.

Throughout: each node's RSS (``/proc/PID/status`` VmRSS, and VmHWM for the peak), consensus
payloads/s (read from node 1's committed log after the run, bucketed by block timestamps), and
a py-spy profile of node 1 and of this client process during a run of its own after the
measured runs, so that the profiler's CPU is in none of them: closed loop at the sustained
concurrency, or open loop at half load with ``--profile-at half`` (``--no-profile`` skips it),
plus cProfile of the in-process pipeline: the "what limits it" section.

Run: ``.venv/bin/python scripts/bench_e2e.py [--duration 20] [--keys 50] [--soak 600]``.
The machine has 2 cores: the 4 nodes and the client share them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

import consensus
from kmsnode.client import AsyncDistributedKMS
from kmsnode.wire.payload import decode_payload
from testnet._control import statuses, wait_healthy
from testnet._launcher import Testnet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import Bar, log, proc_mem
from _bench_e2e_ceiling import CONTEXT, PLAINTEXT, Ceiling, measure_ceiling
from _bench_e2e_status import (
    HALF_SEGMENT_S,
    ceiling_note,
    cpu_lines,
    curve_table,
    fsync_delta,
    pct,
    segment_p50s,
    soak_rows,
    stat_deltas,
)

# -- CPU ----------------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (nan when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores (from /proc/stat)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = v[3] + v[4]
    return (sum(v) - idle) / _TICK, sum(v) / _TICK


def cpu_snapshot(node_pids: dict[int, int]) -> dict[str, float]:
    snap = {f"node {i}": proc_cpu(pid) for i, pid in node_pids.items()}
    snap["client"] = proc_cpu(os.getpid())
    snap["_busy"], snap["_total"] = machine_cpu()
    return snap


# -- memory ---------------------------------------------------------------------------------------
@dataclass
class MemWatch:
    pids: dict[int, int]
    samples: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    peak: dict[int, float] = field(default_factory=dict)

    def sample(self) -> dict[int, float]:
        now: dict[int, float] = {}
        for node, pid in self.pids.items():
            rss, hwm = proc_mem(pid)
            now[node] = rss
            self.peak[node] = max(self.peak.get(node, 0.0), hwm if hwm == hwm else 0.0)
        self.samples.append((time.monotonic(), now))
        return now

    async def run(self, every: float) -> None:
        while True:
            self.sample()
            await trio.sleep(every)


# -- the ceiling ----------------------------------------------------------------------------------
@contextlib.contextmanager
def fresh_testnet(n: int, keep: bool) -> Iterator[Testnet]:
    d = Path(tempfile.mkdtemp(prefix="bench-e2e-testnet-"))
    tn = Testnet(d)
    try:
        tn.generate(n, scrypt_log2_n=12)
        for i in tn.nodes():
            tn.start(i)
        yield tn
    finally:
        with contextlib.suppress(Exception):
            tn.stop_all()
        with contextlib.suppress(Exception):
            for i in tn.nodes():
                if tn.alive(i):
                    tn.kill(i)
        if keep:
            log(f"testnet kept in {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


def pids(tn: Testnet) -> dict[int, int]:
    return {int(k): int(v["pid"]) for k, v in tn.record()["nodes"].items() if v["pid"]}


# -- load -----------------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # perf_counter at each recorded send
    errors: Counter[str] = field(default_factory=Counter)
    wall: tuple[float, float] = (0.0, 0.0)
    status0: dict[int, Any] = field(default_factory=dict)
    status1: dict[int, Any] = field(default_factory=dict)
    rss_end: dict[int, float] = field(default_factory=dict)
    offered: float = 0.0
    cpu0: dict[str, float] = field(default_factory=dict)
    cpu1: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        err = f"  errors {dict(self.errors)}" if self.errors else ""
        return (
            f"{self.name:<22} conc {self.concurrency:>3}  {self.rate:7.1f} dec/s  "
            f"p50 {1000 * pct(self.latencies, 0.5):7.1f} ms  "
            f"p99 {1000 * pct(self.latencies, 0.99):7.1f} ms  n={len(self.latencies)}{err}"
        )


class Driver:
    """Several clients, a set of ciphertexts, closed- and open-loop decrypt load."""

    def __init__(
        self, clients: list[AsyncDistributedKMS], cts: list[bytes], genesis: Any, mem: MemWatch
    ) -> None:
        self.clients, self.cts, self.genesis, self.mem = clients, cts, genesis, mem
        self._i = 0

    async def _one(self, phase: Phase, k: int, record: bool) -> None:
        kms = self.clients[k % len(self.clients)]
        ct = self.cts[k % len(self.cts)]
        t = time.perf_counter()
        try:
            pt = await kms.decrypt(ct, CONTEXT)
            assert pt == PLAINTEXT
            if record:
                phase.latencies.append(time.perf_counter() - t)
                phase.starts.append(t)
        except Exception as exc:  # counted and shown; the load goes on
            if record:
                phase.errors[type(exc).__name__] += 1

    async def closed(self, name: str, conc: int, seconds: float, warmup: float) -> Phase:
        phase = Phase(name, conc)
        start = time.monotonic()
        measure_from, stop = start + warmup, start + warmup + seconds
        with Bar(f"{name} (conc {conc})", warmup + seconds) as bar:

            async def worker(w: int) -> None:
                k = w
                while time.monotonic() < stop:
                    await self._one(phase, k, time.monotonic() >= measure_from)
                    k += conc

            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._mark, phase, measure_from, stop)
                for w in range(conc):
                    nursery.start_soon(worker, w)
                while time.monotonic() < stop:
                    bar.update(f"{len(phase.latencies)} done")
                    await trio.sleep(0.25)
        return phase

    async def open(self, name: str, rate: float, seconds: float, cap: int) -> Phase:
        """Open loop: one request every 1/rate s, at most ``cap`` in flight (excess counted)."""
        phase = Phase(name, cap, offered=rate)
        start = time.monotonic()
        stop = start + seconds
        in_flight = 0

        async def one(k: int) -> None:
            nonlocal in_flight
            in_flight += 1
            try:
                await self._one(phase, k, True)
            finally:
                in_flight -= 1

        with Bar(f"{name} ({rate:.1f}/s offered)", seconds) as bar:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._mark, phase, start, stop)
                k = 0
                next_at = start
                while next_at < stop:
                    await trio.sleep_until(
                        trio.current_time() + max(0.0, next_at - time.monotonic())
                    )
                    if in_flight < cap:
                        nursery.start_soon(one, k)
                    else:
                        phase.errors["skipped (cap)"] += 1
                    k += 1
                    next_at = start + k / rate
                    if k % max(1, int(rate / 4)) == 0:
                        bar.update(f"{len(phase.latencies)} done, {in_flight} in flight")
        return phase

    async def _mark(self, phase: Phase, t_from: float, t_to: float) -> None:
        await trio.sleep(max(0.0, t_from - time.monotonic()))
        ids = list(self.mem.pids)
        phase.status0 = await statuses(self.genesis, ids)
        phase.cpu0 = cpu_snapshot(self.mem.pids)
        w0 = time.time()
        await trio.sleep(max(0.0, t_to - time.monotonic()))
        phase.seconds = t_to - t_from
        phase.wall = (w0, time.time())
        phase.cpu1 = cpu_snapshot(self.mem.pids)
        # Request timings over exactly this phase's window (each node keeps its own).
        phase.status1 = await statuses(self.genesis, ids, body={"latency_window": phase.seconds})
        phase.rss_end = self.mem.sample()


# -- profiling ------------------------------------------------------------------------------------
PYSPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def start_pyspy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    if not Path(PYSPY).exists():
        return None
    return subprocess.Popen(
        [
            PYSPY,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "100",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


_GROUPS = [
    (
        "crypto (kmsnode.crypto, cryptography, sodium)",
        ("kmsnode/crypto", "cryptography/", "nacl/", "_sodium", "mlkem"),
    ),
    ("consensus (replica, rules, storage)", ("consensus/",)),
    ("libp2p (noise, yamux, multiselect, streams)", ("libp2p/",)),
    (
        "kmsnode state/executor/wire",
        ("kmsnode/state", "kmsnode/executor", "kmsnode/wire", "kmsnode/keystore"),
    ),
    ("kmsnode net (mesh, framing, reqresp)", ("kmsnode/net",)),
    ("client core", ("kmsnode/client",)),
    ("msgpack", ("msgpack",)),
    ("sqlite", ("sqlite3",)),
    ("trio scheduler / I/O", ("trio/",)),
]


def summarize_pyspy(path: Path, top: int = 8) -> list[str]:
    """Self time by function and inclusive time by layer, from py-spy's raw collapsed stacks."""
    if not path.exists():
        return ["  (no py-spy output)"]
    leaf: Counter[str] = Counter()
    layer: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        leaf[frames[-1]] += c
        seen = set()
        for name, keys in _GROUPS:
            if any(k in stack for k in keys) and name not in seen:
                seen.add(name)
                layer[name] += c
    if not total:
        return ["  (no samples: the process was idle)"]
    out = [f"  {total} samples; inclusive by layer (a stack counts in every layer it crosses):"]
    out += [f"    {100 * c / total:5.1f}%  {name}" for name, c in layer.most_common()]
    out.append("  hottest functions (self time):")
    out += [f"    {100 * c / total:5.1f}%  {name[:110]}" for name, c in leaf.most_common(top)]
    return out


# -- consensus payloads ---------------------------------------------------------------------------
def read_log(tn: Testnet, node: int = 1) -> list[tuple[float, Counter[str]]]:
    """(block wall time s, payload kinds) for node ``node``'s committed log (nodes stopped)."""
    chain = consensus.ChainId(tn.record()["chain_id"].encode())
    store = consensus.SQLiteStore(str(tn.dir / f"node{node}" / "consensus.db"), chain)
    out = []
    h = 1
    while True:
        page = store.committed_log(consensus.Height(h), 512)
        if not page:
            break
        for b in page:
            kinds: Counter[str] = Counter()
            for p in b.payloads:
                try:
                    kinds[type(decode_payload(p)).__name__] += 1
                except Exception:
                    kinds["malformed"] += 1
            out.append((b.timestamp_ms / 1000, kinds))
        h = page[-1].height + 1
    return out


def payload_rate(
    blocks: list[tuple[float, Counter[str]]], w: tuple[float, float]
) -> tuple[float, float, float]:
    """(payloads/s, blocks/s, payloads per block) in one node's log within wall window ``w``."""
    inside = [k for t, k in blocks if w[0] <= t < w[1]]
    secs = max(1e-9, w[1] - w[0])
    p = sum(sum(k.values()) for k in inside)
    return p / secs, len(inside) / secs, p / max(1, len(inside))


# -- main -----------------------------------------------------------------------------------------
async def bench(args: argparse.Namespace, tn: Testnet, report: dict[str, Any]) -> None:
    from kmsnode.client import ClientConfig

    cfg = ClientConfig.load(tn.dir / "client.json")
    mem = MemWatch(pids(tn))
    report["mem"] = mem
    async with trio.open_nursery() as root:
        root.start_soon(mem.run, 1.0)
        clients = []
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(args.clients):
                clients.append(
                    await stack.enter_async_context(
                        AsyncDistributedKMS(genesis=cfg.genesis, identity=cfg.identity, timeout=30)
                    )
                )
            kms = clients[0]
            t = time.perf_counter()
            key = await kms.create_key(description="bench")
            report["dkg_first_s"] = time.perf_counter() - t
            key_id = key.key_id
            log(f"key {key_id} enabled after {report['dkg_first_s']:.2f}s (one DKG, testnet)")
            cts: list[bytes] = []

            async def enc() -> None:
                cts.append(await kms.encrypt(key_id, PLAINTEXT, CONTEXT))

            t = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(args.ciphertexts):
                    nursery.start_soon(enc)
            log(f"{len(cts)} ciphertexts encrypted in {time.perf_counter() - t:.2f}s")
            for c in clients:  # warm each client's key material cache and connections
                assert await c.decrypt(cts[0], CONTEXT) == PLAINTEXT
            drv = Driver(clients, cts, cfg.genesis, mem)
            report["rss_before_load"] = mem.sample()

            sweep = []
            for conc in args.conc:
                ph = await drv.closed("sweep", conc, args.sweep_seconds, warmup=1.5)
                log(ph.line())
                sweep.append(ph)
            report["sweep"] = sweep
            best = max(sweep, key=lambda p: p.rate).concurrency
            sustained = await drv.closed("sustained", best, args.duration, warmup=2.0)
            log(sustained.line())
            report["sustained"] = sustained

            half = await drv.open("half load", sustained.rate / 2, args.duration, cap=4 * best)
            log(half.line())
            report["half"] = half

            # The load curve: where CPU per decrypt and latency go between idle and sustained.
            curve = []
            for fraction in args.curve:
                ph = await drv.open(
                    f"curve x{fraction:g}",
                    sustained.rate * fraction,
                    args.curve_seconds,
                    cap=4 * best,
                )
                log(ph.line())
                curve.append((fraction, ph))
            report["curve"] = curve

            # The profile gets a run of its own (--profile-at: the sustained concurrency or half
            # load): py-spy sampling two processes costs CPU (~5% of a core), which must not be
            # in the measured runs.
            if args.profile:
                prof_secs = min(10.0, args.duration)
                spies: list[tuple[str, Path, Any]] = []
                for who, pid in (("node 1", mem.pids[1]), ("client process", os.getpid())):
                    out = tn.dir / f"pyspy-{who.split()[0]}.txt"
                    spies.append((who, out, start_pyspy(pid, prof_secs + 1.0, out)))
                if args.profile_at == "half":
                    profiled = await drv.open(
                        "profiled (py-spy)", sustained.rate / 2, prof_secs + 1.0, cap=4 * best
                    )
                else:
                    profiled = await drv.closed("profiled (py-spy)", best, prof_secs, warmup=1.0)
                log(profiled.line())
                for _, _, proc in spies:
                    if proc is not None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=30)
                report["pyspy"] = [(who, summarize_pyspy(out)) for who, out, _ in spies]
                report["profile_at"] = args.profile_at

            # -- many keys: RSS growth per key --------------------------------------------------
            rss0 = mem.sample()
            created = 1
            t = time.perf_counter()
            deadline = time.monotonic() + args.key_budget
            key_times: list[float] = []
            if args.keys > 0:
                with Bar("keys (DKG each)", args.key_budget) as bar:

                    async def maker(w: int) -> None:
                        nonlocal created
                        while created < args.keys + 1 and time.monotonic() < deadline:
                            created += 1
                            s = time.perf_counter()
                            try:
                                await clients[w % len(clients)].create_key(description="bulk")
                                key_times.append(time.perf_counter() - s)
                            except Exception as exc:
                                report.setdefault("key_errors", Counter())[type(exc).__name__] += 1
                            bar.update(f"{len(key_times)}/{args.keys} keys")

                    with trio.move_on_after(args.key_budget + 60):
                        async with trio.open_nursery() as nursery:
                            for w in range(args.key_conc):
                                nursery.start_soon(maker, w)
            key_secs = time.perf_counter() - t
            rss1 = mem.sample()
            report["keys"] = (len(key_times), key_secs, rss0, rss1, key_times)

            if args.soak > 0:
                soak_start = len(mem.samples)
                mem_every = 1.0  # MemWatch samples each node once a second
                soak = await drv.open(
                    "soak (half load)", sustained.rate / 2, args.soak, cap=4 * best
                )
                log(soak.line())
                pts: dict[int, list[tuple[float, float]]] = defaultdict(list)
                for ts, rss in mem.samples[soak_start:]:
                    for node, v in rss.items():
                        pts[node].append((ts, v))
                report["soak"] = (soak, pts, mem_every)
        root.cancel_scope.cancel()


def print_report(
    args: argparse.Namespace,
    ceiling: Ceiling,
    r: dict[str, Any],
    blocks: list[tuple[float, Counter[str]]],
) -> None:
    sus: Phase = r["sustained"]
    half: Phase = r["half"]
    mem: MemWatch = r["mem"]
    crypto_rate = 1 / ceiling.crypto_s
    pipe_rate = 1 / ceiling.pipeline_s
    p_rate, b_rate, per_block = payload_rate(blocks, sus.wall)
    hp_rate, hb_rate, _ = payload_rate(blocks, half.wall)
    print()
    print("=" * 92)
    print("Crypto per decrypt (n = 4, t = 3), one core, no network, no consensus:")
    for name, k, s in ceiling.steps:
        print(f"  {name:<52} x{k}  {1e6 * s:8.1f} us  = {1e6 * k * s:8.1f} us")
    print(
        f"  {'total':<52}     {'':>8}     {1e6 * ceiling.crypto_s:8.1f} us"
        f"  -> {crypto_rate:6.1f} decrypts/s"
    )
    print(
        f"  LocalNetwork pipeline (crypto + state machines + encodings): "
        f"{1e6 * ceiling.pipeline_s:8.1f} us -> {pipe_rate:6.1f} decrypts/s"
    )
    print()
    print(
        "Concurrency sweep (closed loop, "
        f"{args.clients} AsyncDistributedKMS clients, {args.sweep_seconds:.0f}s each):"
    )
    for ph in r["sweep"]:
        print("  " + ph.line())
    print()
    rows: list[tuple[str, str, str, str]] = []

    def row(what: str, ours: str, ceil: str = "", ratio: str = "") -> None:
        rows.append((what, ours, ceil, ratio))

    row(
        f"sustained decrypts/s (conc {sus.concurrency})",
        f"{sus.rate:.1f}",
        f"{crypto_rate:.1f}",
        f"{100 * sus.rate / crypto_rate:.0f}%  (target >= 50%)",
    )
    if "ceilings" in r:
        before, after = r["ceilings"]
        row(
            "  ceiling measured before / after",
            "",
            f"{1 / before:.1f} / {1 / after:.1f}",
            ceiling_note(before, after, sus.rate),
        )
    row("  vs LocalNetwork pipeline", "", f"{pipe_rate:.1f}", f"{100 * sus.rate / pipe_rate:.0f}%")
    row(
        "  p50 / p99 latency at that load",
        f"{1000 * pct(sus.latencies, 0.5):.0f} / {1000 * pct(sus.latencies, 0.99):.0f} ms",
        f"{1000 * ceiling.crypto_s:.1f} ms",
        "",
    )
    row(
        f"half load ({half.offered:.1f}/s offered, {half.rate:.1f}/s done)",
        f"{1000 * pct(half.latencies, 0.5):.0f} / {1000 * pct(half.latencies, 0.99):.0f} ms",
        "",
        "p50 " + ("OK" if pct(half.latencies, 0.5) < 0.05 else "MISSES") + " (target < 50 ms)",
    )
    segs = segment_p50s(half.starts, half.latencies, HALF_SEGMENT_S)
    if len(segs) > 1:
        row(
            f"  half-load p50 by {HALF_SEGMENT_S:.0f}-s segment",
            " ".join(f"{1000 * x:.0f}" for x in segs) + " ms",
            "",
            "same offered load throughout: the spread is the machine's",
        )
    row("errors (sustained / half)", f"{sum(sus.errors.values())} / {sum(half.errors.values())}")
    # A healthy log under load never times a round out: each timeout stalls every request
    # for a round timeout (1 s, then doubling), so any here is a liveness problem to chase.
    for phase in (sus, half):
        tos = stat_deltas(phase.status0, phase.status1, "timeouts_sent")
        syncs = stat_deltas(phase.status0, phase.status1, "sync_requests_sent")
        row(
            f"  round timeouts / sync requests ({phase.name})",
            f"{sum(tos)} / {sum(syncs)}",
            "",
            "per node: " + ", ".join(f"{a}/{b}" for a, b in zip(tos, syncs, strict=True)),
        )
    row(
        "consensus payloads/s, one log (sustained)",
        f"{p_rate:.1f}",
        "",
        f"{b_rate:.1f} blocks/s, {per_block:.1f}/block",
    )
    row("  delivered x 4 processes (sustained)", f"{4 * p_rate:.1f}")
    row(
        "consensus payloads/s, one log (half load)", f"{hp_rate:.1f}", "", f"{hb_rate:.1f} blocks/s"
    )
    ex0 = {i: s["executor"] for i, s in sus.status0.items() if s}
    ex1 = {i: s["executor"] for i, s in sus.status1.items() if s}
    for i in sorted(ex1):
        if i in ex0:
            d = {k: ex1[i][k] - ex0[i][k] for k in ("partials", "replies", "partials_refused")}
            row(
                f"  node {i} executor /s (sustained)",
                f"{d['partials'] / sus.seconds:.1f} partials",
                "",
                f"{d['replies'] / sus.seconds:.1f} replies, {d['partials_refused']} refused",
            )
    # Where a request's time goes inside the nodes: ordering = from arrival at the node to
    # the block holding it being delivered (mempool wait + consensus rounds); execution = from
    # then to the node's answer being ready. The rest of the client's latency is the network
    # both ways and the client's own work.
    for phase in (sus, half):
        for i, s in sorted(phase.status1.items()):
            lat = (s or {}).get("latency_ms")
            if lat and lat.get("samples"):
                row(
                    f"  node {i} ordering / execution ({phase.name})",
                    f"{lat['ordering_p50']:.0f} / {lat['execution_p50']:.1f} ms p50",
                    "",
                    f"p99 {lat['ordering_p99']:.0f} / {lat['execution_p99']:.1f} ms, "
                    f"{lat['samples']} requests",
                )
    # Every round waits for one fsync (the vote's safety data) on each replica; four nodes on
    # one disk flush at the same moment, so this is where a shared disk shows.
    for phase in (sus, half):
        for i, s1 in sorted(phase.status1.items()):
            fs = fsync_delta((phase.status0.get(i) or {}), (s1 or {}))
            if fs is not None:
                count, mean, p50, p90 = fs
                row(
                    f"  node {i} vote fsync ({phase.name})",
                    f"{mean:.2f} ms mean",
                    "",
                    f"p50 <= {p50:g} ms, p90 <= {p90:g} ms, {count} fsyncs",
                )
    for i in sorted(mem.peak):
        row(f"node {i} peak RSS (VmHWM, whole run)", f"{mem.peak[i]:.0f} MB", "", "target < 200 MB")
    n_keys, key_secs, rss0, rss1, key_times = r["keys"]
    row("one DKG over the testnet (first key)", f"{r['dkg_first_s']:.2f} s")
    if n_keys:
        row(
            f"keys created ({args.key_conc} at a time)",
            f"{n_keys} in {key_secs:.0f} s",
            "",
            f"{n_keys / key_secs:.2f} keys/s, p50 {statistics.median(key_times):.2f} s each",
        )
        for i in sorted(rss1):
            growth = (rss1[i] - rss0[i]) / n_keys
            # A few keys move RSS by allocator noise (MBs at once): a line through them says
            # nothing about 10,000. scripts/bench_keys.py measures that for real.
            projection = (
                f"10,000 keys ~ {rss1[i] + growth * (10_000 - n_keys - 1):.0f} MB (EXTRAPOLATED)"
                if n_keys >= 1000
                else "too few keys to extrapolate: scripts/bench_keys.py --keys 10000"
            )
            row(
                f"node {i} RSS before/after {n_keys} keys",
                f"{rss0[i]:.0f} -> {rss1[i]:.0f} MB",
                "",
                f"{1024 * growth:+.1f} KB/key; {projection}",
            )
        row(
            "time for 10,000 keys at this rate",
            f"~{10_000 / (n_keys / key_secs) / 3600:.1f} h (EXTRAPOLATED)",
        )
    if "soak" in r:
        soak, pts, _every = r["soak"]
        soak_rows(args.soak, soak, pts, row)
    w = [
        max(len(x[c]) for x in [*rows, ("", "ours", "ceiling (1 core)", "ratio / note")])
        for c in range(4)
    ]
    hdr = ("", "ours", "ceiling (1 core)", "ratio / note")
    print("  ".join(h.ljust(w[c]) for c, h in enumerate(hdr)))
    print("  ".join("-" * w[c] for c in range(4)))
    for x in rows:
        print("  ".join(x[c].ljust(w[c]) for c in range(4)))
    print()
    print("What limits it")
    for label, phase, per_s in (("sustained run", sus, b_rate), ("half-load run", half, hb_rate)):
        for ln in cpu_lines(
            label,
            phase.seconds,
            len(phase.latencies),
            phase.cpu0,
            phase.cpu1,
            ceiling.crypto_s,
            per_s,
        ):
            print(ln)
    for ln in curve_table(
        sorted([*r.get("curve", []), (0.5, half), (1.0, sus)], key=lambda x: x[0])
    ):
        print(ln)
    for who, lines in r.get("pyspy", []):
        at = "half load" if r.get("profile_at") == "half" else "the sustained concurrency"
        print(f" py-spy, {who}, during a run of its own at {at}:")
        for ln in lines:
            print(ln)
    print(" cProfile of the in-process pipeline (LocalNetwork), top by self time:")
    for ln in ceiling.profile_top:
        print("   " + ln.strip()[:120])
    print("=" * 92)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0, help="sustained and half-load seconds")
    ap.add_argument("--sweep-seconds", type=float, default=8.0)
    ap.add_argument("--conc", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--clients", type=int, default=4, help="AsyncDistributedKMS instances")
    ap.add_argument("--ciphertexts", type=int, default=16)
    ap.add_argument(
        "--keys", type=int, default=30, help="keys (DKGs) to create for the RSS figures"
    )
    ap.add_argument("--key-budget", type=float, default=60.0, help="seconds allowed for --keys")
    ap.add_argument("--key-conc", type=int, default=4, help="key creations in flight")
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of half load with RSS samples")
    ap.add_argument("--reps", type=int, default=200, help="repetitions per ceiling step")
    ap.add_argument("--pipeline", type=int, default=100, help="decrypts through LocalNetwork")
    ap.add_argument(
        "--curve",
        type=float,
        nargs="*",
        default=[0.1, 0.25, 0.75],
        help="fractions of the sustained rate for the load curve (none: skip it)",
    )
    ap.add_argument("--curve-seconds", type=float, default=8.0, help="seconds per curve point")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument(
        "--profile-at",
        choices=("sustained", "half"),
        default="sustained",
        help="the load the py-spy run profiles: the sustained concurrency, or half load",
    )
    ap.add_argument("--keep", action="store_true", help="keep the testnet directory")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    # SIGTERM tears down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    log("measuring the crypto-bound ceiling (one core, in process) ...")
    ceiling = measure_ceiling(args.reps, args.pipeline)
    log(
        f"  crypto {1e3 * ceiling.crypto_s:.2f} ms/decrypt -> {1 / ceiling.crypto_s:.1f}/s; "
        f"pipeline {1e3 * ceiling.pipeline_s:.2f} ms -> {1 / ceiling.pipeline_s:.1f}/s"
    )
    report: dict[str, Any] = {}
    with fresh_testnet(4, args.keep) as tn:
        log(f"starting a 4-node testnet in {tn.dir} ...")
        t = time.perf_counter()
        wait_healthy(tn, 120)
        log(f"  healthy after {time.perf_counter() - t:.1f}s")
        trio.run(bench, args, tn, report)
        tn.stop_all()
        blocks = read_log(tn)
        # The VM's speed drifts (the same crypto measured 3.9-6.8 ms per decrypt on one day):
        # measure again after the run and hold ours against the faster of the two.
        log("measuring the ceiling again (after the run) ...")
        again = measure_ceiling(args.reps, args.pipeline)
        report["ceilings"] = (ceiling.crypto_s, again.crypto_s)
        ceiling = min(ceiling, again, key=lambda c: c.crypto_s)
        print_report(args, ceiling, report, blocks)
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
