"""A real 4-node testnet: node processes, libp2p on loopback, SQLite, SIGKILL and restarts.

One network serves the whole module (start-up and DKGs cost seconds); the tests run in order
and each says what it leaves behind.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kmsnode import net
from kmsnode.client import (
    AccessDenied,
    DistributedKMS,
    InvalidCiphertextError,
    KeyUnavailable,
    QuorumUnavailable,
    RequestRejected,
)
from kmsnode.client._core import ClientCore, KeyMaterial
from kmsnode.genesis import Genesis
from kmsnode.identity import NodeIdentity
from kmsnode.keystore import Keystore
from kmsnode.node_report import FLIGHT_RECORDER_ENV
from kmsnode.state import entry_from_json, verify_chain
from kmsnode.wire.requests import Decrypt
from testnet._control import node_query, statuses, wait_healthy, wait_partitioned
from testnet._launcher import Testnet

from ._scripts import load_script

pytestmark = pytest.mark.slow

CTX = {"app": "payroll", "tenant": "acme"}
DELETION_WAIT_S = 2
"""The suite's testnet lets a key deletion come due this soon (a production genesis: days)."""


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def tn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    network = Testnet(tmp_path_factory.mktemp("testnet"))
    network.generate(4, scrypt_log2_n=12, min_deletion_wait_s=DELETION_WAIT_S)
    # The nodes (and those restarted by the tests) keep their protocol events: see
    # test_flight_recorders_merge_into_one_timeline.
    os.environ[FLIGHT_RECORDER_ENV] = "100000"
    for i in network.nodes():
        network.start(i)
    try:
        wait_healthy(network, timeout=120)
        yield network
    finally:
        os.environ.pop(FLIGHT_RECORDER_ENV, None)
        for i in network.nodes():
            network.kill(i)
        for i in network.nodes():
            log = network.dir / f"node{i}" / "node.log"
            if log.exists():
                sys.stderr.write(f"--- node{i}.log (tail) ---\n{log.read_text()[-3000:]}\n")


