"""The console's pages and its Prometheus exposition, rendered from plain data (no I/O).

Every value shown comes from the node's public status (nothing secret exists there) and is
HTML-escaped; pages carry no script, so the response's CSP can forbid all of it.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from consensus import SYNC_BUCKETS, SyncTimings

_NAV = (("/", "node"), ("/keys", "keys"), ("/dkg", "DKG sessions"), ("/audit", "audit trail"))
_STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}code{font-size:12px}.bad{color:#b00;font-weight:bold}"
    ".ok{color:#070;font-weight:bold}nav a{margin-right:1em}"
)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def page(title: str, node: object, body: str) -> str:
    """A whole HTML document around ``body`` (already escaped)."""
    nav = "".join(f'<a href="{href}">{_e(label)}</a>' for href, label in _NAV)
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{_e(title)} - kmsnode {_e(node)}</title><style>{_STYLE}</style></head>"
        f"<body><nav>{nav}<a href=/metrics>metrics</a></nav>"
        f"<h1>{_e(title)} <small>node {_e(node)}</small></h1>{body}</body></html>"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (for cells built here)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pairs(data: Mapping[str, Any]) -> str:
    return table(("name", "value"), sorted(data.items()))


def _rules(rules: Any) -> str:
    """The rules the log runs, an activation under way, and who an upgrade waits for."""
    if not isinstance(rules, Mapping):
        return ""
    out = f"v{rules.get('version')}"
    pending = rules.get("pending")
    if isinstance(pending, (list, tuple)) and len(pending) >= 2:
        out += f"; v{pending[0]} from height {pending[1]}"
        if rules.get("leave_behind"):
            out += f" (may leave nodes {rules['leave_behind']} behind)"
    for version, lacking in sorted((rules.get("nodes_lacking") or {}).items()):
        out += f"; v{version} " + (f"waits for nodes {lacking}" if lacking else "ready")
    return out


def _genesis(report: Any) -> str:
    """This node's genesis digest (short) and the peers found running another genesis."""
    if not isinstance(report, Mapping):
        return ""
    out = str(report.get("digest", ""))[:16]
    if report.get("mismatched"):
        out += f"; nodes {report['mismatched']} run another genesis (cut off)"
    return out


def overview(status: Mapping[str, Any]) -> str:
    """The node page: health, consensus position, peers, requests, memory, timings."""
    peers = status.get("peers", {})
    up = sum(1 for v in peers.values() if v)
    consensus = {
        "round": status.get("round"),
        "committed height": status.get("height"),
        "applied height": status.get("state_height"),
        "leader": status.get("leader"),
        "peers connected": f"{up} of {len(peers)}",
        "keys": status.get("keys"),
        "open DKG sessions": status.get("dkg_sessions"),
        "audit entries": status.get("audit_total", ""),
        "audit head": status.get("audit_head"),
        "state rules": _rules(status.get("rules")),
        "genesis": _genesis(status.get("genesis")),
        "receiving key": (status.get("receiving_keys") or {}).get("seq", ""),
    }
    peer_rows = [
        (p, '<span class="ok">connected</span>' if c else '<span class="bad">down</span>')
        for p, c in sorted(peers.items(), key=lambda kv: int(kv[0]))
    ]
    body = (
        "<h2>consensus and state</h2>"
        + _pairs(consensus)
        + "<h2>consensus counters</h2>"
        + _pairs(status.get("consensus_stats", {}))
        + "<h2>vote fsync (safety data on disk before a vote or timeout leaves)</h2>"
        + _pairs(fsync_summary(status.get("consensus_fsync", {})))
        + "<h2>peers</h2>"
        + table(("node", "consensus link"), peer_rows, raw=True)
        + "<h2>requests</h2>"
        + _pairs({**status.get("node_stats", {}), **status.get("executor", {})})
        + "<h2>FROST nonces (this node's pool in the log, and its keystore's supply)</h2>"
        + _pairs(
            {
                "commitments in the log": status.get("frost_nonce_pool", "?"),
                "of which without a nonce here": status.get("frost_nonces_missing", "?"),
            }
            | status.get("frost_nonces", {})
        )
        + "<h2>request timings (ms)</h2>"
        + _pairs(status.get("latency_ms", {}))
        + "<h2>memory</h2>"
        + _pairs(status.get("memory", {}))
        + "<h2>garbage collector</h2>"
        + _pairs(status.get("gc", {}))
    )
    return page("node", status.get("node", "?"), body)


