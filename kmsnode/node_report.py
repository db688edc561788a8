"""What a node reports about itself to operators (status, metrics, memory, audit pages, the
flight recorder): all of it public, nothing secret. The console and the status protocol read
it through ``NodeReport``."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from . import memtrace, net
from .state import GENESIS_HASH, SUPPORTED_RULES, entry_from_json, verify_chain

if TYPE_CHECKING:
    from .node import KMSNode

FLIGHT_RECORDER_ENV = "KMSNODE_FLIGHT_RECORDER"
"""Set to a number of events to keep the node's recent protocol events (``/api/events``)."""


class RequestTimings:
    """Where the time of recent requests clients submitted here went, in two legs.

    ``ordering``: from arrival to the moment the block holding the request was delivered
    to this node (mempool wait + consensus rounds); ``execution``: from then to the answer
    being ready (applying the block, computing and sealing the node's part). ``summary``
    gives medians and 99th percentiles in ms over the requests answered in a time window.
    """

    def __init__(self, keep: int = 4096) -> None:
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=keep)

    def add(self, arrived: float, delivered: float, answered: float) -> None:
        ordering = max(0.0, delivered - arrived)
        self._samples.append((answered, ordering, max(0.0, answered - max(arrived, delivered))))

    def summary(self, window: float = 60.0) -> dict[str, float]:
        since = time.monotonic() - window
        recent = [s for s in self._samples if s[0] >= since]
        out: dict[str, float] = {"window_s": window, "samples": len(recent)}
        for name, col in (("ordering", 1), ("execution", 2)):
            ordered = sorted(s[col] for s in recent)
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                v = ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
                out[f"{name}_{label}"] = round(1000 * v, 2)
        return out


@dataclass
class NodeStats:
    """Counters for status and metrics."""

    submitted: int = 0
    refused_before_log: int = 0
    strangers_throttled: int = 0
    """Requests from clients the state does not know, held back by the stranger budget."""
    answered_from_cache: int = 0
    """Submits of a request already answered here (a client asking again, or asking late):
    served from the answer cache, neither ordered nor relayed again."""
    relayed_out: int = 0
    relayed_in: int = 0
    relays_refused: int = 0
    peers_vouched: int = 0
    """Client connections vouched for, ever (``client_peers_vouched`` counts those open now)."""
    blocks_applied: int = 0
    replayed_blocks: int = 0


