"""Generate, start and control a local n-node network (processes on 127.0.0.1).

Layout of a testnet directory::

    genesis.json  client.json  admin.key  testnet.json
    node1/ node.toml keystore.db consensus.db passphrase node.log public.json
    node2/ ...

``testnet.json`` records each node's pid and ports so ``status``/``kill``/``restart``/``down``
work from another process. Passphrases are random files (mode 0600) because this is a local
test network; a real operator keeps them elsewhere.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kmsnode.config import NodeConfig
from kmsnode.genesis import RULES_VERSION, Genesis, NodeInfo
from kmsnode.identity import NodeIdentity
from kmsnode.keystore import Keystore
from kmsnode.net import peer_id_from_public_key

TESTNET_MIN_DELETION_WAIT_S = 60
"""A local testnet's shortest key-deletion wait: long enough to cancel a mistake in a drill,
short enough to watch a deletion happen (a production genesis keeps 7 days)."""

DEFAULT_DIR = Path(".testnet")


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' source ports (Linux;
    the usual default elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1, outside the ephemeral range.

    A port picked by binding to 0 comes from the ephemeral range, and between picking it and a
    node binding it, another process's outgoing connection can take it as its source port (a
    node then fails to start). Ports below that range are never handed out that way.
    """
    low = _ephemeral_low()
    candidates = list(range(max(1024, low - 12_000), low))
    random.SystemRandom().shuffle(candidates)
    ports: list[int] = []
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise OSError(f"fewer than {count} free ports below {low} on 127.0.0.1")


