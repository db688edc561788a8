"""Benchmark: our TDH2 (ristretto255, libsodium) beside ferveo's threshold decryption.

Measures in one run, at (n, t) = (4, 3) and (16, 11): encryption, one partial decryption
(ciphertext check + partial + DLEQ proof), and combination of t partials (the client's work,
AEAD opening included) both optimistic (proofs checked only if the AEAD fails) and with every
proof verified first; the same operations of ferveo (``nucypher_core.ferveo``: the
threshold decryption of the Threshold network, BLS12-381 based); and Coinbase cb-mpc's
published TDH2 partial-decryption figure (0.36-0.44 ms per partial, one CPU thread) as a
fixed reference. Also the BSGS discrete log of the homomorphic sums.

Run: ``.venv/bin/python scripts/bench_crypto.py`` (needs the ``bench`` extra: nucypher-core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from kmsnode.crypto import elgamal, feldman, shamir, tdh2
from kmsnode.crypto.groups import RISTRETTO255 as G

CB_MPC_PARTIAL_MS = (0.36, 0.44)
MESSAGE = os.urandom(256)
AAD = {"app": "bench"}


def timeit(fn: Callable[[], object], repeat: int) -> float:
    """Median over ``repeat`` runs, in milliseconds."""
    fn()  # warm up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def ours(n: int, t: int, repeat: int) -> dict[str, float]:
    shares, coeffs = shamir.split(G, G.random_scalar(), n, t)
    c = feldman.commit(G, coeffs)
    y = c[0]
    vks = feldman.verification_keys(G, c, range(1, n + 1))
    ct = tdh2.encrypt(y, MESSAGE, key_id="bench", key_version=1, context=AAD)
    partials = [tdh2.partial_decrypt(s, y, ct, AAD, verification_key=vks[s.id]) for s in shares[:t]]
    return {
        "encrypt": timeit(
            lambda: tdh2.encrypt(y, MESSAGE, key_id="bench", key_version=1, context=AAD), repeat
        ),
        "partial": timeit(
            lambda: tdh2.partial_decrypt(shares[0], y, ct, AAD, verification_key=vks[1]), repeat
        ),
        "combine": timeit(lambda: tdh2.combine(y, ct, partials, vks, t, AAD), max(3, repeat // 4)),
        "combine_verified": timeit(
            lambda: tdh2.combine(y, ct, partials, vks, t, AAD, optimistic=False),
            max(3, repeat // 4),
        ),
    }


def ferveo(n: int, t: int, repeat: int) -> dict[str, float] | None:
    try:
        from nucypher_core import ferveo as fv
    except ImportError:
        return None
    keypairs = [fv.Keypair.random() for _ in range(n)]
    validators = [
        fv.Validator(f"0x{i + 1:040x}", kp.public_key(), i) for i, kp in enumerate(keypairs)
    ]
    dkgs = [fv.Dkg(1, n, t, validators, v) for v in validators]
    messages = [
        fv.ValidatorMessage(v, d.generate_transcript())
        for v, d in zip(validators, dkgs, strict=True)
    ]
    aggregate = dkgs[0].aggregate_transcripts(messages)
    aad = b"bench"
    ct = fv.encrypt(MESSAGE, aad, aggregate.public_key)
    header = ct.header
    agg = [d.aggregate_transcripts(messages) for d in dkgs[:t]]
    shares = [
        a.create_decryption_share_simple(d, header, aad, kp)
        for a, d, kp in zip(agg, dkgs[:t], keypairs[:t], strict=True)
    ]

    def combine() -> bytes:
        secret = fv.combine_decryption_shares_simple(shares)
        return bytes(fv.decrypt_with_shared_secret(ct, aad, secret))

    assert combine() == MESSAGE
    return {
        "encrypt": timeit(lambda: fv.encrypt(MESSAGE, aad, aggregate.public_key), repeat),
        "partial": timeit(
            lambda: agg[0].create_decryption_share_simple(dkgs[0], header, aad, keypairs[0]),
            max(3, repeat // 4),
        ),
        "combine": timeit(combine, max(3, repeat // 4)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="samples per figure (median)")
    args = parser.parse_args()
    print(f"TDH2 benchmark, median of {args.repeat} runs, 256-byte messages, times in ms\n")
    header = f"{'(n,t)':<8} {'operation':<22} {'ours':>9} {'ferveo':>9} {'ferveo/ours':>12}"
    print(header)
    print("-" * len(header))
    for n, t in [(4, 3), (16, 11)]:
        a = ours(n, t, args.repeat)
        b = ferveo(n, t, args.repeat)
        # (our figure, ferveo's figure to compare with)
        names = {
            "encrypt": ("encrypt", "encrypt"),
            "partial": ("partial decrypt+proof", "partial"),
            "combine": (f"combine {t} (optimistic)", "combine"),
            "combine_verified": (f"verify {t} + combine", "combine"),
        }
        for op, (label, theirs_op) in names.items():
            theirs = f"{b[theirs_op]:9.3f}" if b else "      n/a"
            ratio = f"{b[theirs_op] / a[op]:11.1f}x" if b else "         n/a"
            print(f"{f'({n},{t})':<8} {label:<22} {a[op]:9.3f} {theirs} {ratio}")
        lo, hi = CB_MPC_PARTIAL_MS
        print(
            f"{f'({n},{t})':<8} {'cb-mpc partial (pub.)':<22} {a['partial']:9.3f} "
            f"{f'{lo}-{hi}':>9} {lo / a['partial']:5.2f}-{hi / a['partial']:.2f}x"
        )
    print()
    start = time.perf_counter()
    elgamal.discrete_log(G.base_mul(1), 2**32)
    table = time.perf_counter() - start
    worst = timeit(lambda: elgamal.discrete_log(G.base_mul(2**32 - 1), 2**32), 5)
    print(
        f"ElGamal BSGS, bound 2^32: table build {table * 1e3:.0f} ms (once per process), "
        f"worst-case search {worst:.0f} ms"
    )


if __name__ == "__main__":
    main()
