"""``kms``: the client command line, over ``DistributedKMS`` (like ``aws kms`` / ``vault``)."""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..wire.requests import DEFAULT_DELETION_WAIT_S, MAX_DELETION_WAIT_S
from .errors import ClientError


def _context(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"kms: --context takes key=value, got {pair!r}")
        out[key] = value
    return out


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kms", description="Use the distributed KMS.")
    parser.add_argument("--config", default=None, help="client config (default: $KMS_CONFIG)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=30.0)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-key", help="create a key by distributed key generation")
    p.add_argument(
        "--kind", default="encrypt", choices=["encrypt", "homomorphic", "sign-ed25519", "sign-bls"]
    )
    p.add_argument("--description", default="")
    p = sub.add_parser("describe-key")
    p.add_argument("key_id")
    sub.add_parser("list-keys")
    for name in ("encrypt", "decrypt"):
        p = sub.add_parser(name, help=f"{name} stdin to stdout")
        if name == "encrypt":
            p.add_argument("--key", required=True)
        p.add_argument("--context", action="append", default=[], help="key=value (repeatable)")
        p.add_argument("--base64", action="store_true", help="base64 ciphertext on the wire")
    p = sub.add_parser(
        "sign", help="threshold signature (BLS or FROST Ed25519) of stdin (<= 4096 bytes; base64)"
    )
    p.add_argument("--key", required=True)
    p = sub.add_parser("verify", help="check a signature of stdin (exit 1 if invalid)")
    p.add_argument("--key", required=True)
    p.add_argument("--signature", required=True, help="base64")
    p.add_argument("--version", type=int, default=None, help="key version (default: current)")
    p = sub.add_parser("encrypt-int", help="encrypt an integer under a homomorphic key (base64)")
    p.add_argument("--key", required=True)
    p.add_argument("value", type=int)
    p = sub.add_parser("add", help="the encrypted sum of encrypt-int ciphertexts (offline)")
    p.add_argument("ciphertexts", nargs="+", help="base64 ciphertexts under one key version")
    p = sub.add_parser("scale", help="an encrypt-int ciphertext times a public integer (offline)")
    p.add_argument("ciphertext")
    p.add_argument("factor", type=int)
    p = sub.add_parser("decrypt-sum", help="the integer an encrypted sum holds (t partials)")
    p.add_argument("ciphertext", help="base64")
    p.add_argument("--bound", type=int, default=2**32, help="search [0, BOUND) (max 2^40)")
    p = sub.add_parser("generate-data-key")
    p.add_argument("--key", required=True)
    p.add_argument("--context", action="append", default=[])
    p = sub.add_parser("set-policy")
    p.add_argument("--key", required=True)
    p.add_argument("--client", required=True, help="the client's Ed25519 public key (hex)")
    p.add_argument("--permissions", default="", help="comma-separated, empty revokes")
    p = sub.add_parser("rotate-key", help="a new key version by DKG (older ones still decrypt)")
    p.add_argument("key_id")
    p = sub.add_parser(
        "refresh-key",
        help="new shares for every active version (same public key; old shares become useless)",
    )
    p.add_argument("key_id")
    for name, what in (("disable-key", "stop every use of"), ("enable-key", "allow again")):
        p = sub.add_parser(name, help=f"{what} a key (key admins)")
        p.add_argument("key_id")
    p = sub.add_parser(
        "schedule-key-deletion",
        help="make a key unusable now and erase its shares on every node after a wait "
        "(key admins; nothing encrypted under it can be decrypted afterwards)",
    )
    p.add_argument("key_id")
    p.add_argument("--days", type=float, default=None, help="waiting period in days (default 30)")
    p.add_argument("--seconds", type=int, default=None, help="waiting period in seconds")
    p = sub.add_parser(
        "cancel-key-deletion", help="stop a scheduled deletion (the key is left disabled)"
    )
    p.add_argument("key_id")
    p = sub.add_parser(
        "set-sum-limit",
        help="at most N decrypt-sum requests per client per window on a homomorphic key "
        "(key admins; rules v4): whoever may decrypt a sum may decrypt one value too",
    )
    p.add_argument("key_id")
    p.add_argument("--max-sums", type=int, default=0, help="sums per client per window")
    p.add_argument("--window-seconds", type=int, default=86400, help="the window (default 1 day)")
    p.add_argument("--lift", action="store_true", help="remove the limit")
    p = sub.add_parser(
        "activate-rules",
        help="move the network to newer state rules once every node runs software that "
        "applies them (genesis admins)",
    )
    p.add_argument("version", type=int)
    p.add_argument(
        "--after-blocks",
        type=int,
        default=20,
        help="blocks until they take effect (default 20, at least 10)",
    )
    p.add_argument(
        "--leave-behind",
        default="",
        metavar="NODES",
        help="comma-separated node ids to go ahead without (at most f; a log on rules v4 or "
        "later): down or not upgraded yet, each stops at the new rules until it runs software "
        "that applies them",
    )
    p = sub.add_parser("get-policy", help="every client's grants on a key (key admins)")
    p.add_argument("key_id")
    p = sub.add_parser("audit", help="the audit trail, as f + 1 nodes agree on it")
    p.add_argument("--from", dest="start", type=int, default=0, help="first entry (default 0)")
    p.add_argument("--limit", type=int, default=100, help="entries (at most 1000)")
    sub.add_parser(
        "check-genesis",
        help="whether every node runs this config's genesis (exit 1 if any runs another, or "
        "none answered)",
    )
    sub.add_parser("whoami", help="this config's client public key (what set-policy grants)")
    p = sub.add_parser(
        "new-identity",
        help="a new client: OUT.key (its private key) and OUT.json (a config for the same "
        "genesis); prints its public key for an admin's set-policy",
    )
    p.add_argument("out", help="path prefix of the two files; neither may exist")
    args = parser.parse_args(argv)

    if args.command in ("whoami", "new-identity"):  # offline: no node is asked anything
        try:
            return _identity_command(args)
        except (OSError, ValueError, KeyError) as exc:
            _fail(args, "usage", str(exc))
            return 2
    if args.command in ("add", "scale"):  # offline arithmetic on ciphertexts
        from ._async import AsyncDistributedKMS

        try:
            if args.command == "add":
                out = AsyncDistributedKMS.add(*(_b64(c) for c in args.ciphertexts))
            else:
                out = AsyncDistributedKMS.scale(_b64(args.ciphertext), args.factor)
        except ClientError as exc:
            _fail(args, exc.code, str(exc))
            return 1
        except ValueError as exc:
            _fail(args, "usage", str(exc))
            return 2
        text = base64.b64encode(out).decode()
        _emit(args, {"ciphertext": text}, text)
        return 0

    from ._sync import DistributedKMS

    try:
        with DistributedKMS.from_config(args.config, timeout=args.timeout) as kms:
            return _run(kms, args)
    except ClientError as exc:
        _fail(args, getattr(exc, "code", "client_error"), str(exc))
        return 1
    except (FileNotFoundError, ValueError, KeyError) as exc:
        _fail(args, "usage", str(exc))
        return 2


