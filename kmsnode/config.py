"""A node's configuration file (``node.toml``): where its files are and where it listens.

::

    node_id = 1
    genesis = "../genesis.json"        # relative paths are relative to this file
    data_dir = "."                     # keystore.db and consensus.db live here
    listen = "/ip4/127.0.0.1/tcp/9101"
    console = "127.0.0.1:9201"         # operator console (token in data_dir/console.token)
    passphrase_file = "passphrase"     # optional; otherwise $KMSNODE_PASSPHRASE
    fault_injection = false            # testnets only: obey data_dir/partition.json
    max_client_connections = 512       # connections from outside the committee (idlest evicted)
    max_client_connections_per_address = 64   # of those, from one IP address
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .console._token import parse_listen
from .errors import ConfigError
from .net.guard import DEFAULT_CLIENT_CONNECTIONS, DEFAULT_PER_ADDRESS


@dataclass(frozen=True)
class NodeConfig:
    """A parsed ``node.toml`` with absolute paths."""

    path: Path
    node_id: int
    genesis: Path
    data_dir: Path
    listen: str
    console: str | None
    passphrase_file: Path | None
    fault_injection: bool = False
    """Obey ``data_dir/partition.json`` (simulated partitions for drills); never in production."""
    max_client_connections: int = DEFAULT_CLIENT_CONNECTIONS
    """Connections peers outside the committee may hold; one more evicts the idlest client."""
    max_client_connections_per_address: int = DEFAULT_PER_ADDRESS
    """Of those, from one IP address; one more evicts the idlest client from that address."""

    @property
    def keystore(self) -> Path:
        return self.data_dir / "keystore.db"

    @property
    def consensus_db(self) -> Path:
        return self.data_dir / "consensus.db"

    @classmethod
    def load(cls, path: str | Path) -> NodeConfig:
        """Read and check a node config.

        Raises:
            ConfigError: unreadable or invalid; the message names the field.
        """
        p = Path(path).resolve()
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read node config {p}: {exc}") from exc
        base = p.parent

        def path_of(name: str, default: str | None = None) -> Path:
            value = data.get(name, default)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{p}: '{name}' must be a path")
            return (base / value).resolve()

        node_id = data.get("node_id")
        if not isinstance(node_id, int) or node_id < 1:
            raise ConfigError(f"{p}: 'node_id' must be a positive integer")
        listen = data.get("listen")
        if not isinstance(listen, str) or not listen.startswith("/ip"):
            raise ConfigError(f"{p}: 'listen' must be a multiaddr like /ip4/127.0.0.1/tcp/9101")
        console = data.get("console")
        if console is not None:
            if not isinstance(console, str):
                raise ConfigError(f"{p}: 'console' must be host:port")
            try:
                parse_listen(console)
            except ConfigError as exc:
                raise ConfigError(f"{p}: 'console': {exc}") from None
        fault_injection = data.get("fault_injection", False)
        if not isinstance(fault_injection, bool):
            raise ConfigError(f"{p}: 'fault_injection' must be true or false")

        def positive(name: str, default: int) -> int:
            value = data.get(name, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{p}: '{name}' must be a positive integer")
            return value

        max_clients = positive("max_client_connections", DEFAULT_CLIENT_CONNECTIONS)
        per_address = positive("max_client_connections_per_address", DEFAULT_PER_ADDRESS)
        return cls(
            path=p,
            node_id=node_id,
            genesis=path_of("genesis"),
            data_dir=path_of("data_dir", "."),
            listen=listen,
            console=console,
            passphrase_file=path_of("passphrase_file") if "passphrase_file" in data else None,
            fault_injection=fault_injection,
            max_client_connections=max_clients,
            max_client_connections_per_address=per_address,
        )

    def dump(self) -> str:
        """The TOML text of this config (paths relative to the config file's folder)."""
        base = self.path.parent

        def rel(p: Path) -> str:
            try:
                return str(p.relative_to(base))
            except ValueError:
                return str(p)

        lines = [
            f"node_id = {self.node_id}",
            f'genesis = "{rel(self.genesis)}"',
            f'data_dir = "{rel(self.data_dir) or "."}"',
            f'listen = "{self.listen}"',
        ]
        if self.console:
            lines.append(f'console = "{self.console}"')
        if self.passphrase_file:
            lines.append(f'passphrase_file = "{rel(self.passphrase_file)}"')
        if self.fault_injection:
            lines.append("fault_injection = true")
        if self.max_client_connections != DEFAULT_CLIENT_CONNECTIONS:
            lines.append(f"max_client_connections = {self.max_client_connections}")
        if self.max_client_connections_per_address != DEFAULT_PER_ADDRESS:
            lines.append(
                f"max_client_connections_per_address = {self.max_client_connections_per_address}"
            )
        return "\n".join(lines) + "\n"
