"""``node.toml``: what a node accepts, with the field named when it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmsnode.config import NodeConfig
from kmsnode.errors import ConfigError

BASE = 'node_id = 1\ngenesis = "genesis.json"\nlisten = "/ip4/127.0.0.1/tcp/9101"\n'


def load(tmp_path: Path, extra: str = "") -> NodeConfig:
    path = tmp_path / "node.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return NodeConfig.load(path)


def test_defaults_and_round_trip(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.console is None and cfg.fault_injection is False
    assert cfg.max_client_connections == 512
    assert cfg.genesis == (tmp_path / "genesis.json").resolve()
    full = load(
        tmp_path,
        'console = "127.0.0.1:9201"\nfault_injection = true\nmax_client_connections = 64\n'
        "max_client_connections_per_address = 8\n",
    )
    assert full.console == "127.0.0.1:9201" and full.fault_injection is True
    (tmp_path / "again.toml").write_text(full.dump(), encoding="utf-8")
    again = NodeConfig.load(tmp_path / "again.toml")
    assert (again.console, again.fault_injection, again.listen) == (
        full.console,
        True,
        full.listen,
    )
    assert again.max_client_connections == 64
    assert again.max_client_connections_per_address == 8
    assert cfg.max_client_connections_per_address == 64


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('console = "0.0.0.0:9201"\n', "loopback only"),
        ('console = "127.0.0.1"\n', "host:port"),
        ("console = 9201\n", "'console'"),
        ('fault_injection = "yes"\n', "'fault_injection'"),
        ("max_client_connections = 0\n", "'max_client_connections'"),
        ("max_client_connections = true\n", "'max_client_connections'"),
        ('max_client_connections = "many"\n', "'max_client_connections'"),
        ("max_client_connections_per_address = 0\n", "'max_client_connections_per_address'"),
    ],
)
def test_refusals_name_the_field(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load(tmp_path, extra)


def test_flight_recorder_is_off_unless_asked_and_checks_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kmsnode.node import flight_recorder_from_env
    from kmsnode.node_report import FLIGHT_RECORDER_ENV

    monkeypatch.delenv(FLIGHT_RECORDER_ENV, raising=False)
    assert flight_recorder_from_env() is None
    monkeypatch.setenv(FLIGHT_RECORDER_ENV, "5000")
    rec = flight_recorder_from_env()
    assert rec is not None and rec.capacity == 5000
    for bad in ("0", "-3", "lots", "1e6", "99999999999"):
        monkeypatch.setenv(FLIGHT_RECORDER_ENV, bad)
        with pytest.raises(ConfigError, match=FLIGHT_RECORDER_ENV):
            flight_recorder_from_env()