@dataclass
class Testnet:
    """A testnet directory and what is recorded about its processes."""

    __test__ = False  # not a pytest test class, despite its name
    dir: Path

    @property
    def record_path(self) -> Path:
        return self.dir / "testnet.json"

    def record(self) -> dict[str, Any]:
        if not self.record_path.exists():
            raise FileNotFoundError(f"no testnet in {self.dir}: run `python -m testnet up` first")
        return json.loads(self.record_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    def _save(self, record: dict[str, Any]) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.record_path)

    # -- generation ------------------------------------------------------------------------------
    def generate(
        self,
        n: int,
        f: int | None = None,
        t: int | None = None,
        *,
        scrypt_log2_n: int = 15,
        min_deletion_wait_s: int = TESTNET_MIN_DELETION_WAIT_S,
        rules_version: int = RULES_VERSION,
    ) -> dict[str, Any]:
        """Create identities, keystores, configs, genesis and an admin client config."""
        if n < 4:
            raise ValueError("a testnet needs n >= 4 (n >= 3f + 1 with f >= 1)")
        f = (n - 1) // 3 if f is None else f
        t = n - f if t is None else t
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.dir / "genesis.json").exists():
            raise FileExistsError(f"{self.dir} already holds a testnet; `down --purge` it first")
        admin = Ed25519PrivateKey.generate()
        key_file = self.dir / "admin.key"
        key_file.write_text(admin.private_bytes_raw().hex() + "\n", encoding="utf-8")
        key_file.chmod(0o600)
        infos = []
        nodes: dict[str, Any] = {}
        ports = _free_ports(2 * n)
        for i in range(1, n + 1):
            d = self.dir / f"node{i}"
            d.mkdir(exist_ok=True)
            port, console_port = ports[2 * i - 2], ports[2 * i - 1]
            passphrase = d / "passphrase"
            passphrase.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
            passphrase.chmod(0o600)
            ident = NodeIdentity.generate()
            ks = Keystore.create(
                d / "keystore.db",
                passphrase.read_text().strip().encode(),
                i,
                scrypt_log2_n=scrypt_log2_n,
            )
            ident.save(ks)
            ks.close()
            listen = f"/ip4/127.0.0.1/tcp/{port}"
            console = f"127.0.0.1:{console_port}"
            cfg = NodeConfig(
                d / "node.toml",
                i,
                self.dir / "genesis.json",
                d,
                listen,
                console,
                passphrase,
                fault_injection=True,  # `testnet partition` drills
            )
            (d / "node.toml").write_text(cfg.dump(), encoding="utf-8")
            infos.append(
                NodeInfo(
                    id=i,
                    peer_id=peer_id_from_public_key(ident.network_public),
                    addrs=(listen,),
                    signing_key=ident.signing_public,
                    sealing_key=ident.sealing_public,
                    network_key=ident.network_public,
                )
            )
            nodes[str(i)] = {"port": port, "console_port": console_port, "pid": None}
        chain_id = f"testnet-{secrets.token_hex(4)}"
        genesis = Genesis(
            chain_id,
            f,
            t,
            tuple(infos),
            (admin.public_key().public_bytes_raw(),),
            min_deletion_wait_s=min_deletion_wait_s,
            rules_version=rules_version,
        )
        genesis.validate()
        genesis.dump(self.dir / "genesis.json")
        (self.dir / "client.json").write_text(
            json.dumps({"genesis": "genesis.json", "identity": "admin.key"}, indent=2) + "\n",
            encoding="utf-8",
        )
        record = {"n": n, "f": f, "t": t, "chain_id": chain_id, "nodes": nodes}
        self._save(record)
        return record

    # -- processes -------------------------------------------------------------------------------
    def start(self, node: int) -> int:
        """Start one node's process (detached); returns its pid."""
        record = self.record()
        d = self.dir / f"node{node}"
        log = open(d / "node.log", "ab")  # noqa: SIM115 - handed to the child process
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kmsnode", "run", "--config", str(d / "node.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        record["nodes"][str(node)]["pid"] = proc.pid
        self._save(record)
        return proc.pid

    def alive(self, node: int) -> bool:
        pid = self.record()["nodes"][str(node)]["pid"]
        if not pid:
            return False
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return False
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie still answers kill(0); /proc tells.
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().split()[2] == "Z")

    def kill(self, node: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (SIGKILL by default: a crash, not a shutdown) to one node."""
        record = self.record()
        pid = record["nodes"][str(node)]["pid"]
        if pid and self.alive(node):
            os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while self.alive(node) and time.monotonic() < deadline:
                time.sleep(0.02)
        record["nodes"][str(node)]["pid"] = None
        self._save(record)

    def stop_all(self) -> None:
        for node in self.record()["nodes"]:
            self.kill(int(node), signal.SIGTERM)

    def nodes(self) -> list[int]:
        return [int(k) for k in self.record()["nodes"]]

    def partition(self, groups: list[set[int]]) -> dict[int, set[int]]:
        """Cut the network between ``groups`` (nodes in no group form one more); returns
        each node's cut. Nodes apply it within a fraction of a second (``partitioned_from``
        in their status says when)."""
        nodes = set(self.nodes())
        listed = set().union(*groups) if groups else set()
        if not listed <= nodes or sum(len(g) for g in groups) != len(listed):
            raise ValueError(f"groups must be disjoint sets of nodes among {sorted(nodes)}")
        rest = nodes - listed
        all_groups = [g for g in [*groups, rest] if g]
        cuts = {i: nodes - next(g for g in all_groups if i in g) for i in nodes}
        for i, cut in cuts.items():
            self._write_partition(i, sorted(cut))
        return cuts

    def heal(self) -> None:
        """Undo ``partition``: every node hears every other again."""
        for i in self.nodes():
            self._write_partition(i, [])

    def _write_partition(self, node: int, cut: list[int]) -> None:
        path = self.dir / f"node{node}" / "partition.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cut": cut}) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def console(self, node: int) -> tuple[str, Path] | None:
        """Node ``node``'s console address and the file holding its token (None if off)."""
        port = self.record()["nodes"][str(node)].get("console_port")
        if not port:
            return None
        return f"http://127.0.0.1:{port}/", self.dir / f"node{node}" / "console.token"
