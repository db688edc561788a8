"""The client's configuration file: where its genesis and identity key are."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..genesis import Genesis

CONFIG_ENV = "KMS_CONFIG"
"""The environment variable naming the client config file when no path is given."""


@dataclass(frozen=True)
class ClientConfig:
    """What a client needs: the genesis and its identity key (from a client config file)."""

    genesis: Genesis
    identity: Ed25519PrivateKey
    genesis_path: Path
    """Where the genesis was read from (a new identity's config points there too)."""

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> ClientConfig:
        """Read a client config (JSON: ``genesis`` and ``identity`` paths, relative to it).

        ``path`` defaults to ``$KMS_CONFIG``.
        """
        where = path or os.environ.get(CONFIG_ENV)
        if not where:
            raise FileNotFoundError(f"no client config: pass --config or set ${CONFIG_ENV}")
        p = Path(where).resolve()
        data = json.loads(p.read_text(encoding="utf-8"))
        genesis_path = p.parent / data["genesis"]
        genesis = Genesis.load(genesis_path)
        key_hex = (p.parent / data["identity"]).read_text(encoding="utf-8").strip()
        identity = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_hex))
        return cls(genesis, identity, genesis_path)
