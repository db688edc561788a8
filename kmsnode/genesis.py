"""The genesis file: the committee, its thresholds, the chain id and the initial admins.

Shared by every node and client (JSON). Parsed strictly: a genesis that a node cannot use is
a ``ConfigError`` that says what to fix, never a crash later.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .crypto.sealing import SealingPublicKey
from .errors import ConfigError
from .wire.requests import MAX_DELETION_WAIT_S

RULES_VERSION = 4
"""The newest version of the replicated state machine's rules this software applies (what a
new genesis names). Bumped whenever ``KMSState.apply`` would derive something else from some
committed input than before; a network's genesis names the rules its log starts under, and an
``activate_rules`` in the log moves it to newer ones at a height. v1: before FROST signing was
served and refresh ran as a reshare; v2: before key deletion, per-use receiving keys for DKG
deals, and FROST signers named in the audit trail; v3: before an activation could leave up to
f nodes behind (``ActivateRules.leave_behind``) and homomorphic keys had sum limits
(``SetSumLimit``)."""
SUPPORTED_RULES = (2, 3, 4)
"""Rules versions this software can apply a log under (v2 exactly as v2 software did)."""
DEFAULT_MIN_DELETION_WAIT_S = 7 * 24 * 3600
"""The shortest waiting period a scheduled key deletion may have unless the genesis says
otherwise (AWS KMS's minimum: time to notice a mistaken or malicious deletion)."""


@dataclass(frozen=True)
class NodeInfo:
    """One committee member's public identity and where to reach it."""

    id: int
    peer_id: str
    addrs: tuple[str, ...]
    signing_key: bytes
    """Raw Ed25519 public key: consensus votes, DKG messages and responses are signed with it."""
    sealing_key: SealingPublicKey
    """Hybrid X25519 + ML-KEM-768 key that DKG shares are sealed to."""
    network_key: bytes
    """Raw Ed25519 public key of the libp2p identity (its peer id derives from it)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "peer_id": self.peer_id,
            "addrs": list(self.addrs),
            "signing_key": self.signing_key.hex(),
            "sealing_key": self.sealing_key.encode().hex(),
            "network_key": self.network_key.hex(),
        }


@dataclass(frozen=True)
class Genesis:
    """The network's fixed parameters (see ``DESIGN.md`` §2: n >= 3f + 1, f < t <= n - f)."""

    chain_id: str
    f: int
    t: int
    nodes: tuple[NodeInfo, ...]
    admins: tuple[bytes, ...]
    rules_version: int = RULES_VERSION
    """The state-machine rules the network's log is applied under (a file without the field
    predates versions: 1)."""
    min_deletion_wait_s: int = DEFAULT_MIN_DELETION_WAIT_S
    """The shortest waiting period a key deletion may be scheduled with, in seconds of log
    time (test networks set it low; a production network keeps days)."""

    @property
    def n(self) -> int:
        return len(self.nodes)

    def node(self, node_id: int) -> NodeInfo:
        for info in self.nodes:
            if info.id == node_id:
                return info
        raise ConfigError(f"node {node_id} is not in the genesis committee")

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(info.id for info in self.nodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "f": self.f,
            "t": self.t,
            "nodes": [info.to_json() for info in self.nodes],
            "admins": [a.hex() for a in self.admins],
            "rules_version": self.rules_version,
            "min_deletion_wait_s": self.min_deletion_wait_s,
        }

    def digest(self) -> bytes:
        """SHA-256 over what every node must agree on to apply the same log the same way:
        all of the genesis but the nodes' addresses (which operators may write differently,
        e.g. a private and a public address of one node) and the admins' order."""
        doc = self.to_json()
        for node in doc["nodes"]:
            del node["addrs"]
        doc["admins"] = sorted(set(doc["admins"]))  # a set to the state: its order is no matter
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(b"kms-genesis-v1\x00" + canonical.encode()).digest()

    def dump(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Genesis:
        """Read and validate a genesis file.

        Raises:
            ConfigError: unreadable, or any field invalid; the message names it.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read genesis file {path}: {exc}") from exc
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> Genesis:
        """Validate a parsed genesis document.

        Raises:
            ConfigError: any field invalid.
        """
        try:
            nodes = tuple(_node(x) for x in data["nodes"])
            genesis = cls(
                chain_id=str(data["chain_id"]),
                f=int(data["f"]),
                t=int(data["t"]),
                nodes=nodes,
                admins=tuple(_key32(a, "admin key") for a in data["admins"]),
                rules_version=int(data.get("rules_version", 1)),
                min_deletion_wait_s=int(
                    data.get("min_deletion_wait_s", DEFAULT_MIN_DELETION_WAIT_S)
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid genesis: {exc}") from exc
        genesis.validate()
        return genesis

    def validate(self) -> None:
        """Check the committee rules.

        Raises:
            ConfigError: the parameters break n >= 3f+1, f < t <= n-f, or ids are not 1..n.
        """
        n = self.n
        if not self.chain_id or len(self.chain_id) > 64:
            raise ConfigError("genesis chain_id must be 1..64 characters")
        if sorted(self.ids) != list(range(1, n + 1)):
            raise ConfigError(f"genesis node ids must be exactly 1..{n}, got {sorted(self.ids)}")
        if self.f < 1 or n < 3 * self.f + 1:
            # f = 0 would let a client accept one node's word (f + 1 matching answers).
            raise ConfigError(f"genesis needs f >= 1 and n >= 3f + 1 (n={n}, f={self.f})")
        if not self.f < self.t <= n - self.f:
            raise ConfigError(f"genesis needs f < t <= n - f (n={n}, f={self.f}, t={self.t})")
        if len({i.peer_id for i in self.nodes}) != n:
            raise ConfigError("genesis peer ids must be distinct")
        if not self.admins:
            raise ConfigError("genesis needs at least one admin client key")
        if not 0 <= self.min_deletion_wait_s <= MAX_DELETION_WAIT_S:
            raise ConfigError(
                f"genesis min_deletion_wait_s must be 0..{MAX_DELETION_WAIT_S} seconds"
            )


def _key32(value: Any, what: str) -> bytes:
    raw = bytes.fromhex(str(value))
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes of hex")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def _node(x: Any) -> NodeInfo:
    node_id = int(x["id"])
    try:
        sealing = SealingPublicKey.decode(bytes.fromhex(str(x["sealing_key"])))
    except ValueError as exc:
        raise ValueError(f"node {node_id}: invalid sealing_key ({exc})") from exc
    return NodeInfo(
        id=node_id,
        peer_id=str(x["peer_id"]),
        addrs=tuple(str(a) for a in x["addrs"]),
        signing_key=_key32(x["signing_key"], f"node {node_id} signing_key"),
        sealing_key=sealing,
        network_key=_key32(x["network_key"], f"node {node_id} network_key"),
    )
