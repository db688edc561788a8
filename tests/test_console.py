"""The operator console: token, loopback-only binding, auth, limits, pages and /metrics."""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from consensus import SyncTimings
from kmsnode.console import Console, _render, load_or_create_token, parse_listen, token_matches
from kmsnode.errors import ConfigError
from kmsnode.state import AuditTrail

TOKEN = "a" * 64
_SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? -?[0-9.e+-]+$'
)


def fake_status(chain: str = "test") -> dict[str, Any]:
    return {
        "node": 2,
        "round": 17,
        "height": 12,
        "state_height": 12,
        "leader": 3,
        "keys": 1,
        "dkg_sessions": 0,
        "audit_head": "00" * 32,
        "audit_total": 3,
        "peers": {"1": True, "3": True, "4": False},
        "executor": {"partials": 5, "replies": 7},
        "frost_nonce_pool": 40,
        "frost_nonces": {"batches_posted": 3, "nonces_used": 56},
        "node_stats": {"submitted": 9},
        "consensus_stats": {"qcs_formed": 11, "commits_announced": 2},
        "memory": {"rss_kb": 1000, "keys": 1},
        "gc": {
            "frozen_objects": 100_000,
            "collections": [900, 80, 2],
            "pause_seconds": [0.05, 0.02, 0.03],
            "longest_pause_seconds": [0.001, 0.002, 0.0155],
        },
        "latency_ms": {"ordering_p50": 60.5, "ordering_p99": 90.0, "samples": 4},
        "consensus_fsync": _fsync_snapshot([0.0003, 0.0007, 0.0015, 0.0015, 3.0]),
    }


def _fsync_snapshot(seconds: list[float]) -> dict[str, object]:
    timings = SyncTimings()
    for x in seconds:
        timings.observe(x)
    return timings.snapshot()


class FakeNode:
    """A ``ConsoleSource`` with a real three-entry audit trail."""

    chain_id = 'chain "x"\n'

    def __init__(self) -> None:
        trail = AuditTrail()
        for i in range(3):
            trail.append(
                height=i + 1,
                timestamp_ms=1000 + i,
                request_id=bytes([i]) * 32,
                client=b"\x01" * 32,
                op="decrypt",
                key_id="key-1",
                outcome="ok",
            )
        self.entries = [e.to_json() for e in trail.entries]
        self.head = trail.head.hex()

    def status(self, latency_window: float = 60.0) -> dict[str, Any]:
        return fake_status()

    def key_summaries(self) -> list[dict[str, Any]]:
        return [
            {
                "key_id": "key-1",
                "kind": "encrypt",
                "state": "enabled",
                "description": "<script>alert(1)</script>",
                "versions": [],
            }
        ]

    def dkg_summaries(self) -> list[dict[str, Any]]:
        return []

    def audit(self, query: Any) -> dict[str, Any]:
        start, limit = query["from"], query["limit"]
        return {
            "total": 3,
            "head": self.head,
            "entries": [dict(e) for e in self.entries[start : start + limit]],
        }

    async def verify_audit(self) -> dict[str, Any]:
        return {"ok": True, "checked": 3, "head": self.head, "error": None}

    def events(self, since_ns: int, limit: int) -> dict[str, Any]:
        self.events_asked = (since_ns, limit)
        events = [[t, "recv", 1, "Vote", 7, None] for t in (100, 200, 300) if t >= since_ns]
        return {"node": 2, "enabled": True, "events": events[-limit:]}


# -- pure parts --------------------------------------------------------------------------------


def test_metrics_are_valid_prometheus_text() -> None:
    text = _render.metrics(fake_status(), 'chain "x"\nwith\\odd')
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples and all(_SAMPLE.match(line) for line in samples), samples
    assert 'kms_node_info{chain_id="chain \\"x\\"\\nwith\\\\odd",node="2"} 1' in samples
    assert "kms_consensus_committed_height 12" in samples
    assert 'kms_peer_connected{peer="4"} 0' in samples
    assert "kms_executor_partials_total 5" in samples
    assert "kms_frost_nonce_pool 40" in samples
    assert "kms_frost_nonces_nonces_used_total 56" in samples
    assert "kms_consensus_commits_announced_total 2" in samples
    assert "process_resident_memory_bytes 1024000" in samples
    assert 'kms_request_latency_seconds{leg="ordering",quantile="0.5"} 0.0605' in samples
    assert "kms_gc_frozen_objects 100000" in samples
    assert 'kms_gc_collections_total{generation="2"} 2' in samples
    assert 'kms_gc_longest_pause_seconds{generation="2"} 0.0155' in samples
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert all(kind == "counter" for name, kind in types.items() if name.endswith("_total"))
    assert len(re.findall(r"^# TYPE kms_peer_connected ", text, re.M)) == 1
    # The vote-fsync histogram, cumulative, with +Inf, _sum and _count as Prometheus wants.
    assert types["kms_consensus_fsync_seconds"] == "histogram"
    assert 'kms_consensus_fsync_seconds_bucket{le="0.0005"} 1' in samples
    assert 'kms_consensus_fsync_seconds_bucket{le="0.001"} 2' in samples
    assert 'kms_consensus_fsync_seconds_bucket{le="0.002"} 4' in samples
    assert 'kms_consensus_fsync_seconds_bucket{le="1.024"} 4' in samples
    assert 'kms_consensus_fsync_seconds_bucket{le="+Inf"} 5' in samples
    assert "kms_consensus_fsync_seconds_count 5" in samples
    assert any(line.startswith("kms_consensus_fsync_seconds_sum 3.00") for line in samples)


