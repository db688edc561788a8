"""Benchmark: a whole DKG (all participants in one process) beside ferveo's DKG.

For each group and n in (4, 16, 64), with f = (n - 1) // 3 and t = n - f, measures:

- ``deal``: every dealer's deal (polynomial, commitments, proof, n sealed shares, signature),
  summed: the work of all dealers;
- ``node``: one participant consuming the whole committed log to a final result (decode and
  check every deal's signature and proof, open and batch-verify its shares, every
  verification key): what each node does once, in parallel with the others;
- ``scope-F = deal + node``: the same scope as ferveo's figure (every transcript generated, one
  node aggregates), and ``whole``: the whole DKG with all n participants run one after the
  other (``deal + n x node``), measured by the in-process simulator for n up to
  ``--whole-max-n`` and extrapolated above it (marked ``~``).

ferveo (``nucypher_core.ferveo``, BLS12-381): ``gen`` = every validator's
``Dkg.generate_transcript``; ``agg`` = one ``aggregate_transcripts`` plus
``AggregatedTranscript.verify``; ferveo's whole equivalent is ``gen + n x agg``.

Run: ``.venv/bin/python scripts/bench_dkg.py [--groups ...] [--ns 4 16 64]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from kmsnode.crypto import groups as groups_module
from kmsnode.crypto.dkg import (
    Committed,
    Completed,
    HeightReached,
    Kind,
    Participant,
    Post,
    Session,
    Start,
)
from kmsnode.crypto.dkg.testing import Simulation, committee, identities
from kmsnode.crypto.groups import Group


def _session(group: Group[Any], n: int) -> tuple[Session[Any], Any]:
    f = (n - 1) // 3
    ids = identities(n)
    s = Session(
        key_id="bench",
        version=1,
        epoch=0,
        group=group,
        kind=Kind.DKG,
        committee=committee(ids),
        threshold=n - f,
        deal_deadline=1,
        complaint_deadline=2,
        justification_deadline=3,
    )
    return s, ids


def _participant(s: Session[Any], ids: Any, i: int) -> Participant[Any]:
    k = ids[i]
    return Participant(s, signing_key=k.signing_key, sealing_key=k.sealing_key, id=i)


def ours_scope(group: Group[Any], n: int) -> tuple[float, float]:
    """(all dealings, one node's processing of the log to completion), seconds."""
    s, ids = _session(group, n)
    parts = {i: _participant(s, ids, i) for i in ids}
    t0 = time.perf_counter()
    log: list[bytes] = []
    for p in parts.values():
        for a in p.handle(Start()):
            assert isinstance(a, Post)
            log.append(a.message.encode())
    deal = time.perf_counter() - t0
    node = parts[n]  # the last id: no shortcut for its own deal coming first
    t0 = time.perf_counter()
    out = []
    for data in log:
        out += node.handle(Committed(1, data))
    for h in (1, 2, 3):
        out += node.handle(HeightReached(h))
    processing = time.perf_counter() - t0
    assert any(isinstance(a, Completed) for a in out), out
    return deal, processing


def ours_whole(group: Group[Any], n: int) -> float:
    """The whole DKG, all n participants simulated one after the other, seconds."""
    s, ids = _session(group, n)
    parts = {i: _participant(s, ids, i) for i in ids}
    sim: Simulation[int, Any] = Simulation(group, parts)
    t0 = time.perf_counter()
    sim.run(4)
    elapsed = time.perf_counter() - t0
    assert all(sim.completed(i) for i in ids)
    return elapsed


def ferveo(n: int) -> tuple[float, float]:
    """(every validator's transcript, one aggregation + verification), seconds."""
    from nucypher_core.ferveo import Dkg, Keypair, Validator, ValidatorMessage

    t = n - (n - 1) // 3
    keypairs = [Keypair.random() for _ in range(n)]
    validators = [Validator(f"0x{i:040x}", kp.public_key(), i) for i, kp in enumerate(keypairs)]
    t0 = time.perf_counter()
    messages = [
        ValidatorMessage(v, Dkg(1, n, t, validators, v).generate_transcript()) for v in validators
    ]
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    aggregate = Dkg(1, n, t, validators, validators[0]).aggregate_transcripts(messages)
    assert aggregate.verify(n, messages)
    agg = time.perf_counter() - t0
    return gen, agg


def main() -> None:
    default_groups = ["ristretto255", "ed25519", "bls12_381_g1"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=default_groups)
    parser.add_argument("--ns", nargs="+", type=int, default=[4, 16, 64])
    parser.add_argument(
        "--whole-max-n",
        type=int,
        default=16,
        help="simulate every participant up to this n; extrapolate above",
    )
    args = parser.parse_args()
    by_name = {
        g.name.lower(): g
        for g in (getattr(groups_module, x) for x in dir(groups_module))
        if isinstance(g, Group)
    }
    fer = {n: ferveo(n) for n in args.ns}
    header = (
        f"{'group':<14}{'n':>4}{'t':>4} | {'deal':>7}{'node':>7}{'scope-F':>9}"
        f"{'whole':>9} | {'ferveo gen':>10}{'agg':>7}{'whole':>9} | "
        f"{'x scope-F':>9}{'x whole':>8}"
    )
    print(header)
    print("-" * len(header))
    for name in args.groups:
        group = by_name[name.lower()]
        for n in args.ns:
            t = n - (n - 1) // 3
            deal, node = ours_scope(group, n)
            if n <= args.whole_max_n:
                whole, mark = ours_whole(group, n), " "
            else:
                whole, mark = deal + n * node, "~"
            gen, agg = fer[n]
            f_scope, f_whole = gen + agg, gen + n * agg
            print(
                f"{group.name:<14}{n:>4}{t:>4} | {deal:>7.3f}{node:>7.3f}{deal + node:>9.3f}"
                f"{mark}{whole:>8.2f} | {gen:>10.3f}{agg:>7.3f}{f_whole:>9.2f} | "
                f"{f_scope / (deal + node):>8.1f}x{f_whole / whole:>7.1f}x"
            )
    print(
        "\nseconds; 'x' columns = ferveo time / ours (above 1: ours is faster); "
        "'~' = deal + n x node (extrapolated, not simulated)"
    )


if __name__ == "__main__":
    main()