class NodeReport:
    """The node's public views (``console.ConsoleSource``)."""

    def __init__(self, node: KMSNode) -> None:
        self.node = node
        self.chain_id = node.genesis.chain_id

    def events(self, since_ns: int, limit: int) -> dict[str, Any]:
        """The flight recorder's events from ``since_ns`` (the newest ``limit``), or why none."""
        rec = self.node.recorder
        if rec is None:
            return {"node": self.node.me, "enabled": False, "hint": f"set {FLIGHT_RECORDER_ENV}=N"}
        return {
            "node": self.node.me,
            "enabled": True,
            "clock": "monotonic_ns",
            "capacity": rec.capacity,
            "recorded": rec.recorded,
            "events": [[t, name, *fields] for t, name, fields in rec.events(since_ns, limit)],
        }

    def audit(self, query: Any) -> dict[str, Any]:
        """A page of the audit trail (public: who asked what, and the outcome)."""
        start = query.get("from", 0) if isinstance(query, dict) else 0
        limit = query.get("limit", 100) if isinstance(query, dict) else 100
        if not isinstance(start, int) or not isinstance(limit, int):
            start, limit = 0, 100
        limit = max(0, min(limit, 1000))
        return {
            "total": self.node.state.audit.total,
            "head": self.node.state.audit.head.hex(),
            "entries": self.node.audit_store.page(max(0, start), limit),
        }

    def _lacking(self, version: int) -> list[int]:
        """Who an upgrade to ``version`` waits for: for the pending one, the nodes that have
        not confirmed since its activation, less those it may leave behind."""
        state = self.node.state
        pending = state.pending_rules
        if pending is None or pending[0] != version:
            return state.nodes_lacking(version)
        return [
            i for i in state.nodes_lacking(version, pending[2]) if i not in state.upgrades.leaving
        ]

    def status(self, latency_window: float = 60.0) -> dict[str, Any]:
        """What ``kmsnode status`` and the testnet show (nothing secret); request timings
        cover the last ``latency_window`` seconds."""
        cs = self.node.consensus.status()
        mesh = self.node.mesh.statistics()
        return {
            "node": self.node.me,
            "round": int(cs.round),
            "height": int(cs.height),
            "state_height": self.node.state.height,
            "leader": int(cs.leader) + 1,
            "keys": len(self.node.state.keys),
            "dkg_sessions": len(self.node.state.sessions),
            "audit_head": self.node.state.audit.head.hex(),
            "audit_total": self.node.state.audit.total,
            "rules": {
                "version": self.node.state.rules_version,
                "supported": list(SUPPORTED_RULES),
                "pending": self.node.state.pending_rules,
                "leave_behind": list(self.node.state.upgrades.leaving),
                "nodes_lacking": {
                    str(v): self._lacking(v)
                    for v in SUPPORTED_RULES
                    if v > self.node.state.rules_version
                },
            },
            "partitioned_from": sorted(self.node.partition_cut),
            "genesis": self.node.genesis_check.report(),
            "peers": {
                str(k): s.connected for k, s in mesh.links.get(net.CONSENSUS_PROTOCOL, {}).items()
            },
            "executor": self.node.executor.stats.__dict__,
            "receiving_keys": {
                "seq": self.node.state.receiving_keys[self.node.me].seq,
                **self.node.executor.receiving.stats.__dict__,
            },
            "frost_nonce_pool": self.node.state.nonce_pools.available(self.node.me),
            "frost_nonces_missing": self.node.executor.nonce_supply.missing,
            "frost_nonces": {
                **self.node.executor.nonce_supply.stats.__dict__,
                "batches_rejected_by_log": self.node.state.nonce_pools.rejected_batches,
            },
            "node_stats": {
                **self.node.stats.__dict__,
                "client_evictions": self.node.guard.evicted,
                "client_sessions_evicted": self.node.server.sessions_evicted,
            },
            "consensus_stats": {
                **cs.stats.__dict__,
                "signature_checks": self.node.consensus.replica.committee.verifications,
            },
            "consensus_fsync": self.node.store.sync_timings.snapshot(),
            "memory": self.memory(),
            "gc": self.node.gc_pauses.snapshot(),
            "latency_ms": self.node.timings.summary(latency_window),
        }

    def key_summaries(self) -> list[dict[str, Any]]:
        """Every key's public record (id, kind, state, versions and their public keys)."""
        return [record.to_json() for record in self.node.state.keys.values()]

    def dkg_summaries(self) -> list[dict[str, Any]]:
        """Open DKG / refresh sessions as this node's observer of the log sees them."""
        return [entry.observer.progress() for entry in self.node.state.sessions.values()]

    async def verify_audit(self, page: int = 1000) -> dict[str, Any]:
        """Recompute the stored audit trail's hash chain from entry 0 and compare it with the
        head the state machine holds; yields to the event loop between pages."""
        head, total = self.node.state.audit.head, self.node.state.audit.total
        prev, checked = GENESIS_HASH, 0
        try:
            while checked < total:
                rows = self.node.audit_store.page(checked, min(page, total - checked))
                if not rows:
                    raise ValueError(f"the stored trail ends at entry {checked} of {total}")
                prev = verify_chain((entry_from_json(r) for r in rows), prev)
                checked += len(rows)
                await trio.lowlevel.checkpoint()
            if prev != head:
                raise ValueError("the recomputed chain does not end at the state's head")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "checked": checked, "head": head.hex(), "error": str(exc)}
        return {"ok": True, "checked": checked, "head": head.hex(), "error": None}

    def memory(self) -> dict[str, int]:
        """Sizes of what this node keeps in memory (every one bounded), and its resident set."""
        window = self.node.consensus.replica.window
        mempool = self.node.consensus.replica.mempool.stats()
        return {
            "rss_kb": (memtrace.process_memory() or (0, 0))[0],
            "keys": len(self.node.state.keys),
            "replay_window": self.node.state.replay_window_size,
            "sum_uses": len(self.node.state.sum_uses),
            "audit_recent": len(self.node.state.audit.recent),
            "answers_cached": self.node.answers_cached,
            "client_connections": self.node.guard.connections(),
            "client_peers_vouched": self.node.guard.vouched(),
            "client_sessions": self.node.server.sessions,
            "waiters": self.node.waiting,
            "dkg_participants": len(self.node.executor.participants),
            "dedup_window_payloads": len(window),
            "dedup_window_bytes": window.payload_bytes,
            "mempool_payloads": mempool.pending,
            "mempool_bytes": mempool.pending_bytes,
        }
