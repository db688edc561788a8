"""Run a large sweep of seeded Twins scenarios (the CI test runs a bounded subset).

    python scripts/twins_sweep.py [--seeds 1000] [--start 0] [--n 4] [--rounds 8] [--twins F]

Prints a summary and every failing seed; exits non-zero if any scenario broke safety or
failed to commit every payload after the network healed. Re-run one seed with
``--start SEED --seeds 1``.
"""

from __future__ import annotations

import argparse
import sys
import time

from consensus.testing import TwinsScenario, run_twins


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--twins", type=int, default=None, help="twinned identities (default f)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    failures: list[tuple[int, str]] = []
    equivocating = 0
    for seed in range(args.start, args.start + args.seeds):
        twins = args.twins if args.twins is not None else (args.n - 1) // 3
        scenario = TwinsScenario(seed=seed, n=args.n, rounds=args.rounds, twins=twins)
        try:
            result = run_twins(scenario)
        except AssertionError as exc:
            failures.append((seed, f"SAFETY: {exc}"))
            continue
        equivocating += result.equivocations > 0
        if not result.live:
            failures.append((seed, "LIVENESS: payloads not committed after healing"))
    dt = time.perf_counter() - t0
    print(
        f"{args.seeds} scenarios (n={args.n}, {args.rounds} partitioned rounds) in {dt:.1f}s; "
        f"{equivocating} with twin equivocation; {len(failures)} failures"
    )
    for seed, why in failures:
        print(f"  seed {seed}: {why}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