def _identity_command(args: argparse.Namespace) -> int:
    """``whoami`` and ``new-identity``: read or write client identities, offline."""
    from ._config import ClientConfig

    config = ClientConfig.load(args.config)
    if args.command == "whoami":
        pub = config.identity.public_key().public_bytes_raw().hex()
        _emit(args, {"client": pub}, pub)
        return 0
    key_path, config_path = Path(f"{args.out}.key"), Path(f"{args.out}.json")
    identity = Ed25519PrivateKey.generate()
    secret = identity.private_bytes_raw().hex() + "\n"
    genesis = Path(config.genesis_path).resolve()
    settings = {"genesis": str(genesis), "identity": key_path.name}
    # Both created exclusively (O_EXCL: no overwrite, no write through a symlink); the key
    # 0600 from the start, not chmod-ed after the fact. A failure leaves neither behind.
    written: list[Path] = []
    try:
        for path, text, mode in (
            (key_path, secret, 0o600),
            (config_path, json.dumps(settings, indent=2) + "\n", 0o644),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    pub = identity.public_key().public_bytes_raw().hex()
    _emit(
        args,
        {"client": pub, "config": str(config_path), "key": str(key_path)},
        f"{pub}\nconfig {config_path} (grant it with: kms set-policy --client {pub} ...)",
    )
    return 0


def _b64(text: str) -> bytes:
    """A base64 command-line ciphertext (ValueError, a usage error, if it is not base64)."""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {text[:16]}...") from exc


def _fail(args: argparse.Namespace, code: str, message: str) -> None:
    """An error on stderr: one JSON object with ``--json``, else a line of text."""
    if args.json:
        print(json.dumps({"error": code, "message": message}, sort_keys=True), file=sys.stderr)
    else:
        print(f"kms: {message}", file=sys.stderr)


def _run(kms: Any, args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "create-key":
        meta = kms.create_key(args.kind, args.description)
        _emit(args, meta.to_json(), meta.key_id)
    elif cmd == "describe-key":
        meta = kms.describe_key(args.key_id).to_json()
        _emit(args, meta, json.dumps(meta, indent=2))
    elif cmd == "list-keys":
        keys = kms.list_keys()
        _emit(args, {"keys": keys}, "\n".join(keys))
    elif cmd == "encrypt":
        ct = kms.encrypt(args.key, sys.stdin.buffer.read(), _context(args.context))
        if args.json:  # as ``aws kms encrypt``: the blob base64-encoded in a JSON object
            _emit(args, {"key_id": args.key, "ciphertext": base64.b64encode(ct).decode()}, "")
        else:
            sys.stdout.buffer.write(base64.b64encode(ct) + b"\n" if args.base64 else ct)
    elif cmd == "decrypt":
        data = sys.stdin.buffer.read()
        ct = base64.b64decode(data) if args.base64 else data
        plaintext = kms.decrypt(ct, _context(args.context))
        if args.json:
            _emit(args, {"plaintext": base64.b64encode(plaintext).decode()}, "")
        else:
            sys.stdout.buffer.write(plaintext)
    elif cmd == "sign":
        text = base64.b64encode(kms.sign(args.key, sys.stdin.buffer.read())).decode()
        version = kms.signing_version(args.key)
        _emit(args, {"key_id": args.key, "version": version, "signature": text}, text)
    elif cmd == "verify":
        message = sys.stdin.buffer.read()
        valid = kms.verify(args.key, message, _b64(args.signature), args.version)
        _emit(args, {"key_id": args.key, "valid": valid}, "valid" if valid else "invalid")
        return 0 if valid else 1
    elif cmd == "encrypt-int":
        text = base64.b64encode(kms.encrypt_int(args.key, args.value)).decode()
        _emit(args, {"key_id": args.key, "ciphertext": text}, text)
    elif cmd == "decrypt-sum":
        value = kms.decrypt_sum(_b64(args.ciphertext), args.bound)
        _emit(args, {"value": value}, str(value))
    elif cmd == "generate-data-key":
        key, ct = kms.generate_data_key(args.key, _context(args.context))
        out = {
            "plaintext": base64.b64encode(key).decode(),
            "ciphertext": base64.b64encode(ct).decode(),
        }
        _emit(args, out, json.dumps(out))
    elif cmd == "rotate-key":
        meta = kms.rotate_key(args.key_id)
        current = meta.current
        _emit(args, meta.to_json(), f"{args.key_id} version {current.version if current else '?'}")
    elif cmd == "refresh-key":
        meta = kms.refresh_key(args.key_id)
        epochs = ", ".join(
            f"v{v.version} epoch {v.epoch}" for v in meta.versions if v.state == "active"
        )
        _emit(args, meta.to_json(), f"{args.key_id} refreshed: {epochs}")
    elif cmd in ("disable-key", "enable-key"):
        (kms.disable_key if cmd == "disable-key" else kms.enable_key)(args.key_id)
        state = "disabled" if cmd == "disable-key" else "enabled"
        _emit(args, {"key_id": args.key_id, "state": state}, f"{args.key_id} {state}")
    elif cmd == "schedule-key-deletion":
        if args.days is not None and args.seconds is not None:
            raise SystemExit("kms: give --days or --seconds, not both")
        wait = DEFAULT_DELETION_WAIT_S
        if args.days is not None:
            wait = round(args.days * 86400)
        elif args.seconds is not None:
            wait = args.seconds
        if not 0 <= wait <= MAX_DELETION_WAIT_S:
            raise SystemExit(f"kms: the wait must be 0..{MAX_DELETION_WAIT_S // 86400} days")
        due = kms.schedule_key_deletion(args.key_id, wait)
        when = datetime.datetime.fromtimestamp(due / 1000, datetime.UTC).isoformat(
            timespec="seconds"
        )
        _emit(
            args,
            {"key_id": args.key_id, "state": "pending-deletion", "deletion_due_ms": due},
            f"{args.key_id} pending deletion; its shares are erased at {when}",
        )
    elif cmd == "cancel-key-deletion":
        state = kms.cancel_key_deletion(args.key_id)
        _emit(args, {"key_id": args.key_id, "state": state}, f"{args.key_id} {state}")
    elif cmd == "set-sum-limit":
        if args.lift == (args.max_sums > 0):
            raise ValueError("give --max-sums N (N >= 1) or --lift")
        max_sums = 0 if args.lift else args.max_sums
        kms.set_sum_limit(args.key_id, max_sums, args.window_seconds)
        value = {"key_id": args.key_id, "max_sums": max_sums}
        value["window_s"] = 0 if args.lift else args.window_seconds
        text = "no limit" if args.lift else f"{max_sums} per {args.window_seconds} s per client"
        _emit(args, value, f"{args.key_id}: {text}")
    elif cmd == "activate-rules":
        try:
            leave = sorted({int(i) for i in args.leave_behind.split(",") if i.strip()})
        except ValueError:
            raise ValueError(
                f"--leave-behind takes node ids, e.g. 3,4: {args.leave_behind!r}"
            ) from None
        height = kms.activate_rules(args.version, args.after_blocks, leave)
        who = f"every node but {leave} (left behind)" if leave else "every node"
        _emit(
            args,
            {"version": args.version, "height": height, "leave_behind": leave},
            f"state rules v{args.version} take effect at height {height} if {who} "
            "confirms by then (see `kms audit`)",
        )
    elif cmd == "get-policy":
        policy = kms.get_policy(args.key_id)
        lines = [f"{c.hex()} {','.join(p)}" for c, p in sorted(policy.grants.items())]
        _emit(args, policy.to_json(), "\n".join(lines) or "no grants (genesis admins only)")
    elif cmd == "audit":
        page = kms.audit(args.start, args.limit)
        lines = [
            f"#{e.index:<5} height {e.height:<6} {e.op:<21} {e.key_id or '-':<22} "
            f"{e.outcome:<18} "
            + (f"client {e.client.hex()[:16]}" if e.client else "(by the log)")
            + (f"  {e.detail}" if e.detail else "")
            for e in page.entries
        ]
        lines.append(f"{len(page.entries)} entries agreed by f + 1 nodes, of {page.total}")
        value = {
            "entries": [e.to_json() for e in page.entries],
            "total": page.total,
            "misbehaving": list(page.misbehaving),
        }
        _emit(args, value, "\n".join(lines))
    elif cmd == "check-genesis":
        report = kms.check_genesis()
        lines = [f"node {i}: {verdict}" for i, verdict in sorted(report.items())]
        lines.append(f"this client's genesis digest {kms.genesis_digest.hex()}")
        value = {
            "digest": kms.genesis_digest.hex(),
            "nodes": {str(i): v for i, v in report.items()},
        }
        _emit(args, value, "\n".join(lines))
        # Fails unless no node differs and at least one confirmed (all unreachable: unknown).
        return 0 if "same" in report.values() and "differs" not in report.values() else 1
    elif cmd == "set-policy":
        perms = [p for p in args.permissions.split(",") if p]
        kms.set_policy(args.key, bytes.fromhex(args.client), perms)
        _emit(args, {"key_id": args.key, "permissions": perms}, "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
