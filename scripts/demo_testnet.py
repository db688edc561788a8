"""The main demo: a local 4-node network, a key born by DKG, encrypt/decrypt, a crash, the audit.

Starts a fresh testnet in ``.testnet`` (or ``--dir``), creates a key by distributed key
generation, encrypts with an encryption context, decrypts from sealed partials, kills one node
with SIGKILL and decrypts again, shows a wrong context refused, restarts the node, refreshes
the key's shares (same public key, old ciphertext still decrypts), signs with a FROST Ed25519
key (checked by OpenSSL), deletes a key (its shares erased on every node), prints the verified
audit trail and the operator console's metrics, and stops the network (``--keep`` leaves it
running).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kmsnode.client import ClientError, DistributedKMS, InvalidCiphertextError
from kmsnode.keystore import Keystore
from testnet._control import wait_healthy
from testnet._launcher import Testnet

DEMO_DELETION_WAIT_S = 3


def held(tn: Testnet, key_id: str) -> int:
    """Keystore records naming ``key_id`` across the testnet's nodes (read with their
    passphrases, as an operator could)."""
    count = 0
    for i in tn.nodes():
        d = tn.dir / f"node{i}"
        passphrase = (d / "passphrase").read_text().strip().encode()
        with Keystore.open(d / "keystore.db", passphrase, i) as ks:
            count += sum(1 for n in ks.names() if n.key_id == key_id)
    return count


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".testnet")
    parser.add_argument("--keep", action="store_true", help="leave the testnet running")
    args = parser.parse_args()
    tn = Testnet(Path(args.dir).resolve())
    if tn.record_path.exists():
        tn.stop_all()
    if tn.dir.exists():
        shutil.rmtree(tn.dir)

    step("start a 4-node testnet (f = 1, t = 3): identities, encrypted keystores, genesis")
    # Key deletion waits at least 3 s on this demo network (a production genesis: days).
    tn.generate(4, min_deletion_wait_s=DEMO_DELETION_WAIT_S)
    for i in tn.nodes():
        tn.start(i)
    start = time.monotonic()
    wait_healthy(tn, timeout=120)
    print(f"4 nodes up and committing after {time.monotonic() - start:.1f}s; dir {tn.dir}")
    try:
        with DistributedKMS.from_config(tn.dir / "client.json", timeout=30) as kms:
            step("create a key: the nodes run a DKG over the BFT log; no one ever holds it")
            t0 = time.monotonic()
            meta = kms.create_key("encrypt", "demo key")
            key_id = meta.key_id
            version = meta.versions[0]
            assert version.public_key is not None
            print(f"key {key_id} enabled in {time.monotonic() - t0:.1f}s")
            print(f"public key       {version.public_key.hex()}")
            for node, vk in sorted(version.verification_keys.items()):
                print(f"node {node} verif. key {vk.hex()[:32]}...")
            print(f"dealers in QUAL  {list(version.qualified)}")

            step("encrypt locally with an encryption context (ordered and audited)")
            context = {"app": "payroll", "tenant": "acme"}
            ct = kms.encrypt(key_id, b"the quarterly numbers", context)
            print(f"context {context}\nciphertext {len(ct)} bytes: {ct.hex()[:64]}...")

            step("decrypt: each node sends a DLEQ-proven partial sealed to this client")
            t0 = time.monotonic()
            print(
                f"plaintext {kms.decrypt(ct, context)!r} in {(time.monotonic() - t0) * 1e3:.0f} ms"
            )

            step("kill node 2 with SIGKILL, decrypt again (t = 3 of the 3 left)")
            tn.kill(2)
            print(f"plaintext {kms.decrypt(ct, context)!r}")

            step("a wrong context: one opaque error, and no node released a partial")
            try:
                kms.decrypt(ct, {"app": "payroll", "tenant": "evil"})
            except InvalidCiphertextError as exc:
                print(f"refused: {exc}")

            step("restart node 2: it replays its log, catches up and serves again")
            tn.start(2)
            wait_healthy(tn, timeout=60)
            print("node 2 is back")

            step("refresh the key's shares: a reshare among the same nodes (same public key)")
            t0 = time.monotonic()
            after = kms.refresh_key(key_id).versions[0]
            print(f"epoch {version.epoch} -> {after.epoch} in {time.monotonic() - t0:.1f}s")
            print(f"public key unchanged: {after.public_key == version.public_key}")
            changed = sorted(
                i
                for i, vk in after.verification_keys.items()
                if vk != version.verification_keys.get(i)
            )
            print(
                f"new verification keys for nodes {changed}: each node stored its new share, "
                "then erased its old one"
            )
            print(f"the old ciphertext still decrypts: {kms.decrypt(ct, context)!r}")

            step("a FROST Ed25519 key: t nodes sign, the log picks them and spends their nonces")
            signer = kms.create_key("sign-ed25519", "demo releases")
            assert signer.current is not None and signer.current.public_key is not None
            t0 = time.monotonic()
            signature = kms.sign(signer.key_id, b"release 1.0")
            print(f"signature {signature.hex()[:64]}... in {time.monotonic() - t0:.2f}s")
            Ed25519PublicKey.from_public_bytes(signer.current.public_key).verify(
                signature, b"release 1.0"
            )
            print("an ordinary Ed25519 signature: OpenSSL verifies it under the key's public key")

            step("schedule a key's deletion: unusable at once, every node's share erased when due")
            doomed = kms.create_key("encrypt", "demo: to be shredded").key_id
            secret = kms.encrypt(doomed, b"shred me", context)
            due = kms.schedule_key_deletion(doomed, DEMO_DELETION_WAIT_S)
            print(f"{doomed} pending deletion, due in {(due / 1000 - time.time()):.1f}s")
            try:
                kms.decrypt(secret, context)
            except ClientError as exc:
                print(f"decrypt while pending: refused ({exc})")
            deadline = time.monotonic() + 30
            # Deleted once f + 1 nodes say so; each node erases as it executes the block.
            while kms.describe_key(doomed).state != "deleted" or held(tn, doomed):
                if time.monotonic() > deadline:
                    raise SystemExit("the deletion did not come due on every node")
                time.sleep(0.5)
            print(f"{doomed} deleted; records of it in the nodes' keystores: {held(tn, doomed)}")
            try:
                kms.decrypt(secret, context)
            except ClientError as exc:
                print(f"decrypt now: refused for good ({exc})")

            step("the audit trail: the entries f + 1 nodes agree on, hash chain verified")
            page = kms.audit(0, 1000)
            for e in page.entries:
                print(
                    f"  #{e.index:<3} height {e.height:<4} {e.op:<21} {e.key_id:<22} "
                    f"{e.outcome:<14} "
                    + (f"client {e.client.hex()[:12]}..." if e.client else "(by the log)")
                    + (f"  {e.detail}" if e.detail else "")
                )
            head = page.entries[-1].hash.hex() if page.entries else "-"
            print(
                f"{len(page.entries)} of {page.total} entries agreed, chain verified from the "
                f"genesis hash to head {head[:32]}...; misbehaving nodes: "
                f"{list(page.misbehaving) or 'none'}"
            )

        console = tn.console(1)
        if console is not None:
            step("the operator console (node 1): Prometheus metrics and its own audit check")
            url, token_file = console
            auth = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
            with urllib.request.urlopen(urllib.request.Request(url + "metrics", headers=auth)) as r:
                wanted = ("kms_consensus_committed_height", "kms_keys ", "kms_executor_partials")
                for line in r.read().decode().splitlines():
                    if line.startswith(wanted):
                        print(f"  {line}")
            verify = urllib.request.Request(url + "api/audit?verify=1", headers=auth)
            with urllib.request.urlopen(verify) as r:
                print(f"  /api/audit?verify=1 -> {json.loads(r.read())}")
            print(f"console: {url} (token in {token_file})")
    finally:
        if args.keep:
            print(f"\ntestnet left running: export KMS_CONFIG={tn.dir / 'client.json'}")
            print(f"stop it with: python -m testnet --dir {tn.dir} down")
        else:
            tn.stop_all()
            print("\ntestnet stopped")


if __name__ == "__main__":
    main()