def test_fsync_summary_names_bucket_bounds() -> None:
    summary = _render.fsync_summary(_fsync_snapshot([0.0003, 0.0007, 0.0015, 0.0015, 3.0]))
    assert summary["count"] == "5"
    assert summary["p50"] == "<= 2 ms" and summary["p90"] == "> 1024 ms"
    assert _render.fsync_summary({}) == {"count": "0"}
    html = _render.overview(fake_status())
    assert "vote fsync" in html and "&lt;= 2 ms" in html


def test_pages_escape_what_they_show() -> None:
    node = FakeNode()
    html = _render.keys(2, node.key_summaries())
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    html = _render.overview(fake_status())
    assert "2 of 3" in html and "down" in html
    assert "FROST nonces" in html and "commitments in the log" in html and ">40<" in html


def test_the_keys_page_shows_share_epochs_and_refreshes() -> None:
    version = {
        "version": 1,
        "epoch": 2,
        "state": "active",
        "public_key": "ab" * 32,
        "refreshing": True,
        "refreshed_height": 812,
        "refresh_failure": "only 2 valid deals <b>",
    }
    record = {"key_id": "key-1", "kind": "encrypt", "state": "enabled", "description": ""}
    html = _render.keys(1, [{**record, "versions": [version]}])
    assert "v1 e2 active" in html and "refreshing" in html
    assert "refreshed at height 812" in html and "only 2 valid deals &lt;b&gt;" in html


def test_the_keys_page_shows_when_a_deletion_comes_due_and_came() -> None:
    base = {"kind": "encrypt", "description": "", "versions": []}
    html = _render.keys(
        1,
        [
            {**base, "key_id": "k1", "state": "pending-deletion", "deletion_due_ms": 0},
            {**base, "key_id": "k2", "state": "deleted", "deleted_ms": 1_000},
            {**base, "key_id": "k3", "state": "deleted", "deleted_ms": "<b>"},
        ],
    )
    assert "pending-deletion (shares erased at 1970-01-01T00:00:00+00:00)" in html
    assert "deleted (shares erased 1970-01-01T00:00:01+00:00)" in html
    assert "deleted (shares erased ?)" in html and "<b>" not in html


def test_console_listens_on_loopback_only() -> None:
    assert parse_listen("127.0.0.1:9201") == ("127.0.0.1", 9201)
    assert parse_listen("localhost:9201") == ("127.0.0.1", 9201)
    assert parse_listen("[::1]:9201") == ("::1", 9201)
    for bad in ("0.0.0.0:9201", "10.1.2.3:80", "[::]:80", "example.com:80", "127.0.0.1", "1:0"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_token_file_is_created_private_and_checked(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path)
    path = tmp_path / "console.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(tmp_path) == token and len(token) == 64
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_or_create_token(tmp_path)
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="does not hold a token"):
        load_or_create_token(tmp_path)
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1] + "b", TOKEN)
    assert not token_matches(None, TOKEN) and not token_matches("", TOKEN)


