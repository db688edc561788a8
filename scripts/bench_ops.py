"""Benchmark: each threshold operation through a fresh 4-node testnet, beside its ceiling.

For ``decrypt`` (TDH2), ``decrypt_sum`` (exponential ElGamal, values below 2^16), ``sign``
(threshold BLS) and ``sign_frost`` (FROST Ed25519), closed loop from one
``AsyncDistributedKMS`` at concurrency 1 (latency) and ``--conc`` (throughput), ``--seconds``
each. The ceiling beside each is the same request
through ``kmsnode.testing.LocalNetwork`` in this process, on one core, with no network and no
consensus: the four state machines, executors and the client core, crypto included. The
ratio says how much of that the real network keeps (above 100% is possible: the testnet has
both cores). ``scripts/bench_e2e.py`` is the full study of ``decrypt`` (load curve, memory,
profiles); this one puts the operations side by side.

Run: ``python scripts/bench_ops.py [--seconds 5] [--conc 16]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import Bar, log
from bench_e2e import fresh_testnet

from kmsnode.client import AsyncDistributedKMS
from kmsnode.client._core import KeyMaterial
from kmsnode.crypto import elgamal, tdh2
from kmsnode.testing import LocalNetwork
from kmsnode.wire import sums
from kmsnode.wire.requests import Decrypt, DecryptSum, KeyKind, Sign
from testnet._control import wait_healthy

OPS = ("decrypt", "decrypt_sum", "sign", "sign_frost")
CONTEXT = {"bench": "ops"}


# -- the ceiling: one process, one core, no network -------------------------------------------
def ceilings(reps: int) -> dict[str, float]:
    """Operations per second through the in-process pipeline, per operation."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as d:
        net = LocalNetwork(Path(d))
        try:
            kinds = (KeyKind.ENCRYPT, KeyKind.HOMOMORPHIC, KeyKind.SIGN_BLS, KeyKind.SIGN_ED25519)
            keys = {kind: net.create_key(kind, "bench") for kind in kinds}
            materials = {kind: net.key_material(key) for kind, key in keys.items()}
            enc = materials[KeyKind.ENCRYPT]
            ct = tdh2.encrypt(
                enc.public_key,
                b"x" * 32,
                key_id=keys[KeyKind.ENCRYPT],
                key_version=1,
                context=CONTEXT,
            )
            hom = materials[KeyKind.HOMOMORPHIC]
            total = sums.SumCiphertext(
                keys[KeyKind.HOMOMORPHIC], 1, elgamal.encrypt_int(hom.public_key, 1234)
            ).encode()
            cases: dict[str, tuple[Callable[[], Any], KeyMaterial]] = {
                "decrypt": (lambda: Decrypt(ct, dict(CONTEXT)), enc),
                "decrypt_sum": (lambda: DecryptSum(total), hom),
                "sign": (
                    lambda: Sign(keys[KeyKind.SIGN_BLS], b"bench"),
                    materials[KeyKind.SIGN_BLS],
                ),
                "sign_frost": (
                    lambda: Sign(keys[KeyKind.SIGN_ED25519], b"bench"),
                    materials[KeyKind.SIGN_ED25519],
                ),
            }
            for name, (op, km) in cases.items():
                net.run(net.client.prepare(op(), now_ms=net.time_ms), km)  # warm
                t0 = time.perf_counter()
                for _ in range(reps):
                    c = net.run(net.client.prepare(op(), now_ms=net.time_ms), km)
                    if name == "decrypt_sum":
                        elgamal.discrete_log(c.result, 2**16)
                    assert c.done
                out[name] = reps / (time.perf_counter() - t0)
        finally:
            net.close()
    return out


# -- the testnet ----------------------------------------------------------------------------------
async def closed_loop(
    label: str, call: Callable[[], Awaitable[Any]], conc: int, seconds: float
) -> tuple[float, list[float]]:
    """``conc`` workers calling ``call`` back to back for ``seconds``: (ops/s, latencies)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            await call()
            latencies.append(time.monotonic() - t0)

    with Bar(label, seconds) as bar:
        t0 = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(conc):
                nursery.start_soon(worker)
            while time.monotonic() < deadline:
                bar.update(f"{len(latencies)} done")
                await trio.sleep(0.25)
        elapsed = time.monotonic() - t0
    return len(latencies) / elapsed, latencies


def _q(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else float("nan")
    )


async def on_testnet(client_json: Path, seconds: float, conc: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with AsyncDistributedKMS.from_config(client_json, timeout=60) as kms:
        enc = (await kms.create_key("encrypt", "bench")).key_id
        hom = (await kms.create_key("homomorphic", "bench")).key_id
        signer = (await kms.create_key("sign-bls", "bench")).key_id
        frost_signer = (await kms.create_key("sign-ed25519", "bench")).key_id
        ct = await kms.encrypt(enc, b"x" * 32, CONTEXT)
        total = kms.add(*[await kms.encrypt_int(hom, v) for v in (1000, 234)])
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "decrypt": lambda: kms.decrypt(ct, CONTEXT),
            "decrypt_sum": lambda: kms.decrypt_sum(total, 2**16),
            "sign": lambda: kms.sign(signer, b"bench"),
            "sign_frost": lambda: kms.sign(frost_signer, b"bench"),
        }
        for name, call in calls.items():
            await call()  # warm: key material cached, search table built
            rate1, lat1 = await closed_loop(f"{name} (conc 1)", call, 1, seconds)
            rate, lat = await closed_loop(f"{name} (conc {conc})", call, conc, seconds)
            results[name] = {
                "p50_1": _q(lat1, 50),
                "rate": rate,
                "p50": _q(lat, 50),
                "p99": _q(lat, 99),
                "rate1": rate1,
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--reps", type=int, default=50, help="in-process requests per op")
    args = parser.parse_args()
    log("measuring the in-process ceilings (one core, no network) ...")
    ceiling = ceilings(args.reps)
    log("starting a 4-node testnet ...")
    with fresh_testnet(4, keep=False) as tn:
        wait_healthy(tn, 120)
        results = trio.run(on_testnet, tn.dir / "client.json", args.seconds, args.conc)
    rate = f"conc {args.conc} ops/s"
    print("=" * 92)
    print(
        f"{'operation':<12} {'conc 1 p50':>10} {rate:>14} {'p50':>8} {'p99':>8} "
        f"{'in-process ops/s':>17} {'ratio':>6}"
    )
    for name in OPS:
        r = results[name]
        print(
            f"{name:<12} {r['p50_1']:>7.1f} ms {r['rate']:>14.1f} {r['p50']:>5.1f} ms "
            f"{r['p99']:>5.1f} ms {ceiling[name]:>17.1f} {r['rate'] / ceiling[name]:>6.0%}"
        )
    print(
        "in-process: the same request through LocalNetwork (4 state machines + executors + the "
        "client core, crypto included) on one core; decrypt_sum includes the client's search "
        "(values < 2^16)"
    )
    print("command: python " + " ".join(sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
