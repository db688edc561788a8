"""An in-process network: n nodes' state machines and executors over one simulated log.

No sockets, no consensus: every submitted payload is committed in the next block on every node
in the same order, exactly as the BFT log would deliver it. Tests use it to exercise the state
machine, the executor and the client core together, deterministically; the end-to-end
benchmark uses it to measure the crypto-bound ceiling of a request.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .client._core import ClientCore, Collector, KeyMaterial, Prepared
from .executor import Executor
from .genesis import RULES_VERSION, SUPPORTED_RULES, Genesis, NodeInfo
from .identity import NodeIdentity
from .keystore import Keystore
from .state import KMSState
from .wire.payload import RulesPayload, TickPayload, client_payload
from .wire.requests import CreateKey, DescribeKey, KeyKind
from .wire.responses import Response

PASSPHRASE = b"in-process test network"


@dataclass(frozen=True)
class _Block:
    height: int
    timestamp_ms: int
    payloads: tuple[bytes, ...]
    proposer: int | None = None
    """Consensus index (position in the genesis) of the node that proposed it."""


def make_genesis(
    identities: dict[int, NodeIdentity],
    admins: tuple[bytes, ...],
    *,
    f: int,
    t: int,
    chain_id: str = "local-test",
    addrs: Callable[[int], tuple[str, ...]] | None = None,
    peer_ids: Callable[[int], str] | None = None,
) -> Genesis:
    """A genesis for these identities (peer ids and addresses supplied by the caller)."""
    nodes = tuple(
        NodeInfo(
            id=i,
            peer_id=peer_ids(i) if peer_ids else f"local-{i}",
            addrs=addrs(i) if addrs else (),
            signing_key=ident.signing_public,
            sealing_key=ident.sealing_public,
            network_key=ident.network_public,
        )
        for i, ident in sorted(identities.items())
    )
    genesis = Genesis(chain_id, f, t, nodes, admins)
    genesis.validate()
    return genesis


@dataclass
class LocalNetwork:
    """n in-process nodes; ``run(prepared)`` commits a request and returns every answer."""

    directory: Path
    n: int = 4
    f: int = 1
    t: int = 3
    admin: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    time_ms: int = 1_760_000_000_000
    byzantine: dict[int, Callable[[Response], bytes]] = field(default_factory=dict)
    """node id -> what it sends instead of its honest response (for fault tests)."""
    rules_version: int = RULES_VERSION
    """The state rules the genesis names (an older network, for upgrade tests)."""
    silent: set[int] = field(default_factory=set)
    """Nodes that propose no blocks and post no FROST nonce batches (as if down, for fault
    tests; they still apply blocks and answer)."""

    def __post_init__(self) -> None:
        self.identities = {i: NodeIdentity.generate() for i in range(1, self.n + 1)}
        admin_pub = self.admin.public_key().public_bytes_raw()
        self.genesis = dataclasses.replace(
            make_genesis(self.identities, (admin_pub,), f=self.f, t=self.t),
            rules_version=self.rules_version,
        )
        self.states: dict[int, KMSState] = {}
        self.executors: dict[int, Executor] = {}
        for i, ident in self.identities.items():
            ks = Keystore.create(self.keystore_path(i), PASSPHRASE, i, scrypt_log2_n=10)
            ident.save(ks)
            self.states[i] = KMSState(self.genesis)
            self.executors[i] = Executor(i, self.genesis, ident, ks)
        self.height = 0
        self.log: list[_Block] = []
        self.pending: list[bytes] = []
        self.outbox: dict[bytes, dict[int, bytes]] = {}
        self.outbox_history: dict[bytes, dict[int, bytes]] = {}
        """Every answer ever sent, by request id (``outbox`` loses what ``run`` consumed)."""
        self._ticks = itertools.count()
        self.client = ClientCore(self.genesis, self.admin)

    def close(self) -> None:
        for ex in self.executors.values():
            ex.keystore.close()

    def commit(self, *payloads: bytes) -> None:
        """Commit one block holding queued node posts and ``payloads`` on every node."""
        self.height += 1
        self.time_ms += 50
        # Leaders rotate among the nodes that are not silent (as if down).
        up = [k for k, info in enumerate(self.genesis.nodes) if info.id not in self.silent]
        proposer = up[self.height % len(up)] if up else None
        block = _Block(self.height, self.time_ms, (*self.pending, *payloads), proposer)
        self.log.append(block)
        self.pending = []
        for i, state in self.states.items():
            effects = state.apply(block)
            state.audit.drain()  # a node stores these; here the recent ones in memory suffice
            for effect in effects:
                out = self.executors[i].run(effect)
                self.pending.extend(out.posts)
                for response in out.responses:
                    data = self.byzantine[i](response) if i in self.byzantine else response.encode()
                    self.outbox.setdefault(response.request_id, {})[i] = data
                    self.outbox_history.setdefault(response.request_id, {})[i] = data
            if i not in self.silent:
                batch = self.executors[i].nonce_supply.wanted(
                    state.nonce_pools.pool(i), self.time_ms / 1000
                )
                if batch is not None:
                    self.pending.append(batch)
            if state.rules_version >= 3:  # as KMSNode does after each block
                ex = self.executors[i]
                key, erased = ex.receiving.tend(
                    state.receiving_keys[i], state.receiving_keys_in_use(i), self.time_ms / 1000
                )
                if erased:
                    ex.scrub_pending = True
                    ex.retry_scrub()
                if key is not None and i not in self.silent:
                    self.pending.append(key)

    def state_rules(self, node: int, versions: tuple[int, ...] = SUPPORTED_RULES) -> bytes:
        """``node``'s signed statement that its software applies ``versions`` (what a node
        posts at its start), to commit."""
        seq = next(self._ticks) + 1
        payload = RulesPayload(node, seq, versions)
        return payload.signed(self.genesis.chain_id, self.identities[node].signing_key).encode()

    def restart(self, node: int) -> None:
        """Crash and restart ``node``: fresh state machine and executor, keystore reopened, the
        committed log replayed as ``KMSNode`` does (every block counted as executed)."""
        old = self.executors[node]
        old.keystore.close()
        ks = Keystore.open(self.keystore_path(node), PASSPHRASE, node)
        state = KMSState(self.genesis)
        executor = Executor(node, self.genesis, NodeIdentity.load(ks), ks)
        for block in self.log:
            for effect in state.apply(block):
                executor.replay(effect)
        self.states[node] = state
        self.executors[node] = executor
        self.pending.extend(executor.unsettled_posts())  # as KMSNode posts them again

    def keystore_path(self, node: int) -> Path:
        """Where ``node``'s keystore file lives."""
        return self.directory / f"node{node}.db"

    def backup_keystore(self, node: int, to: Path) -> None:
        """Copy ``node``'s keystore to ``to`` (closed for the copy, then the node restarted)."""
        self.executors[node].keystore.close()
        shutil.copyfile(self.keystore_path(node), to)
        self.restart(node)

    def restore_keystore(self, node: int, backup: Path) -> None:
        """Put ``backup`` back as ``node``'s keystore; the caller restarts the node (or
        reopens the keystore itself)."""
        self.executors[node].keystore.close()
        shutil.copyfile(backup, self.keystore_path(node))

    def settle(self, max_blocks: int = 500) -> None:
        """Commit ticks until no node waits for the log (DKG sessions finished)."""
        for _ in range(max_blocks):
            if not self.pending and not any(e.waiting_for_height for e in self.executors.values()):
                return
            self.commit(TickPayload(1, next(self._ticks)).encode())
        raise AssertionError("the in-process network did not settle")

    def create_key(self, kind: KeyKind = KeyKind.ENCRYPT, description: str = "test") -> str:
        """Create a key through the log and settle its DKG; its id."""
        created = self.run(self.client.prepare(CreateKey(kind, description), now_ms=self.time_ms))
        assert created.done, "create_key did not settle"
        return str(created.result["key_id"])

    def resigned(self, node: int, response: Response, **changes: Any) -> bytes:
        """``response`` with ``changes`` made, signed again by ``node``: what a Byzantine node
        sends instead of its honest answer (for ``byzantine``)."""
        altered = dataclasses.replace(response, **changes)
        return altered.signed(self.identities[node].signing_key).encode()

    def key_material(
        self, key_id: str, version: int = 1, *, client: ClientCore | None = None
    ) -> KeyMaterial:
        """A key version's public key and verification keys, through a ``describe_key``."""
        core = client or self.client
        described = self.run(core.prepare(DescribeKey(key_id), now_ms=self.time_ms), client=core)
        assert described.done, "describe_key did not settle"
        v = next(v for v in described.result["versions"] if v["version"] == version)
        return KeyMaterial(
            bytes.fromhex(v["public_key"]),
            {int(i): bytes.fromhex(k) for i, k in v["verification_keys"].items()},
            v["epoch"],
            v["version"],
            described.result["kind"],
        )

    def run(
        self,
        prepared: Prepared,
        key_material: KeyMaterial | None = None,
        *,
        client: ClientCore | None = None,
    ) -> Collector:
        """Commit ``prepared``, settle, and feed every node's answer to a fresh collector."""
        core = client or self.client
        self.commit(client_payload(prepared.request))
        self.settle()
        collector = core.collector(prepared, key_material)
        for node_id, data in sorted(self.outbox.pop(prepared.request_id, {}).items()):
            if collector.add(node_id, data):
                break
        return collector
