"""The append-only, hash-chained audit trail of every request and its outcome.

Each entry's hash covers the previous hash and the entry's canonical bytes, so the trail can
be verified by anyone holding it, and two nodes agree on it exactly when their head hashes do.
"""

from __future__ import annotations

import hashlib
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

    def body(self) -> bytes:
        return pack(
            [
                self.index,
                self.height,
                self.timestamp_ms,
                self.request_id,
                self.client,
                self.op,
                self.key_id,
                self.outcome,
            ]
        )

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
        }


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
    )


def chain_hash(prev: bytes, body: bytes) -> bytes:
    return hashlib.sha256(b"kmsnode/audit/v1" + prev + body).digest()


class AuditTrail:
    """The trail in memory; ``head`` is the hash of the last entry."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []
        self.head = GENESIS_HASH

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
    ) -> AuditEntry:
        partial = AuditEntry(
            len(self.entries),
            height,
            timestamp_ms,
            request_id,
            client,
            op,
            key_id,
            outcome,
            self.head,
            b"",
        )
        h = chain_hash(self.head, partial.body())
        entry = AuditEntry(**{**partial.__dict__, "hash": h})
        self.entries.append(entry)
        self.head = h
        return entry


def verify_chain(entries: Iterable[AuditEntry]) -> bytes:
    """Recompute the chain; returns the head hash.

    Raises:
        ValueError: an entry's index, link or hash does not match (names the entry).
    """
    prev = GENESIS_HASH
    for i, e in enumerate(entries):
        if e.index != i or e.prev_hash != prev or chain_hash(prev, e.body()) != e.hash:
            raise ValueError(f"audit entry {i} does not match the chain")
        prev = e.hash
    return prev
