"""``kmsnode``: the operator's command line (init, genesis, run, status)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import memtrace
from .config import NodeConfig
from .crypto.sealing import SealingPublicKey
from .errors import KMSError
from .genesis import DEFAULT_MIN_DELETION_WAIT_S, Genesis, NodeInfo
from .identity import NodeIdentity
from .keystore import PASSPHRASE_ENV, Keystore, read_passphrase


def _passphrase(file: str | None) -> bytes:
    return read_passphrase(file=file) if file else read_passphrase()


def init(args: argparse.Namespace) -> int:
    """Create a node's keystore and identity, its node.toml, and its public.json."""
    from .net import peer_id_from_public_key

    d = Path(args.dir).resolve()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)  # owner-only when created here
    passphrase = _passphrase(args.passphrase_file)
    ks = Keystore.create(d / "keystore.db", passphrase, args.node_id)
    identity = NodeIdentity.generate()
    identity.save(ks)
    ks.close()
    public = {
        "id": args.node_id,
        "peer_id": peer_id_from_public_key(identity.network_public),
        "addrs": [args.listen],
        "signing_key": identity.signing_public.hex(),
        "sealing_key": identity.sealing_public.encode().hex(),
        "network_key": identity.network_public.hex(),
    }
    (d / "public.json").write_text(json.dumps(public, indent=2) + "\n", encoding="utf-8")
    cfg = NodeConfig(
        path=d / "node.toml",
        node_id=args.node_id,
        genesis=(d / args.genesis).resolve(),
        data_dir=d,
        listen=args.listen,
        console=args.console,
        passphrase_file=Path(args.passphrase_file).resolve() if args.passphrase_file else None,
    )
    (d / "node.toml").write_text(cfg.dump(), encoding="utf-8")
    print(json.dumps({"node": args.node_id, "dir": str(d), "peer_id": public["peer_id"]}))
    return 0


def genesis(args: argparse.Namespace) -> int:
    """Assemble genesis.json from the nodes' public.json files."""
    nodes = []
    for path in args.public:
        x = json.loads(Path(path).read_text(encoding="utf-8"))
        nodes.append(
            NodeInfo(
                id=int(x["id"]),
                peer_id=x["peer_id"],
                addrs=tuple(x["addrs"]),
                signing_key=bytes.fromhex(x["signing_key"]),
                sealing_key=SealingPublicKey.decode(bytes.fromhex(x["sealing_key"])),
                network_key=bytes.fromhex(x["network_key"]),
            )
        )
    n = len(nodes)
    f = args.f if args.f is not None else (n - 1) // 3
    t = args.t if args.t is not None else n - f
    g = Genesis(
        args.chain_id,
        f,
        t,
        tuple(sorted(nodes, key=lambda i: i.id)),
        tuple(bytes.fromhex(a) for a in args.admin),
        min_deletion_wait_s=args.min_deletion_wait,
    )
    g.validate()
    if g.min_deletion_wait_s < DEFAULT_MIN_DELETION_WAIT_S:
        print(
            f"warning: keys may be deleted {g.min_deletion_wait_s} s after they are scheduled "
            "(7 days unless set): little time to notice and cancel a mistaken or malicious "
            "deletion; meant for test networks",
            file=sys.stderr,
        )
    g.dump(args.out)
    print(f"wrote {args.out}: n={n} f={f} t={t}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a node until interrupted."""
    import trio

    from .node import KMSNode

    logging.basicConfig(
        level=os.environ.get("KMSNODE_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cfg = NodeConfig.load(args.config)
    memtrace.install(cfg.data_dir)
    passphrase = _passphrase(str(cfg.passphrase_file) if cfg.passphrase_file else None)
    node = KMSNode(cfg, passphrase, freeze_startup_heap=True)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            print(f"node {cfg.node_id} ready", flush=True)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        return 0
    return 0


def status(args: argparse.Namespace) -> int:
    """Ask a running node for its status over the client protocol."""
    import trio

    from . import net

    cfg = NodeConfig.load(args.config)
    g = Genesis.load(cfg.genesis)
    info = g.node(cfg.node_id)

    async def main() -> dict[str, object]:
        host = net.Host(net.NetworkIdentity.generate())
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            answers = await net.request(
                host,
                net.parse_peer_id(info.peer_id),
                info.addrs,
                net.Envelope("status"),
                timeout=args.timeout,
            )
            nursery.cancel_scope.cancel()
        for env in answers:
            if env.kind == "status":
                return dict(env.body)
        raise KMSError(f"node {cfg.node_id} gave no status: {answers}")

    print(json.dumps(trio.run(main), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kmsnode", description="Run and manage a KMS node.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="create a node's keystore, identity and node.toml")
    p.add_argument("--dir", required=True)
    p.add_argument("--node-id", type=int, required=True)
    p.add_argument("--listen", required=True, help="multiaddr, e.g. /ip4/127.0.0.1/tcp/9101")
    p.add_argument("--console", default=None, help="host:port for the operator console")
    p.add_argument("--genesis", default="../genesis.json", help="path relative to --dir")
    p.add_argument(
        "--passphrase-file",
        default=None,
        help=f"keystore passphrase file (default: ${PASSPHRASE_ENV})",
    )
    p.set_defaults(func=init)
    p = sub.add_parser("genesis", help="assemble genesis.json from the nodes' public.json")
    p.add_argument("public", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--chain-id", required=True)
    p.add_argument("--admin", action="append", required=True, help="admin client key (hex)")
    p.add_argument("--f", type=int, default=None)
    p.add_argument("--t", type=int, default=None)
    p.add_argument(
        "--min-deletion-wait",
        type=int,
        default=DEFAULT_MIN_DELETION_WAIT_S,
        metavar="SECONDS",
        help="shortest waiting period a key deletion may be scheduled with (default 7 days)",
    )
    p.set_defaults(func=genesis)
    p = sub.add_parser("run", help="run a node")
    p.add_argument("--config", required=True)
    p.set_defaults(func=run)
    p = sub.add_parser("status", help="show a running node's status")
    p.add_argument("--config", required=True)
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=status)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (KMSError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"kmsnode: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
