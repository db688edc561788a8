"""``python -m testnet``: launch and control a local n-node network.

python -m testnet up -n 4 [--dir DIR] [--f F] [--t T]
python -m testnet status | kill NODE | restart NODE | down [--purge]
python -m testnet partition 1,2 3,4 | partition 4 | heal     (fault drills)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from ._control import statuses, wait_healthy, wait_partitioned
from ._launcher import DEFAULT_DIR, TESTNET_MIN_DELETION_WAIT_S, Testnet


def _genesis_line(report: Any) -> str:
    """Peers a node found running another genesis (it cut itself off from them)."""
    if not isinstance(report, dict) or not report.get("mismatched"):
        return ""
    return f"  GENESIS differs on nodes {report['mismatched']}"


def _rules_line(rules: Any) -> str:
    """The state rules a node's log runs, and what an upgrade still waits for."""
    if not isinstance(rules, dict):
        return ""
    out = f"  rules v{rules.get('version')}"
    if rules.get("pending"):
        version, height = rules["pending"][:2]
        out += f" (v{version} at height {height}"
        if rules.get("leave_behind"):
            out += f", may leave nodes {rules['leave_behind']} behind"
        out += ")"
    for version, lacking in sorted((rules.get("nodes_lacking") or {}).items()):
        out += f" (v{version}: " + (f"waiting for nodes {lacking})" if lacking else "ready)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet", description=__doc__)
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="testnet directory")
    # ``--dir`` also after the command (``up -n 4 --dir DIR``); SUPPRESS keeps the top-level one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS, help="testnet directory")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "up",
        parents=[common],
        help="generate (if needed) and start every node, wait until healthy",
    )
    p.add_argument("-n", type=int, default=4)
    p.add_argument("--f", type=int, default=None)
    p.add_argument("--t", type=int, default=None)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument(
        "--min-deletion-wait",
        type=int,
        default=TESTNET_MIN_DELETION_WAIT_S,
        metavar="SECONDS",
        help="shortest wait before a scheduled key deletion (a new testnet; default "
        f"{TESTNET_MIN_DELETION_WAIT_S} s, where a production genesis keeps 7 days)",
    )
    sub.add_parser("status", parents=[common], help="per node: up, round, height, peers")
    p = sub.add_parser("kill", parents=[common], help="SIGKILL one node (a crash)")
    p.add_argument("node", type=int)
    p = sub.add_parser("restart", parents=[common], help="start a killed node again")
    p.add_argument("node", type=int)
    p = sub.add_parser(
        "partition",
        parents=[common],
        help="cut the network between groups of nodes, e.g. `partition 1,2 3,4` or `partition 4`",
    )
    p.add_argument("groups", nargs="+", help="comma-separated node ids; the rest form a group")
    p.add_argument("--timeout", type=float, default=10.0)
    p = sub.add_parser("heal", parents=[common], help="undo `partition`")
    p.add_argument("--timeout", type=float, default=10.0)
    p = sub.add_parser("down", parents=[common], help="stop every node")
    p.add_argument("--purge", action="store_true", help="also delete the directory")
    args = parser.parse_args(argv)
    tn = Testnet(Path(args.dir).resolve())

    if args.command == "up":
        if not (tn.dir / "genesis.json").exists():
            print(f"generating a {args.n}-node testnet in {tn.dir} ...", flush=True)
            tn.generate(args.n, args.f, args.t, min_deletion_wait_s=args.min_deletion_wait)
        for i in tn.nodes():
            if not tn.alive(i):
                tn.start(i)
        print("waiting for the nodes to connect and commit ...", flush=True)
        st = wait_healthy(tn, args.timeout)
        rec = tn.record()
        print(f"testnet up: n={rec['n']} f={rec['f']} t={rec['t']} chain={rec['chain_id']}")
        for i, s in sorted(st.items()):
            console = tn.console(i)
            where = f"  console {console[0]} (token in {console[1]})" if console else ""
            print(f"  node {i}: height {s['height']} round {s['round']}{where}")
        print(f"client config: {tn.dir / 'client.json'}")
        print(f"  export KMS_CONFIG={tn.dir / 'client.json'}")
        return 0
    if args.command == "status":
        import trio

        from kmsnode.genesis import Genesis

        genesis = Genesis.load(tn.dir / "genesis.json")
        st = trio.run(statuses, genesis, tn.nodes())
        for i in tn.nodes():
            s = st.get(i)
            if s is None:
                state = "running, not answering" if tn.alive(i) else "down"
                print(f"node {i}: {state}")
            else:
                peers = sum(1 for v in s["peers"].values() if v)
                rss = s.get("memory", {}).get("rss_kb", 0) / 1024
                print(
                    f"node {i}: up  round {s['round']}  height {s['height']}  "
                    f"leader {s['leader']}  peers {peers}/{len(s['peers'])}  keys {s['keys']}  "
                    f"rss {rss:.0f} MB"
                    + (
                        f"  CUT OFF from {s['partitioned_from']}"
                        if s.get("partitioned_from")
                        else ""
                    )
                    + _rules_line(s.get("rules"))
                    + _genesis_line(s.get("genesis"))
                )
            console = tn.console(i)
            if console is not None:
                print(f"        console {console[0]} (token in {console[1]})")
        return 0
    if args.command == "kill":
        tn.kill(args.node)
        print(f"node {args.node} killed")
        return 0
    if args.command == "restart":
        if tn.alive(args.node):
            tn.kill(args.node)
        print(f"node {args.node} started (pid {tn.start(args.node)})")
        return 0
    if args.command in ("partition", "heal"):
        if args.command == "partition":
            groups = [{int(x) for x in g.split(",") if x} for g in args.groups]
            cuts = tn.partition(groups)
        else:
            tn.heal()
            cuts = {i: set() for i in tn.nodes()}
        wait_partitioned(tn, cuts, args.timeout)
        for i, cut in sorted(cuts.items()):
            print(f"node {i}: cut off from {sorted(cut) or 'nobody'}")
        return 0
    if args.command == "down":
        if tn.record_path.exists():
            tn.stop_all()
        if args.purge and tn.dir.exists():
            shutil.rmtree(tn.dir)
        print("testnet down" + (" and removed" if args.purge else ""))
        return 0
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, FileExistsError, TimeoutError, ValueError) as exc:
        print(f"testnet: {exc}", file=sys.stderr)
        sys.exit(2)
    except json.JSONDecodeError as exc:
        print(f"testnet: damaged testnet.json ({exc})", file=sys.stderr)
        sys.exit(2)