# -- the server over a real socket -----------------------------------------------------------


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` and read until the server closes (or 5 s pass); a reset ends the read
    (the server closes on a refused request it has not read to the end)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    out = b""
    with trio.move_on_after(5):
        try:
            await stream.send_all(raw)
            await stream.send_eof()
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    break
                out += data
        except trio.BrokenResourceError:
            pass
    await stream.aclose()
    return out


def get(path: str, port: int, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@contextlib.asynccontextmanager
async def running_console() -> AsyncIterator[Console]:
    """A console over ``FakeNode`` on a free loopback port, stopped on exit."""
    console = Console(FakeNode(), 2, "127.0.0.1", 0, TOKEN)
    async with trio.open_nursery() as nursery:
        await nursery.start(console.run)
        yield console
        nursery.cancel_scope.cancel()


AUTH = f"Authorization: Bearer {TOKEN}"


async def test_console_requires_the_token_and_serves_pages() -> None:
    async with running_console() as console:
        port, auth = console.port, AUTH
        assert status_of(await exchange(port, get("/", port))) == 401
        wrong = await exchange(port, get("/", port, "Authorization: Bearer " + "b" * 64))
        assert status_of(wrong) == 401
        ok = await exchange(port, get("/", port, auth))
        assert status_of(ok) == 200 and b"content-security-policy" in ok.lower()
        metrics = await exchange(port, get("/metrics", port, auth))
        assert b"kms_consensus_round 17" in metrics
        audit = await exchange(port, get("/audit?from=0&limit=2", port, auth))
        assert b"hash chain" in audit
        assert b'class="ok">ok<' in audit
        verified = await exchange(port, get("/api/audit?verify=1", port, auth))
        assert b'"ok": true' in verified
        head = await exchange(port, get("/metrics", port, auth, method="HEAD"))
        assert status_of(head) == 200 and head.endswith(b"\r\n\r\n")
        assert status_of(await exchange(port, get("/nope", port, auth))) == 404
        # Sign in once by ?token=: a redirect that sets the cookie, then the cookie works.
        signin = await exchange(port, get(f"/keys?token={TOKEN}", port))
        assert status_of(signin) == 303 and b"location: /keys" in signin.lower()
        cookie = re.search(rb"set-cookie: (kms_console=[0-9a-f]+)", signin, re.I)
        assert cookie is not None and b"HttpOnly" in signin and b"SameSite=Strict" in signin
        assert TOKEN.encode() not in signin  # the cookie is derived, not the token itself
        keys = await exchange(port, get("/keys", port, "Cookie: " + cookie.group(1).decode()))
        assert status_of(keys) == 200 and b"&lt;script&gt;" in keys
        as_cookie = await exchange(port, get("/keys", port, f"Cookie: kms_console={TOKEN}"))
        assert status_of(as_cookie) == 401
        as_bearer = cookie.group(1).decode().split("=", 1)[1]
        assert (
            status_of(await exchange(port, get("/", port, f"Authorization: Bearer {as_bearer}")))
            == 401
        )


async def test_console_refuses_bad_requests_and_keeps_serving() -> None:
    async with running_console() as console:
        port, auth = console.port, AUTH
        rebinding = get("/", port, auth).replace(f"127.0.0.1:{port}".encode(), b"evil.example")
        assert status_of(await exchange(port, rebinding)) == 403
        assert status_of(await exchange(port, get("/", port, auth, method="POST"))) == 405
        body = get("/", port, auth, "Content-Length: 5").rstrip(b"\r\n") + b"\r\n\r\nhello"
        assert status_of(await exchange(port, body)) == 413
        huge = get("/", port, auth, "X-Pad: " + "p" * 40_000)
        refused = await exchange(port, huge)
        assert refused == b"" or status_of(refused) in (400, 431)
        garbage = await exchange(port, b"\x00\xff not http at all\r\n\r\n")
        assert status_of(garbage) == 400
        assert await exchange(port, b"") == b""
        assert status_of(await exchange(port, get("/", port, auth))) == 200
        assert console.requests_refused >= 5


async def test_a_taken_port_does_not_stop_the_node(autojump_clock: trio.testing.MockClock) -> None:
    # The console starts (so the node goes on) and binds once the port is free.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        console = Console(FakeNode(), 2, "127.0.0.1", port, TOKEN)
        async with trio.open_nursery() as nursery:
            await nursery.start(console.run)
            holder.close()
            with trio.fail_after(30):
                while True:
                    await trio.sleep(1)
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1):
                            break
                    except OSError:
                        continue
            nursery.cancel_scope.cancel()


async def test_events_api_needs_the_token_and_pages_by_time() -> None:
    async with running_console() as console:
        port = console.port
        assert status_of(await exchange(port, get("/api/events", port))) == 401
        got = await exchange(port, get("/api/events?since_ns=150&limit=1", port, AUTH))
        assert status_of(got) == 200
        body = json.loads(got.split(b"\r\n\r\n", 1)[1])
        assert body["events"] == [[300, "recv", 1, "Vote", 7, None]]
        # monotonic_ns values have 14+ digits: the parameter takes an int64, no more
        big = 2**62
        await exchange(port, get(f"/api/events?since_ns={big}", port, AUTH))
        assert console.source.events_asked[0] == big  # type: ignore[attr-defined]
        await exchange(port, get("/api/events?since_ns=" + "9" * 30, port, AUTH))
        assert console.source.events_asked[0] == 0  # type: ignore[attr-defined]


def test_the_node_page_shows_the_state_rules_and_an_upgrade_under_way() -> None:
    html = _render.overview(
        {
            "rules": {"version": 2, "pending": [3, 40, 30], "nodes_lacking": {"3": []}},
            "receiving_keys": {"seq": 4},
        }
    )
    assert "v2; v3 from height 40; v3 ready" in html and ">4<" in html
    waiting = _render.overview({"rules": {"version": 2, "nodes_lacking": {"3": [2, 4]}}})
    assert "v3 waits for nodes [2, 4]" in waiting