@pytest.fixture(scope="module")
def kms(tn: Testnet) -> Iterator[DistributedKMS]:
    with DistributedKMS.from_config(tn.dir / "client.json", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def key_id(kms: DistributedKMS) -> str:
    meta = kms.create_key("encrypt", "testnet test key")
    assert meta.state == "enabled"
    return meta.key_id


def genesis(tn: Testnet) -> Genesis:
    return Genesis.load(tn.dir / "genesis.json")


def status(tn: Testnet) -> dict[int, Any]:
    return trio.run(statuses, genesis(tn), tn.nodes())


def partials_released(tn: Testnet) -> int:
    return sum(s["executor"]["partials"] for s in status(tn).values() if s)


async def submit_everywhere(g: Genesis, nodes: list[int], body: Any) -> list[list[net.Envelope]]:
    """``body`` submitted to every node in turn from a fresh host (a connection of its own);
    each node's answers."""
    host = net.Host(net.NetworkIdentity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])
    out: list[list[net.Envelope]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        for i in nodes:
            info = g.node(i)
            out.append(
                await net.request(
                    host,
                    net.parse_peer_id(info.peer_id),
                    info.addrs,
                    net.Envelope("submit", body),
                    timeout=30,
                )
            )
        nursery.cancel_scope.cancel()
    return out


def test_dkg_completes_and_every_node_agrees(tn: Testnet, kms: DistributedKMS, key_id: str) -> None:
    meta = kms.describe_key(key_id)
    version = meta.versions[0]
    assert meta.current is version and version.state == "active"
    assert sorted(version.verification_keys) == [1, 2, 3, 4]
    assert version.qualified == (1, 2, 3, 4) and version.disqualified == {}
    heads = {s["audit_head"] for s in status(tn).values()}
    wait_for(lambda: len({s["audit_head"] for s in status(tn).values()}) == 1, 20, "same audit")
    assert heads


def test_encrypt_decrypt_round_trip_with_context(kms: DistributedKMS, key_id: str) -> None:
    for message in (b"", b"hello", os.urandom(10_000)):
        ct = kms.encrypt(key_id, message, CTX)
        assert kms.decrypt(ct, CTX) == message
    data_key, wrapped = kms.generate_data_key(key_id, CTX)
    assert kms.decrypt(wrapped, CTX) == data_key


def test_wrong_context_and_tampering_release_no_partial(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    ct = kms.encrypt(key_id, b"secret", CTX)
    before = partials_released(tn)
    with pytest.raises(InvalidCiphertextError):
        kms.decrypt(ct, {**CTX, "tenant": "evil"})
    tampered = bytearray(ct)
    tampered[-3] ^= 0x10
    with pytest.raises(InvalidCiphertextError):
        kms.decrypt(bytes(tampered), CTX)
    assert partials_released(tn) == before


def test_unauthorized_client_refused_by_every_node_and_audited(tn: Testnet, key_id: str) -> None:
    stranger = Ed25519PrivateKey.generate()
    with (
        DistributedKMS(genesis=genesis(tn), identity=stranger, timeout=30) as other,
        pytest.raises(AccessDenied),
    ):
        other.encrypt(key_id, b"x")
    who = stranger.public_key().public_bytes_raw().hex()

    def refused_everywhere() -> bool:
        for i in tn.nodes():
            audit = trio.run(node_query, genesis(tn), i, "audit", {"from": 0, "limit": 1000})
            if not any(
                e["client"] == who and e["outcome"] == "access_denied" for e in audit["entries"]
            ):
                return False
        return True

    wait_for(refused_everywhere, 20, "the refusal in every node's audit trail")
    audit = trio.run(node_query, genesis(tn), 1, "audit", {"from": 0, "limit": 1000})
    head = verify_chain([entry_from_json(e) for e in audit["entries"]])
    assert head.hex() == audit["head"]


def test_strangers_reach_the_log_at_a_bounded_rate_and_known_clients_do_not_wait(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    """Anyone can make a key pair: requests from clients the state does not know get into the
    log (to be refused and audited) only within a per-node budget; the rest are told 'busy'
    and retried by the client, and known clients are never held back."""
    from kmsnode.client import AsyncDistributedKMS
    from kmsnode.node import STRANGER_BURST

    before = sum(s["node_stats"]["strangers_throttled"] for s in status(tn).values())
    flood = STRANGER_BURST + 30
    outcomes: list[str] = []

    async def main() -> None:
        stranger = Ed25519PrivateKey.generate()
        async with AsyncDistributedKMS(genesis=genesis(tn), identity=stranger, timeout=60) as c:

            async def one() -> None:
                try:
                    await c.describe_key(key_id)
                    outcomes.append("served")
                except AccessDenied:
                    outcomes.append("denied")

            async with trio.open_nursery() as nursery:
                for _ in range(flood):
                    nursery.start_soon(one)
                await trio.sleep(0.2)  # the flood is being throttled now; a known client:
                record = await trio.to_thread.run_sync(kms.describe_key, key_id)
                assert record.key_id == key_id

    trio.run(main)
    assert outcomes == ["denied"] * flood  # every one ordered, refused and answered in time
    after = sum(s["node_stats"]["strangers_throttled"] for s in status(tn).values())
    assert after > before


def test_nodes_vouch_only_for_a_known_clients_own_connection(tn: Testnet, key_id: str) -> None:
    """Strangers' connections are evicted before registered clients' (see the guard). A node
    vouches for a connection when a request from a client the state knows arrives on it with
    that client's signature over the connection's peer id: never for a stranger's, and never
    for a known client's request and proof sent again from another connection."""
    from kmsnode.client import AsyncDistributedKMS, ClientConfig
    from kmsnode.wire.requests import DescribeKey
    from kmsnode.wire.vouch import sign_vouch

    g = genesis(tn)
    admin = ClientConfig.load(tn.dir / "client.json").identity

    async def vouched() -> dict[int, int]:
        # A counter that only grows: connections of earlier tests' clients that close late
        # cannot blur it (the number vouched for now, a gauge, would move with them).
        with trio.fail_after(30):
            while True:
                st = await statuses(g, tn.nodes())
                if all(s is not None for s in st.values()):
                    return {i: s["node_stats"]["peers_vouched"] for i, s in st.items()}
                await trio.sleep(0.2)

    async def all_connected(c: AsyncDistributedKMS) -> None:
        with trio.fail_after(20):
            while not all(s.stats.connected for s in c._sessions.values()):
                await trio.sleep(0.05)

    async def main() -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
        base = await vouched()
        async with AsyncDistributedKMS(
            genesis=g, identity=Ed25519PrivateKey.generate(), timeout=30
        ) as stranger:
            await all_connected(stranger)
            with pytest.raises(AccessDenied):
                await stranger.describe_key(key_id)
            # The admin's request with the admin's proof for its own connection, sent again
            # from another host (as a committee member that saw them could).
            prepared = ClientCore(g, admin).prepare(DescribeKey(key_id))
            proof = sign_vouch(admin, g.chain_id, net.NetworkIdentity.generate().peer_id_str)
            body = {"request": prepared.payload, "relay": False, "vouch": proof}
            for answers in await submit_everywhere(g, tn.nodes(), body):
                assert answers and answers[-1].kind == "resp"  # served, not vouched for
            after_replay = await vouched()
            async with AsyncDistributedKMS(genesis=g, identity=admin, timeout=30) as known:
                await all_connected(known)
                now = after_replay
                with trio.move_on_after(20):
                    while any(now[i] == after_replay[i] for i in now):
                        await known.describe_key(key_id)
                        await trio.sleep(0.2)
                        now = await vouched()
        return base, after_replay, now

    base, after_replay, final = trio.run(main)
    assert after_replay == base, "a stranger's connection or a replayed proof was vouched for"
    assert final == {i: v + 1 for i, v in base.items()}, (base, final)


def test_replayed_request_is_not_served_twice(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    ct = kms.encrypt(key_id, b"once", CTX)
    g = genesis(tn)
    client = ClientCore(
        g,
        Ed25519PrivateKey.from_private_bytes(
            bytes.fromhex((tn.dir / "admin.key").read_text().strip())
        ),
    )
    prepared = client.prepare(Decrypt(ct, CTX))

    async def submit_to_all() -> list[bytes]:
        answers = await submit_everywhere(g, tn.nodes(), prepared.payload)
        return [e.body for node in answers for e in node if e.kind == "resp"]

    first = trio.run(submit_to_all)
    assert len(first) == 4
    released = partials_released(tn)
    again = trio.run(submit_to_all)
    assert again == first  # the cached answers, nothing recomputed
    assert partials_released(tn) == released


def test_answers_are_fetchable_by_request_id_from_any_node(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    # The request goes to node 1 alone (which relays it); every node executes the committed
    # request anyway, and any of them hands out its own signed answer by request id.
    ct = kms.encrypt(key_id, b"fetch me", CTX)
    g = genesis(tn)
    admin = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex((tn.dir / "admin.key").read_text().strip())
    )
    prepared = ClientCore(g, admin).prepare(Decrypt(ct, CTX))

    async def ask(node: int, envelope: net.Envelope) -> list[net.Envelope]:
        host = net.Host(net.NetworkIdentity.generate())
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            info = g.node(node)
            out = await net.request(
                host, net.parse_peer_id(info.peer_id), info.addrs, envelope, timeout=30
            )
            nursery.cancel_scope.cancel()
        return out

    body = {"request": prepared.payload, "relay": True}
    submitted = trio.run(ask, 1, net.Envelope("submit", body))
    assert [e.kind for e in submitted] == ["resp"]
    fetched: dict[int, bytes] = {}

    def all_fetched() -> bool:
        for i in tn.nodes():
            if i not in fetched:
                got = trio.run(ask, i, net.Envelope("fetch", prepared.request_id))
                if got and got[0].kind == "resp":
                    fetched[i] = got[0].body
        return len(fetched) == len(tn.nodes())

    wait_for(all_fetched, 20, "every node's answer by request id")
    assert fetched[1] == submitted[0].body
    meta = kms.describe_key(key_id)
    v = meta.versions[0]
    assert v.public_key is not None
    collector = ClientCore(g, admin).collector(
        prepared, KeyMaterial(v.public_key, v.verification_keys, v.epoch, v.version, meta.kind)
    )
    for i, data in sorted(fetched.items()):
        collector.add(i, data)
    assert collector.done and collector.result == b"fetch me"
    unknown = trio.run(ask, 2, net.Envelope("fetch", bytes(32)))
    assert [e.kind for e in unknown] == ["err"]


def test_malformed_and_oversized_frames_do_not_crash_a_node(tn: Testnet) -> None:
    g = genesis(tn)
    info = g.node(2)

    async def abuse() -> None:
        host = net.Host(net.NetworkIdentity.generate())
        async with trio.open_nursery() as nursery:
            await nursery.start(host.run)
            peer = net.parse_peer_id(info.peer_id)
            await host.connect(peer, info.addrs)
            for junk in (b"\xff\xff\xff\xff" + b"x" * 100, b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1"):
                stream = await host.libp2p.new_stream(peer, [net.CLIENT_PROTOCOL])  # type: ignore[list-item]
                await stream.write(junk)
                # The node answers with a reset (or an error frame): either way, not a crash.
                with trio.move_on_after(5), contextlib.suppress(Exception):
                    await stream.read(100)
                with contextlib.suppress(Exception):
                    await stream.close()
            nursery.cancel_scope.cancel()

    trio.run(abuse)
    assert trio.run(node_query, g, 2, "status")["node"] == 2
    assert tn.alive(2)


def test_kill_one_node_decrypt_still_works_then_it_catches_up(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    ct = kms.encrypt(key_id, b"survives a crash", CTX)
    tn.kill(4)  # SIGKILL
    assert kms.decrypt(ct, CTX) == b"survives a crash"
    kms.encrypt(key_id, b"more traffic while node 4 is down", CTX)
    tn.start(4)

    def caught_up() -> bool:
        st = status(tn)
        return (
            all(s is not None for s in st.values())
            and len({s["state_height"] for s in st.values()}) == 1
        )

    wait_for(caught_up, 60, "node 4 to catch up")
    # Node 4 must now serve: with node 1 down, t = 3 needs nodes 2, 3 and 4.
    tn.kill(1)
    try:
        assert kms.decrypt(ct, CTX) == b"survives a crash"
    finally:
        tn.start(1)
        wait_for(caught_up, 60, "node 1 to catch up")


def test_partitions_stop_the_minority_and_a_split_halts_until_healed(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    ct = kms.encrypt(key_id, b"across partitions", CTX)
    # Node 4 alone on its side: nodes 1-3 are a quorum and t = 3 of them decrypt. (A block
    # in flight when the cut lands may still arrive: heights may move by one, no more.)
    wait_partitioned(tn, tn.partition([{4}]), 10)
    try:
        cut_off_at = status(tn)[4]["height"]
        assert kms.decrypt(ct, CTX) == b"across partitions"
        kms.encrypt(key_id, b"more blocks on the majority side", CTX)
        st = status(tn)
        assert st[4]["height"] <= cut_off_at + 1 < min(st[i]["height"] for i in (1, 2, 3))
        # Two against two: no quorum on either side, nothing commits, the client gives up.
        wait_partitioned(tn, tn.partition([{1, 2}, {3, 4}]), 10)
        before = {i: s["height"] for i, s in status(tn).items()}
        short = DistributedKMS.from_config(tn.dir / "client.json", timeout=4)
        with short, pytest.raises(QuorumUnavailable):
            short.decrypt(ct, CTX)
        after = {i: s["height"] for i, s in status(tn).items()}
        # Node 4 may catch up from node 3 on its side; the log itself does not grow.
        assert max(after.values()) <= max(before.values()) + 1, (before, after)
    finally:
        tn.heal()
        wait_partitioned(tn, {i: set() for i in tn.nodes()}, 10)

    def caught_up() -> bool:
        heights = {s["state_height"] for s in status(tn).values()}
        return len(heights) == 1

    assert kms.decrypt(ct, CTX) == b"across partitions"
    wait_for(caught_up, 60, "every node to catch up after the partition healed")


def test_a_node_with_another_genesis_is_cut_off_until_it_runs_ours(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    # Node 4 restarts with a genesis one operator "tuned" (a longer deletion wait): it would
    # apply the same log differently. Every node finds out and cuts it off; 1-3 go on.
    ct = kms.encrypt(key_id, b"one genesis", CTX)
    d = tn.dir / "node4"
    toml = d / "node.toml"
    original = toml.read_text(encoding="utf-8")
    g = genesis(tn)
    dataclasses.replace(g, min_deletion_wait_s=g.min_deletion_wait_s + 1).dump(d / "other.json")
    line = f'genesis = "{tn.dir / "genesis.json"}"'
    assert line in original
    tn.kill(4)
    toml.write_text(original.replace(line, 'genesis = "other.json"'), encoding="utf-8")

    def verdicts() -> dict[int, list[int]] | None:
        st = status(tn)
        if any(s is None for s in st.values()):
            return None
        return {i: s["genesis"]["mismatched"] for i, s in st.items()}

    try:
        tn.start(4)
        wait_for(
            lambda: verdicts() == {1: [4], 2: [4], 3: [4], 4: [1, 2, 3]},
            20,  # less than the checks' 30-s period: the restart itself makes the others ask
            "every node to find node 4's genesis differs",
        )
        stuck_at = status(tn)[4]["state_height"]
        assert kms.decrypt(ct, CTX) == b"one genesis"
        kms.encrypt(key_id, b"blocks node 4 never applies", CTX)
        st = status(tn)
        assert st[4]["state_height"] == stuck_at < min(st[i]["state_height"] for i in (1, 2, 3))
        assert all(s["genesis"]["unchecked"] == [] for s in st.values())
        assert all(s["partitioned_from"] == [] for s in st.values())  # no drill: genesis only
        log = (d / "node.log").read_text(encoding="utf-8", errors="replace")
        assert "runs another genesis" in log
        out = subprocess.run(
            [sys.executable, "-m", "testnet", "status", "--dir", str(tn.dir)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert "GENESIS differs on nodes [4]" in out and "GENESIS differs on nodes [1, 2, 3]" in out
        # The client sees it too (one node in f: it goes on without it).
        assert kms.check_genesis() == {1: "same", 2: "same", 3: "same", 4: "differs"}
    finally:
        tn.kill(4)
        toml.write_text(original, encoding="utf-8")
        tn.start(4)

    def caught_up() -> bool:
        st = status(tn)
        return all(s is not None and not s["genesis"]["mismatched"] for s in st.values()) and (
            len({s["state_height"] for s in st.values()}) == 1
        )

    wait_for(caught_up, 20, "node 4 to run our genesis again and catch up")
    assert kms.decrypt(ct, CTX) == b"one genesis"


def test_keystores_hold_no_share_in_the_clear(tn: Testnet, key_id: str) -> None:
    for i in tn.nodes():
        d = tn.dir / f"node{i}"
        passphrase = (d / "passphrase").read_text().strip().encode()
        with Keystore.open(d / "keystore.db", passphrase, i) as ks:
            shares = [ks.get(name) for name in ks.names("share")]
            identity = [ks.get(name) for name in ks.names("identity")]
        assert shares
        blobs = b"".join(p.read_bytes() for p in d.iterdir() if p.is_file())
        for secret in shares + identity:
            assert secret not in blobs
            assert secret.hex().encode() not in blobs


def test_flipped_bit_in_a_keystore_refuses_to_start(
    tn: Testnet, key_id: str, tmp_path: Path
) -> None:
    import shutil
    import sqlite3

    src = tn.dir / "node3"
    d = tmp_path / "node3"
    d.mkdir()
    for name in ("node.toml", "passphrase"):
        shutil.copy(src / name, d / name)
    lines = (d / "node.toml").read_text().splitlines()
    lines = [
        f'genesis = "{tn.dir / "genesis.json"}"' if x.startswith("genesis") else x for x in lines
    ]
    (d / "node.toml").write_text("\n".join(lines) + "\n")
    # A consistent copy of a live SQLite database: the backup API, not a file copy.
    with sqlite3.connect(src / "keystore.db") as live, sqlite3.connect(d / "keystore.db") as copy:
        live.backup(copy)
    db = sqlite3.connect(d / "keystore.db")
    (sealed,) = db.execute("SELECT sealed FROM records WHERE kind='share'").fetchone()
    db.close()
    data = bytearray((d / "keystore.db").read_bytes())
    pos = data.find(sealed)
    assert pos >= 0
    data[pos + 17] ^= 0x01
    (d / "keystore.db").write_bytes(bytes(data))

    def run_node() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kmsnode", "run", "--config", str(d / "node.toml")],
            capture_output=True,
            text=True,
            timeout=60,
        )

    proc = run_node()
    assert proc.returncode != 0
    assert "failed authentication" in proc.stderr
    assert "share/" in proc.stderr
    # A fresh copy whose executed-height mark says another height (under its old MAC): a
    # restart from it would skip or repeat executions, so the node refuses, by name.
    (d / "keystore.db").unlink()
    with sqlite3.connect(src / "keystore.db") as live, sqlite3.connect(d / "keystore.db") as copy:
        live.backup(copy)
    with sqlite3.connect(d / "keystore.db") as db:
        (mark,) = db.execute("SELECT value FROM meta WHERE name='executed_height'").fetchone()
        db.execute(
            "UPDATE meta SET value=? WHERE name='executed_height'", (b"999999" + mark[-32:],)
        )
    proc = run_node()
    assert proc.returncode != 0
    assert "executed-height mark was altered" in proc.stderr
    assert "Traceback" not in proc.stderr
    # A genesis from before state rules were versioned (no field: v1): the node will not
    # apply the network's log under other rules than it names.
    for name in ("keystore.db", "keystore.db-wal", "keystore.db-shm"):
        (d / name).unlink(missing_ok=True)
    with sqlite3.connect(src / "keystore.db") as live, sqlite3.connect(d / "keystore.db") as copy:
        live.backup(copy)
    old_genesis = json.loads((tn.dir / "genesis.json").read_text())
    del old_genesis["rules_version"]
    (d / "genesis.json").write_text(json.dumps(old_genesis))
    lines = [
        f'genesis = "{d / "genesis.json"}"' if x.startswith("genesis") else x
        for x in (d / "node.toml").read_text().splitlines()
    ]
    (d / "node.toml").write_text("\n".join(lines) + "\n")
    proc = run_node()
    assert proc.returncode != 0
    assert "genesis file says state rules v1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_reports_consensus_progress(tn: Testnet) -> None:
    st = status(tn)
    assert all(s["height"] > 0 and s["round"] > 0 for s in st.values())
    assert {s["leader"] for s in st.values()} <= {1, 2, 3, 4}


def console_get(tn: Testnet, node: int, path: str, token: str | None = None) -> tuple[int, str]:
    """GET ``path`` from a node's operator console (its own token unless ``token``)."""
    console = tn.console(node)
    assert console is not None, "the testnet configures a console for every node"
    url, token_file = console
    secret = token if token is not None else token_file.read_text().strip()
    req = urllib.request.Request(
        url + path.lstrip("/"), headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_operator_console_shows_metrics_and_verifies_the_audit_trail(
    tn: Testnet, key_id: str
) -> None:
    st = status(tn)
    code, metrics = console_get(tn, 2, "/metrics")
    assert code == 200
    height = int(re.search(r"^kms_consensus_committed_height (\d+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert height >= st[2]["height"] > 0
    assert re.search(r'^kms_node_info\{chain_id="testnet-[0-9a-f]+",node="2"\} 1$', metrics, re.M)
    votes = re.search(r"^kms_consensus_votes_sent_total (\d+)$", metrics, re.M)
    assert votes is not None and int(votes.group(1)) > 0
    fsyncs = re.search(r"^kms_consensus_fsync_seconds_count (\d+)$", metrics, re.M)
    assert fsyncs is not None and int(fsyncs.group(1)) > 0
    assert re.search(r'^kms_consensus_fsync_seconds_bucket\{le="\+Inf"\} \d+$', metrics, re.M)
    code, body = console_get(tn, 2, "/api/audit?verify=1")
    verification = json.loads(body)
    assert code == 200 and verification["ok"] and verification["checked"] > 0
    code, keys = console_get(tn, 3, "/keys")
    assert code == 200 and key_id in keys
    # Another node's token does not open this node's console.
    other = tn.console(1)[1].read_text().strip()  # type: ignore[index]
    assert console_get(tn, 2, "/metrics", token=other)[0] == 401


def test_flight_recorders_merge_into_one_timeline(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    # Real processes, real consoles: every node's recorded events come back over HTTP and
    # merge (one monotonic clock on this machine) into rounds the hop analysis can split.
    start = time.monotonic_ns()
    ct = kms.encrypt(key_id, b"traced", CTX)
    for _ in range(3):
        assert kms.decrypt(ct, CTX) == b"traced"
    timeline = load_script("timeline")
    rows = timeline.fetch(tn, start)
    assert {node for _, node, _, _ in rows} == {0, 1, 2, 3}
    assert all(start <= t <= time.monotonic_ns() for t, _, _, _ in rows)
    names = {event for _, _, event, _ in rows}
    assert {"recv", "send", "broadcast", "persist", "persisted", "deliver", "apply"} <= names
    requests = {f[0] for _, _, event, f in rows if event == "request"}
    answers = {f[0] for _, _, event, f in rows if event == "answer"}
    assert len(requests) >= 4 and len(requests & answers) >= 4  # each decrypt, answered
    out = timeline.hops(rows)
    assert out["proposal transit"] and min(out["proposal transit"]) >= 0
    assert out["vote fsync"] and min(out["vote fsync"]) >= 0
    assert "round timeouts:" in timeline.summary(out)


def test_console_notices_a_tampered_audit_store(tn: Testnet, key_id: str) -> None:
    db = sqlite3.connect(tn.dir / "node3" / "audit.db")
    (original,) = db.execute("SELECT entry FROM audit WHERE idx = 0").fetchone()
    forged = json.loads(original)
    forged["outcome"] = "access_denied" if forged["outcome"] == "ok" else "ok"
    with db:
        db.execute("UPDATE audit SET entry = ? WHERE idx = 0", (json.dumps(forged),))
    try:
        verification = json.loads(console_get(tn, 3, "/api/audit?verify=1")[1])
        assert not verification["ok"] and "entry 0" in verification["error"]
    finally:
        with db:
            db.execute("UPDATE audit SET entry = ? WHERE idx = 0", (original,))
        db.close()
    assert json.loads(console_get(tn, 3, "/api/audit?verify=1")[1])["ok"]


def test_a_client_reaching_some_nodes_gets_its_requests_relayed_to_the_rest(
    tn: Testnet, key_id: str
) -> None:
    before = status(tn)
    with DistributedKMS.from_config(tn.dir / "client.json", nodes=[1, 2, 3], timeout=30) as c:
        ct = c.encrypt(key_id, b"relayed", {"app": "relay"})
        assert c.decrypt(ct, {"app": "relay"}) == b"relayed"
    after = status(tn)

    # Nodes 1-3 pass a request on (encrypt; describe, for the key material; decrypt) unless
    # it was committed and answered before the client's copy reached them (then they serve
    # it from their answer cache); node 4, which the client never contacted, takes the
    # relayed requests into its mempool.
    def delta(i: int, counter: str) -> int:
        return int(after[i]["node_stats"][counter] - before[i]["node_stats"][counter])

    # Each request's first copy reaches a node that has not answered it (nothing is committed
    # before a node has it), so each is relayed at least once. The decrypt needs all three
    # nodes' partials, so each of them got it and relayed it or served it from its cache;
    # encrypt and describe need fewer answers, so a slow node's copy may be cancelled unread.
    assert sum(delta(i, "relayed_out") for i in (1, 2, 3)) >= 3
    for i in (1, 2, 3):
        assert delta(i, "relayed_out") + delta(i, "answered_from_cache") >= 1
    got = after[4]["node_stats"]["relayed_in"] - before[4]["node_stats"]["relayed_in"]
    assert got >= 1
    assert after[4]["node_stats"]["relays_refused"] == 0


def test_a_byzantine_member_relaying_junk_is_refused_and_harms_nothing(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    # Node 4's process is stopped and its identity speaks the relay protocol to node 1 with
    # whatever a Byzantine member could send: nothing reaches the log, node 1 keeps serving.
    g = genesis(tn)
    d = tn.dir / "node4"
    with Keystore.open(d / "keystore.db", (d / "passphrase").read_text().strip().encode(), 4) as ks:
        identity = NodeIdentity.load(ks)
    foreign = ClientCore(g, Ed25519PrivateKey.generate()).prepare(Decrypt(b"x" * 200, CTX))
    junk = [
        net.Envelope("req", b"not a request"),
        net.Envelope("req", 12345),
        net.Envelope("req", foreign.payload[:-1] + bytes([foreign.payload[-1] ^ 1])),  # bad sig
        net.Envelope("something else", b""),
    ]
    before = status(tn)[1]["node_stats"]
    tn.kill(4)
    try:

        async def relay_junk() -> None:
            host = net.Host(
                net.NetworkIdentity.from_private_bytes(identity.network_key.private_bytes_raw())
            )
            committee = net.Committee(
                net.Member(net.NodeId(i.id), i.peer_id, i.addrs, i.network_key) for i in g.nodes
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                mesh = net.Mesh(host, committee, net.NodeId(4))
                mesh.add_protocol(net.ProtocolSpec(net.RELAY_PROTOCOL))
                await nursery.start(mesh.run)
                for envelope in junk:
                    mesh.send(net.NodeId(1), net.RELAY_PROTOCOL, envelope)
                await mesh.flush()
                with trio.fail_after(30):
                    while True:
                        now = (await statuses(g, [1]))[1]["node_stats"]
                        if now["relays_refused"] - before["relays_refused"] >= len(junk):
                            break
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

        trio.run(relay_junk)
        after = status(tn)[1]["node_stats"]
        assert after["relays_refused"] - before["relays_refused"] == len(junk)
        assert after["relayed_in"] == before["relayed_in"]
        assert tn.alive(1)
        ct = kms.encrypt(key_id, b"still serving", CTX)
        assert kms.decrypt(ct, CTX) == b"still serving"
    finally:
        tn.start(4)
        wait_healthy(tn, timeout=120)


def test_status_reports_where_request_time_goes(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    kms.describe_key(key_id)
    for s in status(tn).values():
        lat = s["latency_ms"]
        assert lat["samples"] >= 1
        # Ordering (mempool + consensus) takes at least a round trip; both legs are finite.
        assert 0 < lat["ordering_p50"] <= lat["ordering_p99"] < 30_000
        assert 0 <= lat["execution_p50"] <= lat["execution_p99"] < 30_000


def test_status_reports_what_each_node_holds_in_memory(
    tn: Testnet, kms: DistributedKMS, key_id: str
) -> None:
    kms.describe_key(key_id)
    for s in status(tn).values():
        mem = s["memory"]
        assert 20_000 < mem["rss_kb"] < 1_000_000
        assert mem["keys"] == s["keys"] >= 1
        assert mem["replay_window"] >= 2  # at least the create and the describe
        assert mem["answers_cached"] >= 1
        assert mem["dedup_window_payloads"] >= 2 and mem["dedup_window_bytes"] > 0
        assert mem["dkg_participants"] == 0  # finished DKGs are not kept
        # This test's client holds a connection to every node, well inside the guard's limit.
        assert 1 <= mem["client_connections"] <= 512
        assert s["node_stats"]["client_evictions"] == 0
        assert 1 <= mem["client_sessions"] <= 256
        # The startup heap is frozen out of the collector, and collections are counted.
        gc = s["gc"]
        assert gc["frozen_objects"] > 10_000
        assert len(gc["collections"]) == 3 and sum(gc["collections"]) > 0


def _kms(
    tn: Testnet, *args: str, stdin: bytes = b"", config: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The ``kms`` CLI as a process, with the testnet's admin config (or ``config``)."""
    env = {**os.environ, "KMS_CONFIG": str(config or tn.dir / "client.json")}
    return subprocess.run(
        [sys.executable, "-m", "kmsnode.client.cli", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
    )


def test_kms_cli_round_trip(tn: Testnet, key_id: str) -> None:
    import base64
    import json

    enc = _kms(tn, "encrypt", "--key", key_id, "--context", "app=cli", stdin=b"from the cli")
    assert enc.returncode == 0, enc.stderr
    dec = _kms(tn, "decrypt", "--context", "app=cli", stdin=enc.stdout)
    assert dec.returncode == 0 and dec.stdout == b"from the cli"
    wrong = _kms(tn, "decrypt", "--context", "app=other", stdin=enc.stdout)
    assert wrong.returncode == 1 and b"invalid ciphertext" in wrong.stderr
    meta = json.loads(_kms(tn, "--json", "describe-key", key_id).stdout)
    assert meta["key_id"] == key_id and meta["state"] == "enabled"
    listed = json.loads(_kms(tn, "--json", "list-keys").stdout)
    assert key_id in listed["keys"]
    b64 = _kms(tn, "encrypt", "--key", key_id, "--base64", stdin=b"text")
    assert _kms(tn, "decrypt", "--base64", stdin=b64.stdout).stdout == b"text"
    missing = _kms(tn, "describe-key", "key-doesnotexist")
    assert missing.returncode == 1 and b"key_not_found" in missing.stderr
    # --json: encrypt and decrypt answer JSON objects (base64 blobs); errors are JSON too.
    blob = json.loads(_kms(tn, "--json", "encrypt", "--key", key_id, stdin=b"json").stdout)
    assert blob["key_id"] == key_id
    dec_json = _kms(tn, "--json", "decrypt", "--base64", stdin=blob["ciphertext"].encode())
    assert base64.b64decode(json.loads(dec_json.stdout)["plaintext"]) == b"json"
    refused = _kms(tn, "--json", "decrypt", "--base64", "--context", "a=b", stdin=b"AAAA")
    assert refused.returncode == 1
    err = json.loads(refused.stderr)
    assert err["error"] == "invalid_ciphertext" and "invalid ciphertext" in err["message"]


def test_kms_cli_new_identity_is_granted_and_decrypts(
    tn: Testnet, key_id: str, tmp_path: Path
) -> None:
    # An application's own identity, the AWS/Vault way: create it, have an admin grant it,
    # use it; all from the command line.
    out = tmp_path / "app"
    made = _kms(tn, "--json", "new-identity", str(out))
    assert made.returncode == 0, made.stderr
    pub = json.loads(made.stdout)["client"]
    assert (tmp_path / "app.key").stat().st_mode & 0o777 == 0o600
    assert _kms(tn, "new-identity", str(out)).returncode == 2  # never overwrites a key
    (tmp_path / "taken.json").write_text("{}")
    assert _kms(tn, "new-identity", str(tmp_path / "taken")).returncode == 2
    assert not (tmp_path / "taken.key").exists()  # a failed attempt leaves no key behind

    def as_app(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return _kms(tn, *args, stdin=stdin, config=tmp_path / "app.json")

    assert as_app("whoami").stdout.decode().strip() == pub
    assert _kms(tn, "whoami").stdout.decode().strip() != pub  # the admin's own key
    ct = _kms(tn, "encrypt", "--key", key_id, "--context", "app=new", stdin=b"for the app")
    assert ct.returncode == 0, ct.stderr
    denied = as_app("decrypt", "--context", "app=new", stdin=ct.stdout)
    assert denied.returncode == 1 and b"access" in denied.stderr.lower()
    granted = _kms(tn, "set-policy", "--key", key_id, "--client", pub, "--permissions", "decrypt")
    assert granted.returncode == 0, granted.stderr
    ok = as_app("decrypt", "--context", "app=new", stdin=ct.stdout)
    assert ok.returncode == 0 and ok.stdout == b"for the app", ok.stderr
    policy = json.loads(_kms(tn, "--json", "get-policy", key_id).stdout)
    assert policy["grants"][pub] == ["decrypt"]
    assert as_app("get-policy", key_id).returncode == 1  # decrypt does not let it read grants


def test_kms_cli_rotate_key_new_version_encrypts_and_old_ciphertexts_still_decrypt(
    tn: Testnet,
) -> None:
    from kmsnode.crypto import tdh2

    made = _kms(tn, "create-key", "--description", "rotated")
    assert made.returncode == 0, made.stderr
    key = made.stdout.decode().strip()
    old = _kms(tn, "encrypt", "--key", key, "--context", "app=rot", stdin=b"under v1").stdout
    rotated = _kms(tn, "--json", "rotate-key", key)
    assert rotated.returncode == 0, rotated.stderr
    meta = json.loads(rotated.stdout)
    assert [(v["version"], v["state"]) for v in meta["versions"]] == [(1, "active"), (2, "active")]
    assert meta["current_version"] == 2
    assert meta["versions"][0]["public_key"] != meta["versions"][1]["public_key"]
    new = _kms(tn, "encrypt", "--key", key, "--context", "app=rot", stdin=b"under v2").stdout
    assert tdh2.parse(old).key_version == 1 and tdh2.parse(new).key_version == 2
    for ct, plain in ((old, b"under v1"), (new, b"under v2")):
        got = _kms(tn, "decrypt", "--context", "app=rot", stdin=ct)
        assert got.returncode == 0 and got.stdout == plain, got.stderr


def test_kms_cli_refresh_key_keeps_ciphertexts_and_replaces_every_share(
    tn: Testnet, kms: DistributedKMS
) -> None:
    meta = kms.create_key("encrypt", "refreshed")
    key = meta.key_id
    ct = kms.encrypt(key, b"before the refresh", {"app": "ref"})
    assert kms.decrypt(ct, {"app": "ref"}) == b"before the refresh"  # caches epoch-0 keys
    refreshed = _kms(tn, "--json", "refresh-key", key)
    assert refreshed.returncode == 0, refreshed.stderr
    after = json.loads(refreshed.stdout)["versions"][0]
    before = meta.versions[0]
    assert after["epoch"] == 1 and not after["refreshing"] and after["refreshed_height"]
    assert bytes.fromhex(after["public_key"]) == before.public_key
    assert after["verification_keys"] != {
        str(i): k.hex() for i, k in before.verification_keys.items()
    }
    # This client still holds the epoch-0 verification keys: it refetches and decrypts,
    # naming nobody.
    assert kms.decrypt(ct, {"app": "ref"}) == b"before the refresh"
    assert kms.last_misbehaving == ()
    # Every node holds its epoch-1 share of the key and nothing older.
    for i in tn.nodes():
        d = tn.dir / f"node{i}"
        passphrase = (d / "passphrase").read_text().strip().encode()
        with Keystore.open(d / "keystore.db", passphrase, i) as ks:
            held = [(n.version, n.epoch) for n in ks.names("share") if n.key_id == key]
        assert held == [(1, 1)], f"node {i} holds {held}"


def test_a_deleted_key_leaves_every_keystore_through_the_cli(
    tn: Testnet, kms: DistributedKMS
) -> None:
    made = _kms(tn, "create-key", "--description", "to be shredded")
    assert made.returncode == 0, made.stderr
    key = made.stdout.decode().strip()
    ct = kms.encrypt(key, b"shred me", CTX)
    too_long = _kms(tn, "schedule-key-deletion", key, "--days", "31")
    assert too_long.returncode != 0 and b"0..30 days" in too_long.stderr
    too_soon = _kms(tn, "--json", "schedule-key-deletion", key, "--seconds", "1")
    assert too_soon.returncode == 1 and json.loads(too_soon.stderr)["error"] == "wait_too_short"
    scheduled = _kms(tn, "--json", "schedule-key-deletion", key, "--seconds", str(DELETION_WAIT_S))
    assert scheduled.returncode == 0, scheduled.stderr
    assert json.loads(scheduled.stdout)["state"] == "pending-deletion"
    with pytest.raises(KeyUnavailable, match="pending-deletion"):
        kms.decrypt(ct, CTX)

    def erased_everywhere() -> bool:
        for i in tn.nodes():
            d = tn.dir / f"node{i}"
            passphrase = (d / "passphrase").read_text().strip().encode()
            with Keystore.open(d / "keystore.db", passphrase, i) as ks:
                if any(n.key_id == key for n in ks.names()):
                    return False
        return True

    # Nobody asks anything of the log now (reading keystores commits nothing): the nodes'
    # own ticks make the block that deletes the key, and each node erases its share.
    wait_for(erased_everywhere, 30, "every keystore to drop the key")
    meta = kms.describe_key(key)
    assert meta.state == "deleted"
    assert meta.deleted_ms is not None and meta.deletion_due_ms is None
    with pytest.raises(KeyUnavailable, match="deleted"):
        kms.decrypt(ct, CTX)
    total = kms.audit(0, 1).total
    page = kms.audit(max(0, total - 200), 200)
    trail = [(e.op, e.outcome) for e in page.entries if e.key_id == key and e.op != "describe_key"]
    assert trail[-4:] == [
        ("schedule_key_deletion", "ok"),
        ("decrypt", "key_unavailable"),
        ("key_deleted", "ok"),
        ("decrypt", "key_unavailable"),
    ], trail
    refused = _kms(tn, "--json", "cancel-key-deletion", key)
    assert refused.returncode == 1
    assert json.loads(refused.stderr)["error"] == "not_pending_deletion"


def test_a_v2_testnet_upgrades_to_v3_rules_in_place(tmp_path: Path) -> None:
    """Real processes: nodes running this software on a v2 genesis say so in the log; an
    admin activates v3 through the CLI; key deletion, refused before, then works."""
    old = Testnet(tmp_path / "v2net")
    old.generate(4, scrypt_log2_n=12, min_deletion_wait_s=DELETION_WAIT_S, rules_version=2)
    for i in old.nodes():
        old.start(i)
    try:
        wait_healthy(old, timeout=120)
        g = genesis(old)
        with DistributedKMS.from_config(old.dir / "client.json", timeout=30) as client:
            key = client.create_key("encrypt", "upgrade drill").key_id
            with pytest.raises(RequestRejected, match="not_supported") as caught:
                client.schedule_key_deletion(key, DELETION_WAIT_S)
            assert caught.value.code == "not_supported"

            def rules() -> dict[int, Any]:
                return {i: s["rules"] for i, s in trio.run(statuses, g, old.nodes()).items()}

            wait_for(
                lambda: all(r["nodes_lacking"].get("3") == [] for r in rules().values()),
                30,
                "every node to say in the log that it applies v3",
            )
            done = _kms(old, "--json", "activate-rules", "3", "--after-blocks", "10")
            assert done.returncode == 0, done.stderr
            at = json.loads(done.stdout)["height"]
            # Nobody sends anything: the nodes tick the log to that height themselves.
            wait_for(
                lambda: all(r["version"] == 3 for r in rules().values()),
                30,
                f"v3 to take effect at height {at}",
            )
            assert client.schedule_key_deletion(key, DELETION_WAIT_S) > 0
            wait_for(lambda: client.describe_key(key).state == "deleted", 30, "the deletion")
    finally:
        for i in old.nodes():
            old.kill(i)


def test_a_v3_testnet_upgrades_to_v4_and_then_may_leave_a_down_node_behind(
    tmp_path: Path,
) -> None:
    """Real processes: under v3 an upgrade needs every node (leave_behind is refused before
    the log); with node 4 back, v4 takes effect; under v4, with node 4 down, the CLI names it
    to leave behind, and the nodes refuse what is still wrong (no node applies v5; more than
    f nodes)."""
    net = Testnet(tmp_path / "v3net")
    net.generate(4, scrypt_log2_n=12, rules_version=3)
    for i in net.nodes():
        net.start(i)
    try:
        wait_healthy(net, timeout=120)
        g = genesis(net)

        def rules(nodes: list[int]) -> dict[int, Any]:
            return {i: s["rules"] for i, s in trio.run(statuses, g, nodes).items()}

        def error(done: subprocess.CompletedProcess[bytes]) -> str:
            assert done.returncode == 1, done.stdout
            return str(json.loads(done.stderr)["error"])

        wait_for(
            lambda: all(r["nodes_lacking"].get("4") == [] for r in rules(net.nodes()).values()),
            30,
            "every node to say in the log that it applies v4",
        )
        net.kill(4)
        up = [1, 2, 3]
        refused = _kms(net, "--json", "activate-rules", "4", "--leave-behind", "4")
        assert error(refused) == "not_supported", refused.stderr
        assert b"cannot leave nodes behind" in refused.stderr
        net.start(4)
        wait_healthy(net, timeout=60)
        done = _kms(net, "--json", "activate-rules", "4", "--after-blocks", "10")
        assert done.returncode == 0, done.stderr
        wait_for(
            lambda: all(r["version"] == 4 for r in rules(net.nodes()).values()),
            30,
            "v4 to take effect on every node",
        )
        net.kill(4)
        no_v5 = _kms(net, "--json", "activate-rules", "5", "--leave-behind", "4")
        assert error(no_v5) == "rules_unsupported", no_v5.stderr
        assert b"[1, 2, 3]" in no_v5.stderr  # nodes 1-3 do not apply v5 (this software)
        too_many = _kms(net, "--json", "activate-rules", "5", "--leave-behind", "3,4")
        assert too_many.returncode == 2  # the client knows f: refused before sending
        assert "at most f = 1" in json.loads(too_many.stderr)["message"]
        assert all(r["version"] == 4 and r["pending"] is None for r in rules(up).values())
    finally:
        for i in net.nodes():
            if net.alive(i):
                net.kill(i)


def test_a_client_compares_its_genesis_with_the_nodes(tn: Testnet, tmp_path: Path) -> None:
    """``kms check-genesis`` says every node runs the config's genesis; a config whose
    genesis is another network's (another chain id, same nodes) fails with a clear
    ``genesis_mismatch`` instead of the nodes' refusals alone."""
    same = _kms(tn, "--json", "check-genesis")
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    assert report["nodes"] == {str(i): "same" for i in tn.nodes()}
    assert report["digest"] == genesis(tn).digest().hex()

    other = json.loads((tn.dir / "genesis.json").read_text())
    other["chain_id"] += "-other"
    (tmp_path / "genesis.json").write_text(json.dumps(other))
    config = json.loads((tn.dir / "client.json").read_text())
    config["genesis"] = str(tmp_path / "genesis.json")
    config["identity"] = str((tn.dir / config["identity"]).resolve())
    (tmp_path / "client.json").write_text(json.dumps(config))
    differs = _kms(tn, "--json", "check-genesis", config=tmp_path / "client.json")
    assert differs.returncode == 1
    assert set(json.loads(differs.stdout)["nodes"].values()) == {"differs"}
    refused = _kms(tn, "--json", "list-keys", config=tmp_path / "client.json")
    assert refused.returncode == 1
    error = json.loads(refused.stderr)
    assert error["error"] == "genesis_mismatch", error
    assert "run another genesis than this client's" in error["message"]


def test_kms_cli_homomorphic_sum(tn: Testnet) -> None:
    made = _kms(tn, "create-key", "--kind", "homomorphic", "--description", "tally")
    assert made.returncode == 0, made.stderr
    key = made.stdout.decode().strip()
    cts = []
    for value in (3, 4, 35):
        out = _kms(tn, "encrypt-int", "--key", key, str(value))
        assert out.returncode == 0, out.stderr
        cts.append(out.stdout.decode().strip())
    summed = _kms(tn, "add", *cts)  # offline: no node sees the parts
    assert summed.returncode == 0, summed.stderr
    scaled = _kms(tn, "scale", summed.stdout.decode().strip(), "10")
    got = _kms(tn, "--json", "decrypt-sum", scaled.stdout.decode().strip())
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"value": 420}
    # The key serves sums only: a TDH2 encryption under it is refused by the client.
    refused = _kms(tn, "--json", "encrypt", "--key", key, stdin=b"x")
    assert refused.returncode == 1 and json.loads(refused.stderr)["error"] == "wrong_key_kind"
    bad = _kms(tn, "--json", "add", cts[0], "not base64!")
    assert bad.returncode == 2 and json.loads(bad.stderr)["error"] == "usage"
    negative = _kms(tn, "--json", "encrypt-int", "--key", key, "-5")  # never readable back
    assert negative.returncode == 2 and json.loads(negative.stderr)["error"] == "usage"
    small = _kms(tn, "--json", "decrypt-sum", "--bound", "100", scaled.stdout.decode().strip())
    assert small.returncode == 1 and json.loads(small.stderr)["error"] == "sum_out_of_bound"
    # A sum limit (rules v4): one sum per client per day, then refused until lifted.
    total = scaled.stdout.decode().strip()
    limited = _kms(tn, "--json", "set-sum-limit", key, "--max-sums", "1")
    assert limited.returncode == 0, limited.stderr
    assert json.loads(limited.stdout) == {"key_id": key, "max_sums": 1, "window_s": 86400}
    meta = json.loads(_kms(tn, "--json", "describe-key", key).stdout)
    assert meta["sum_limit"] == {"max_sums": 1, "window_s": 86400}
    assert json.loads(_kms(tn, "--json", "decrypt-sum", total).stdout) == {"value": 420}
    again = _kms(tn, "--json", "decrypt-sum", total)
    assert again.returncode == 1 and json.loads(again.stderr)["error"] == "sum_limit", again.stderr
    assert _kms(tn, "--json", "set-sum-limit", key).returncode == 2  # neither a limit nor --lift
    assert _kms(tn, "set-sum-limit", key, "--lift").returncode == 0
    assert json.loads(_kms(tn, "--json", "decrypt-sum", total).stdout) == {"value": 420}


def test_kms_cli_threshold_bls_sign_and_verify(tn: Testnet) -> None:
    from py_ecc.bls.ciphersuites import G2ProofOfPossession

    made = _kms(tn, "--json", "create-key", "--kind", "sign-bls", "--description", "releases")
    assert made.returncode == 0, made.stderr
    meta = json.loads(made.stdout)
    key, public_key = meta["key_id"], bytes.fromhex(meta["versions"][0]["public_key"])
    signed = _kms(tn, "sign", "--key", key, stdin=b"artifact digest")
    assert signed.returncode == 0, signed.stderr
    signature = signed.stdout.decode().strip()
    assert G2ProofOfPossession.Verify(public_key, b"artifact digest", base64.b64decode(signature))
    ok = _kms(tn, "verify", "--key", key, "--signature", signature, stdin=b"artifact digest")
    assert ok.returncode == 0 and ok.stdout.strip() == b"valid", ok.stderr
    bad = _kms(tn, "verify", "--key", key, "--signature", signature, stdin=b"another digest")
    assert bad.returncode == 1 and bad.stdout.strip() == b"invalid"
    signed = _kms(tn, "--json", "sign", "--key", key, stdin=b"v")
    assert json.loads(signed.stdout)["version"] == 1
    v1 = json.loads(signed.stdout)["signature"]
    named = _kms(tn, "verify", "--key", key, "--version", "1", "--signature", v1, stdin=b"v")
    assert named.returncode == 0, named.stderr
    assert _kms(tn, "disable-key", key).returncode == 0  # "stop every use": verify too
    off = _kms(tn, "--json", "verify", "--key", key, "--signature", v1, stdin=b"v")
    assert off.returncode == 1 and json.loads(off.stderr)["error"] == "key_unavailable"


def test_the_readme_python_example_runs(tn: Testnet) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    found = re.search(r"```python\n(.*?)```", readme, re.S)
    assert found, "the README lost its Python example"
    code = found.group(1).replace('".testnet/client.json"', repr(str(tn.dir / "client.json")))
    assert str(tn.dir) in code, "the example no longer reads .testnet/client.json"
    exec(compile(code, "README.md", "exec"), {})  # its asserts are the test


def test_kms_cli_disable_key_stops_its_use_until_enabled(tn: Testnet, key_id: str) -> None:
    ct = _kms(tn, "encrypt", "--key", key_id, "--context", "app=off", stdin=b"pause me")
    assert ct.returncode == 0, ct.stderr
    try:
        off = _kms(tn, "--json", "disable-key", key_id)
        assert off.returncode == 0 and json.loads(off.stdout)["state"] == "disabled", off.stderr
        meta = json.loads(_kms(tn, "--json", "describe-key", key_id).stdout)
        assert meta["state"] == "disabled"
        refused = _kms(tn, "--json", "decrypt", "--context", "app=off", stdin=ct.stdout)
        assert refused.returncode == 1 and json.loads(refused.stderr)["error"] == "key_unavailable"
        again = _kms(tn, "encrypt", "--key", key_id, stdin=b"x")
        assert again.returncode == 1 and b"disabled" in again.stderr
    finally:
        assert _kms(tn, "enable-key", key_id).returncode == 0
    ok = _kms(tn, "decrypt", "--context", "app=off", stdin=ct.stdout)
    assert ok.returncode == 0 and ok.stdout == b"pause me", ok.stderr


def test_kms_cli_audit_shows_the_trail_f_plus_1_nodes_agree_on(tn: Testnet, key_id: str) -> None:
    got = _kms(tn, "--json", "audit", "--limit", "1000")
    assert got.returncode == 0, got.stderr
    page = json.loads(got.stdout)
    assert page["misbehaving"] == [] and page["total"] >= len(page["entries"]) > 3
    entries = [entry_from_json(e) for e in page["entries"]]
    verify_chain(entries)  # from entry 0, so pinned to the genesis hash
    # The same entries as node 1 holds (entries are decided by the log).
    node1 = trio.run(node_query, genesis(tn), 1, "audit", {"from": 0, "limit": len(entries)})
    assert [e["hash"] for e in node1["entries"]] == [e.hash.hex() for e in entries]
    assert any(e.op == "create_key" and e.key_id == key_id for e in entries)
    middle = json.loads(_kms(tn, "--json", "audit", "--from", "2", "--limit", "3").stdout)
    assert [e["index"] for e in middle["entries"]] == [2, 3, 4]
    text = _kms(tn, "audit", "--limit", "5").stdout.decode()
    assert text.count("\n#") == 4 and "entries agreed by f + 1 nodes" in text


def test_kmsnode_init_and_genesis(tmp_path: Path) -> None:
    import json

    env = {**os.environ, "KMSNODE_PASSPHRASE": "operator passphrase"}
    publics = []
    for i in (1, 2, 3, 4):
        d = tmp_path / f"n{i}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kmsnode",
                "init",
                "--dir",
                str(d),
                "--node-id",
                str(i),
                "--listen",
                f"/ip4/127.0.0.1/tcp/{20000 + i}",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        publics.append(str(d / "public.json"))
        with Keystore.open(d / "keystore.db", b"operator passphrase", i) as ks:
            assert [n.key_id for n in ks.names("identity")] == ["network", "sealing", "signing"]
    admin = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    out = tmp_path / "genesis.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kmsnode",
            "genesis",
            *publics,
            "--out",
            str(out),
            "--chain-id",
            "ops-test",
            "--admin",
            admin,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    g = Genesis.load(out)
    assert (g.n, g.f, g.t, g.chain_id) == (4, 1, 3, "ops-test")
    assert json.loads(out.read_text())["admins"] == [admin]
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "kmsnode",
            "init",
            "--dir",
            str(tmp_path / "n1"),
            "--node-id",
            "1",
            "--listen",
            "/ip4/127.0.0.1/tcp/20001",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_frost_ed25519_signing_survives_a_killed_signer(tn: Testnet, kms: DistributedKMS) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    meta = kms.create_key("sign-ed25519", "frost releases")
    key = meta.key_id
    public_key = Ed25519PublicKey.from_public_bytes(meta.current.public_key)  # type: ignore[union-attr]
    signature = kms.sign(key, b"release 2.0")
    public_key.verify(signature, b"release 2.0")  # OpenSSL: raises if invalid
    assert kms.verify(key, b"release 2.0", signature)
    assert not kms.verify(key, b"release 2.1", signature)
    # The CLI signs and verifies too.
    signed = _kms(tn, "sign", "--key", key, stdin=b"artifact digest")
    assert signed.returncode == 0, signed.stderr
    public_key.verify(base64.b64decode(signed.stdout.strip()), b"artifact digest")
    ok = _kms(
        tn,
        "verify",
        "--key",
        key,
        "--signature",
        signed.stdout.decode().strip(),
        stdin=b"artifact digest",
    )
    assert ok.returncode == 0 and ok.stdout.strip() == b"valid", ok.stderr
    # With t = 3 of 4, a killed node leaves exactly t signers: a signature the log gives to
    # it fails over to the three others.
    tn.kill(3)  # SIGKILL
    try:
        for k in range(4):
            message = b"while node 3 is down %d" % k
            public_key.verify(kms.sign(key, message), message)
    finally:
        tn.start(3)

    def caught_up() -> bool:
        st = status(tn)
        return (
            all(s is not None for s in st.values())
            and len({s["state_height"] for s in st.values()}) == 1
        )

    wait_for(caught_up, 60, "node 3 to catch up")
    # Node 3 signs again (its pool refilled, its nonces survived the crash or were replaced):
    # with node 1 down, every signature needs it.
    tn.kill(1)
    try:
        for k in range(3):
            message = b"node 3 is back %d" % k
            public_key.verify(kms.sign(key, message), message)
    finally:
        tn.start(1)
        wait_for(caught_up, 60, "node 1 to catch up")


def test_a_node_restored_from_an_old_keystore_backup_signs_again(
    tn: Testnet, kms: DistributedKMS, tmp_path: Path
) -> None:
    # Node 2's keystore goes back in time (the log does not): nonces it posted since the
    # backup are gone, used ones are back. It catches up, replaces its pool, and signs
    # correctly when it must (node 1 down: t = 3 needs nodes 2, 3 and 4).
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    meta = kms.create_key("sign-ed25519", "restore drill")
    assert meta.current is not None and meta.current.public_key is not None
    public_key = Ed25519PublicKey.from_public_bytes(meta.current.public_key)
    live = tn.dir / "node2" / "keystore.db"
    backup = tmp_path / "backup.db"
    with sqlite3.connect(live) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # a consistent copy of the live database
    posted = status(tn)[2]["frost_nonces"]["batches_posted"]
    k = 0
    while status(tn)[2]["frost_nonces"]["batches_posted"] == posted:  # until node 2 refilled
        k += 1
        assert k < 400, "node 2 never posted a new nonce batch"
        message = b"before the restore %d" % k
        public_key.verify(kms.sign(meta.key_id, message), message)
    tn.kill(2)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, live)
    tn.start(2)

    def caught_up() -> bool:
        st = status(tn)
        return (
            all(s is not None for s in st.values())
            and len({s["state_height"] for s in st.values()}) == 1
            and st[2]["frost_nonce_pool"] > 0
            and st[2]["frost_nonces_missing"] == 0  # its lost nonces' commitments replaced
        )

    wait_for(caught_up, 60, "node 2 to catch up and replace its nonce pool")
    tn.kill(1)
    try:
        for j in range(5):
            message = b"after the restore %d" % j
            public_key.verify(kms.sign(meta.key_id, message), message)
    finally:
        tn.start(1)
        wait_for(caught_up, 60, "node 1 to catch up")
