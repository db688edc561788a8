"""Benchmark threshold signing: FROST(Ed25519, SHA-512) rounds and threshold BLS operations.

One run prints one table: FROST round 1 / round 2 / aggregate and BLS partial sign / partial
verify / combine at (n, t) = (3, 2), (4, 3), (16, 11), beside py_ecc's ``Sign`` and ``Verify``
measured in the same run, and the Zcash Foundation's published Rust FROST figures. Times are
medians per operation (one signer's round 1 and round 2; the coordinator's aggregate; one
partial signature and one partial verification; a combination of ``t`` partials, which
verifies each of them). Last, plain Ed25519 verification as every request, response and vote
is checked: ours (libsodium) beside OpenSSL's (``cryptography``), same run.

Usage: ``python scripts/bench_sign.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_typing import BLSPubkey
from py_ecc.bls.ciphersuites import G2ProofOfPossession

from kmsnode.crypto import bls, frost, shamir
from kmsnode.crypto.frost import FROST_ED25519_SHA512 as SUITE
from kmsnode.crypto.groups import BLS12_381_G1
from kmsnode.crypto.signatures import verify_ed25519

POINTS = [(3, 2), (4, 3), (16, 11)]
ZF_RUST_MS = {"round2": 0.12, "aggregate": 0.22}  # frost-ed25519, (3, 2), as published
MSG = b"benchmark message"


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _time(fn: Callable[[], object], reps: int) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return _median_ms(samples)


def bench_frost(n: int, t: int, reps: int) -> dict[str, float]:
    """Median ms of one signer's round 1, one signer's round 2, and the aggregation."""
    keys, public = frost.split(SUITE, SUITE.group.random_scalar(), n, t)
    signers = keys[:t]
    r1, r2, agg = [], [], []
    for _ in range(reps):
        nonces, commitments = [], []
        for k in signers:
            start = time.perf_counter()
            pair = frost.commit(SUITE, k)
            r1.append(time.perf_counter() - start)
            nonces.append(pair[0])
            commitments.append(pair[1])
        package = frost.SigningPackage(tuple(commitments), MSG)
        shares = []
        for k, nonce in zip(signers, nonces, strict=True):
            start = time.perf_counter()
            shares.append(frost.sign(SUITE, package, nonce, k, MSG))
            r2.append(time.perf_counter() - start)
        start = time.perf_counter()
        frost.aggregate(SUITE, package, shares, public)
        agg.append(time.perf_counter() - start)
    return {"round1": _median_ms(r1), "round2": _median_ms(r2), "aggregate": _median_ms(agg)}


def bench_bls(n: int, t: int, reps: int) -> dict[str, float]:
    """Median ms of one partial signature, one partial verification, one combination."""
    g = BLS12_381_G1
    shares, _ = shamir.split(g, g.random_scalar(), n, t)
    vks = {s.id: g.base_mul(s.value) for s in shares}
    partials = [bls.partial_sign(s, MSG) for s in shares[:t]]
    return {
        "partial_sign": _time(lambda: bls.partial_sign(shares[0], MSG), reps),
        "partial_verify": _time(lambda: bls.verify_partial(partials[0], vks[1], MSG), reps),
        "combine": _time(lambda: bls.combine(partials, MSG, vks, t), max(3, reps // 4)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    frost_reps, bls_reps, ref_reps = (10, 5, 1) if args.quick else (60, 20, 3)

    secret = BLS12_381_G1.random_scalar()
    public = BLSPubkey(BLS12_381_G1.encode(BLS12_381_G1.base_mul(secret)))
    signature = G2ProofOfPossession.Sign(secret, MSG)
    ref_sign = _time(lambda: G2ProofOfPossession.Sign(secret, MSG), ref_reps)
    ref_verify = _time(lambda: G2ProofOfPossession.Verify(public, MSG, signature), ref_reps)

    rows = []
    for n, t in POINTS:
        f = bench_frost(n, t, frost_reps)
        b = bench_bls(n, t, bls_reps)
        rows.append((n, t, f, b))

    print("Threshold signing benchmark (medians, ms per operation)")
    print(f"py_ecc reference, same run: Sign {ref_sign:.1f} ms, Verify {ref_verify:.1f} ms")
    print(
        f"ZF frost (Rust) published at (3,2): round2 {ZF_RUST_MS['round2']} ms, "
        f"aggregate {ZF_RUST_MS['aggregate']} ms"
    )
    print()
    header = (
        f"{'(n,t)':>8} | {'FROST r1':>8} {'FROST r2':>8} {'FROST agg':>9} | "
        f"{'BLS psign':>9} {'x py_ecc':>8} | {'BLS pverify':>11} {'x py_ecc':>8} | "
        f"{'BLS combine':>11}"
    )
    print(header)
    print("-" * len(header))
    for n, t, f, b in rows:
        print(
            f"{f'({n},{t})':>8} | {f['round1']:8.3f} {f['round2']:8.3f} {f['aggregate']:9.3f} | "
            f"{b['partial_sign']:9.3f} {ref_sign / b['partial_sign']:7.0f}x | "
            f"{b['partial_verify']:11.3f} {ref_verify / b['partial_verify']:7.0f}x | "
            f"{b['combine']:11.3f}"
        )
    print()
    f32 = rows[0][2]
    ours = f32["round2"] + f32["aggregate"]
    rust = ZF_RUST_MS["round2"] + ZF_RUST_MS["aggregate"]
    sign_ratio = ref_sign / rows[0][3]["partial_sign"]
    print(
        f"FROST round2+aggregate at (3,2): {ours:.3f} ms vs Rust {rust:.2f} ms = "
        f"{ours / rust:.1f}x (target <= 5x: {'met' if ours / rust <= 5 else 'MISSED'})"
    )
    print(
        f"  round2 {f32['round2'] / ZF_RUST_MS['round2']:.1f}x Rust, "
        f"aggregate {f32['aggregate'] / ZF_RUST_MS['aggregate']:.1f}x Rust"
    )
    print(
        f"BLS partial sign vs py_ecc Sign at (3,2): {sign_ratio:.0f}x faster "
        f"(target >= 200x: {'met' if sign_ratio >= 200 else 'MISSED'})"
    )

    print_ed25519_verify(2000 if args.quick else 20000)


def print_ed25519_verify(reps: int) -> None:
    """Ed25519 verification of one 100-byte message: ours (libsodium) and OpenSSL's."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    message = bytes(100)
    sig = key.sign(message)

    ours = _time(lambda: verify_ed25519(raw, sig, message), reps) * 1000  # us
    openssl = _time(lambda: public.verify(sig, message), reps) * 1000
    print(
        f"Ed25519 verify: ours (libsodium) {ours:.1f} us, OpenSSL {openssl:.1f} us "
        f"= {openssl / ours:.2f}x faster"
    )


if __name__ == "__main__":
    main()