def _utc(ms: object) -> str:
    """A log time (Unix ms) as UTC ISO 8601 to the second."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "?"
    when = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return when.isoformat(timespec="seconds")


def keys(node: object, records: Sequence[Mapping[str, Any]]) -> str:
    """Keys with their versions: state, share epoch, public key, who dealt, refreshes."""
    rows = []
    for k in records:
        versions = "<br>".join(
            f"v{_e(v['version'])} e{_e(v['epoch'])} {_e(v['state'])}"
            + (f" <code>{_e(v['public_key'][:16])}…</code>" if v.get("public_key") else "")
            + (f" qualified {_e(v['qualified'])}" if v.get("qualified") else "")
            + (f' <span class="bad">{_e(v["failure"])}</span>' if v.get("failure") else "")
            + (" refreshing" if v.get("refreshing") else "")
            + (
                f" refreshed at height {_e(v['refreshed_height'])}"
                if v.get("refreshed_height") is not None
                else ""
            )
            + (
                f' <span class="bad">last refresh failed: {_e(v["refresh_failure"])}</span>'
                if v.get("refresh_failure")
                else ""
            )
            for v in k.get("versions", [])
        )
        state = _e(k["state"])
        if k.get("deletion_due_ms") is not None:
            state += f" (shares erased at {_utc(k['deletion_due_ms'])})"
        elif k.get("deleted_ms") is not None:
            state += f" (shares erased {_utc(k['deleted_ms'])})"
        rows.append((_e(k["key_id"]), _e(k["kind"]), state, _e(k["description"]), versions))
    body = f"<p>{len(records)} keys</p>" + table(
        ("key", "kind", "state", "description", "versions"), rows, raw=True
    )
    return page("keys", node, body)


def dkg_sessions(node: object, sessions: Sequence[Mapping[str, Any]]) -> str:
    """Open DKG / refresh sessions as this node's observer of the log sees them."""
    headers = ("key", "version", "epoch", "kind", "status", "deals", "disqualified", "deadlines")
    rows = [
        (
            s["key_id"],
            s["version"],
            s["epoch"],
            s["kind"],
            s["status"],
            s["deals"],
            ", ".join(f"{i}: {why}" for i, why in sorted(s["disqualified"].items())) or "-",
            "deal {deal}, complaints {complaint}, justifications {justification}".format(
                **s["deadlines"]
            ),
        )
        for s in sessions
    ]
    body = f"<p>{len(sessions)} open sessions</p>" + table(headers, rows)
    return page("DKG sessions", node, body)


def audit(
    node: object,
    trail: Mapping[str, Any],
    start: int,
    limit: int,
    verification: Mapping[str, Any] | None = None,
) -> str:
    """A page of the audit trail, its page-level chain check, and a full check if run."""
    entries = trail["entries"]
    headers = ("#", "height", "time (ms)", "client", "op", "key", "outcome", "hash")
    rows = [
        (
            e["index"],
            e["height"],
            e["timestamp_ms"],
            e["client"][:16],
            e["op"],
            e["key_id"],
            e["outcome"],
            e["hash"][:16],
        )
        for e in entries
    ]
    check = trail.get("page_check", "")
    parts = [
        f"<p>{_e(trail['total'])} entries, head <code>{_e(trail['head'])}</code></p>",
        f"<p>this page's hash chain: {_status_span(check)}</p>",
    ]
    if verification is not None:
        parts.append(
            "<p>whole trail: "
            + _status_span("ok" if verification["ok"] else verification["error"])
            + f" ({_e(verification['checked'])} entries recomputed up to the head)</p>"
        )
    else:
        parts.append('<p><a href="/audit/verify">verify the whole trail</a></p>')
    prev_start = max(0, start - limit)
    nav = f'<a href="/audit?from={prev_start}&limit={limit}">previous</a> ' + (
        f'<a href="/audit?from={start + limit}&limit={limit}">next</a>'
    )
    parts += [table(headers, rows), f"<p>{nav}</p>"]
    return page("audit trail", node, "".join(parts))


def _status_span(text: str) -> str:
    css = "ok" if text == "ok" else "bad"
    return f'<span class="{css}">{_e(text or "empty")}</span>'


def message(node: object, title: str, text: str) -> str:
    """A short page with one message (errors, the sign-in hint)."""
    return page(title, node, f"<p>{_e(text)}</p>")


# -- Prometheus text exposition (format 0.0.4) ---------------------------------------------

_NAME_OK = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(*parts: str) -> str:
    return "_".join(_NAME_OK.sub("_", p) for p in parts if p)


def _label_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: object) -> str | None:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return repr(value) if isinstance(value, float) else str(value)
    return None


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def add_histogram(
        self,
        name: str,
        help_text: str,
        buckets: Sequence[Sequence[float]],
        count: object,
        total: object,
    ) -> None:
        """A Prometheus histogram from cumulative ``[upper bound, count]`` pairs (finite
        bounds) and the overall count and sum."""
        rows = [(float(b), _number(c)) for b, c in buckets]
        count_text, total_text = _number(count), _number(total)
        if count_text is None or total_text is None or any(c is None for _, c in rows):
            return
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        for bound, cumulative in rows:
            self.lines.append(f'{name}_bucket{{le="{bound!r}"}} {cumulative}')
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {count_text}')
        self.lines.append(f"{name}_sum {total_text}")
        self.lines.append(f"{name}_count {count_text}")

    def add(
        self,
        name: str,
        kind: str,
        help_text: str,
        value: object,
        labels: Mapping[str, object] | None = None,
    ) -> None:
        number = _number(value)
        if number is None:
            return
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f"# HELP {name} {help_text}")
            self.lines.append(f"# TYPE {name} {kind}")
        label_text = ""
        if labels:
            inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
            label_text = "{" + inner + "}"
        self.lines.append(f"{name}{label_text} {number}")


