"""The append-only, hash-chained audit trail of every request and its outcome.

Each entry's hash covers the previous hash and the entry's canonical bytes, so the trail can
be verified by anyone holding it, and two nodes agree on it exactly when their head hashes do.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from ..wire._codec import pack

GENESIS_HASH = bytes(32)


@dataclass(frozen=True)
class AuditEntry:
    """One request's outcome as the log decided it (nothing secret: no plaintext, no share)."""

    index: int
    height: int
    timestamp_ms: int
    request_id: bytes
    client: bytes
    op: str
    key_id: str
    outcome: str
    """``ok`` or an error code (``access_denied``, ``replay``, ...)."""
    prev_hash: bytes
    hash: bytes
    detail: str = ""
    """What else the log decided, where it matters to an auditor (a FROST signature's
    signers); empty for most entries, and then not part of the hashed bytes at all, so
    entries from before the field hash as they did."""

    def body(self) -> bytes:
        fields: list[object] = [
            self.index,
            self.height,
            self.timestamp_ms,
            self.request_id,
            self.client,
            self.op,
            self.key_id,
            self.outcome,
        ]
        if self.detail:
            fields.append(self.detail)
        return pack(fields)

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "height": self.height,
            "timestamp_ms": self.timestamp_ms,
            "request_id": self.request_id.hex(),
            "client": self.client.hex(),
            "op": self.op,
            "key_id": self.key_id,
            "outcome": self.outcome,
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        } | ({"detail": self.detail} if self.detail else {})


def entry_from_json(x: dict[str, object]) -> AuditEntry:
    """Rebuild an entry from ``to_json`` (e.g. fetched from a node) to verify the chain."""
    return AuditEntry(
        index=int(x["index"]),  # type: ignore[call-overload]
        height=int(x["height"]),  # type: ignore[call-overload]
        timestamp_ms=int(x["timestamp_ms"]),  # type: ignore[call-overload]
        request_id=bytes.fromhex(str(x["request_id"])),
        client=bytes.fromhex(str(x["client"])),
        op=str(x["op"]),
        key_id=str(x["key_id"]),
        outcome=str(x["outcome"]),
        prev_hash=bytes.fromhex(str(x["prev_hash"])),
        hash=bytes.fromhex(str(x["hash"])),
        detail=str(x.get("detail", "")),
    )


def chain_hash(prev: bytes, body: bytes) -> bytes:
    return hashlib.sha256(b"kmsnode/audit/v1" + prev + body).digest()


class AuditTrail:
    """The trail's head, its length, and its most recent entries in memory.

    The full trail is the node's to store (``drain`` hands over new entries, which the node
    writes to its audit database); memory holds only the last ``keep`` entries, so a node that
    serves requests for months does not grow without bound. The head hash always covers all.
    """

    def __init__(self, keep: int = 4096) -> None:
        self.recent: deque[AuditEntry] = deque(maxlen=keep)
        self.total = 0
        self.head = GENESIS_HASH
        self._pending: list[AuditEntry] = []

    @property
    def entries(self) -> list[AuditEntry]:
        """The most recent entries (all of them while fewer than ``keep``)."""
        return list(self.recent)

    def append(
        self,
        *,
        height: int,
        timestamp_ms: int,
        request_id: bytes,
        client: bytes,
        op: str,
        key_id: str,
        outcome: str,
        detail: str = "",
    ) -> AuditEntry:
        partial = AuditEntry(
            self.total,
            height,
            timestamp_ms,
            request_id,
            client,
            op,
            key_id,
            outcome,
            self.head,
            b"",
            detail,
        )
        h = chain_hash(self.head, partial.body())
        entry = AuditEntry(**{**partial.__dict__, "hash": h})
        self.recent.append(entry)
        self._pending.append(entry)
        self.total += 1
        self.head = h
        return entry

    def drain(self) -> list[AuditEntry]:
        """Entries appended since the last ``drain`` (for the node to store)."""
        out, self._pending = self._pending, []
        return out


def verify_chain(entries: Iterable[AuditEntry], prev: bytes | None = None) -> bytes:
    """Recompute the chain; returns the head hash.

    A page that does not start at entry 0 is checked from its first entry's link (pass
    ``prev``, the hash of the entry before it, to pin that link too).

    Raises:
        ValueError: an entry's index, link or hash does not match (names the entry).
    """
    expected_index: int | None = None
    for e in entries:
        if expected_index is None:
            expected_index = e.index
            if prev is None:
                prev = GENESIS_HASH if e.index == 0 else e.prev_hash
        if e.index != expected_index or e.prev_hash != prev or chain_hash(prev, e.body()) != e.hash:
            raise ValueError(f"audit entry {e.index} does not match the chain")
        prev = e.hash
        expected_index += 1
    return prev if prev is not None else GENESIS_HASH