def fsync_summary(snapshot: Mapping[str, Any]) -> dict[str, str]:
    """Count, mean and bucket bounds of the quantiles of an fsync histogram snapshot."""
    buckets, count = snapshot.get("buckets") or [], snapshot.get("count") or 0
    if not count:
        return {"count": "0"}
    out = {"count": str(count), "mean": f"{1000 * snapshot.get('sum', 0.0) / count:.2f} ms"}
    for q in (0.5, 0.9, 0.99):
        bound = SyncTimings.quantile(buckets, count, q)
        if math.isfinite(bound):
            out[f"p{round(q * 100)}"] = f"<= {1000 * bound:g} ms"
        else:
            out[f"p{round(q * 100)}"] = f"> {1000 * SYNC_BUCKETS[-1]:g} ms"
    return out


def _gc_metrics(out: _Exposition, gc: Mapping[str, Any]) -> None:
    """The garbage collector's counts and pauses per generation (see ``gc_policy``)."""
    out.add(
        "kms_gc_frozen_objects",
        "gauge",
        "Objects frozen out of the collector at startup.",
        gc.get("frozen_objects"),
    )
    series = (
        ("kms_gc_collections_total", "counter", "Collections per generation.", "collections"),
        ("kms_gc_pause_seconds_total", "counter", "Time collections paused.", "pause_seconds"),
        ("kms_gc_longest_pause_seconds", "gauge", "Longest pause.", "longest_pause_seconds"),
    )
    for name, kind, help_text, field in series:
        values = gc.get(field)
        if not isinstance(values, list):
            continue
        for generation, value in enumerate(values):
            out.add(name, kind, help_text, value, {"generation": generation})


def metrics(status: Mapping[str, Any], chain_id: str) -> str:
    """The node's status as Prometheus metrics (counters end in ``_total``)."""
    out = _Exposition()
    node = status.get("node", 0)
    out.add("kms_node_info", "gauge", "Node identity.", 1, {"node": node, "chain_id": chain_id})
    gauges = (
        ("kms_consensus_round", "Current consensus round.", "round"),
        ("kms_consensus_committed_height", "Height of the last committed block.", "height"),
        ("kms_state_applied_height", "Height the KMS state machine applied.", "state_height"),
        ("kms_consensus_leader", "Node id leading the current round.", "leader"),
        ("kms_keys", "Keys in the replicated state.", "keys"),
        ("kms_dkg_sessions_open", "DKG or refresh sessions in progress.", "dkg_sessions"),
        ("kms_audit_entries", "Entries in the audit trail.", "audit_total"),
        (
            "kms_frost_nonce_pool",
            "Unused FROST nonce commitments this node holds in the log.",
            "frost_nonce_pool",
        ),
        (
            "kms_frost_nonces_missing",
            "This node's commitments in the log whose nonces its keystore lacks (replacing).",
            "frost_nonces_missing",
        ),
    )
    for name, help_text, field in gauges:
        out.add(name, "gauge", help_text, status.get(field))
    for peer, connected in sorted(status.get("peers", {}).items()):
        out.add(
            "kms_peer_connected",
            "gauge",
            "Consensus link to a peer is up.",
            connected,
            {"peer": peer},
        )
    for group, prefix in (
        ("executor", "kms_executor"),
        ("frost_nonces", "kms_frost_nonces"),
        ("node_stats", "kms_node"),
        ("consensus_stats", "kms_consensus"),
    ):
        for key, value in sorted(status.get(group, {}).items()):
            out.add(_metric_name(prefix, key, "total"), "counter", f"{group} counter {key}.", value)
    memory = status.get("memory", {})
    rss_kb = memory.get("rss_kb")
    if isinstance(rss_kb, int):
        out.add("process_resident_memory_bytes", "gauge", "Resident set size.", rss_kb * 1024)
    for key, value in sorted(memory.items()):
        if key != "rss_kb":
            out.add(_metric_name("kms_memory", key), "gauge", f"Size of {key}.", value)
    _gc_metrics(out, status.get("gc", {}))
    fsync = status.get("consensus_fsync", {})
    if fsync.get("buckets"):
        out.add_histogram(
            "kms_consensus_fsync_seconds",
            "Time a vote or timeout waited for its safety data to reach the disk.",
            fsync["buckets"],
            fsync.get("count"),
            fsync.get("sum"),
        )
    latency = status.get("latency_ms", {})
    for leg in ("ordering", "execution"):
        for q, label in (("0.5", "p50"), ("0.99", "p99")):
            ms = latency.get(f"{leg}_{label}")
            if isinstance(ms, (int, float)):
                out.add(
                    "kms_request_latency_seconds",
                    "gauge",
                    "Request latency by leg over the recent window.",
                    ms / 1000.0,
                    {"leg": leg, "quantile": q},
                )
    return "\n".join(out.lines) + "\n"
