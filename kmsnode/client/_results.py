"""Typed results of the client API (what ``describe_key`` and ``create_key`` return)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import RequestRejected


@dataclass(frozen=True)
class KeyVersionInfo:
    """One version of a key: the outcome of one DKG."""

    version: int
    epoch: int
    state: str
    """``pending`` (DKG running), ``active`` or ``failed``."""
    public_key: bytes | None
    verification_keys: dict[int, bytes]
    qualified: tuple[int, ...]
    disqualified: dict[int, str]
    failure: str
    refreshing: bool = False
    """A share refresh of this version is running (decryption keeps working meanwhile)."""
    refreshed_height: int | None = None
    """The log height of the last completed refresh (``None``: never refreshed)."""
    refresh_failure: str = ""
    """Why the last refresh failed, if it did (the version kept its shares)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "epoch": self.epoch,
            "state": self.state,
            "public_key": self.public_key.hex() if self.public_key else None,
            "verification_keys": {str(i): k.hex() for i, k in self.verification_keys.items()},
            "qualified": list(self.qualified),
            "disqualified": {str(i): why for i, why in self.disqualified.items()},
            "failure": self.failure,
            "refreshing": self.refreshing,
            "refreshed_height": self.refreshed_height,
            "refresh_failure": self.refresh_failure,
        }


@dataclass(frozen=True)
class KeyMetadata:
    """Everything public about a key, as f + 1 nodes reported it."""

    key_id: str
    kind: str
    description: str
    state: str
    """``creating``, ``enabled``, ``disabled``, ``failed``, ``pending-deletion`` or
    ``deleted``."""
    current_version: int | None
    created_height: int
    created_ms: int
    versions: tuple[KeyVersionInfo, ...]
    deletion_due_ms: int | None = None
    """When a scheduled deletion comes due (Unix ms, log time)."""
    deleted_ms: int | None = None
    """When the key was deleted (its shares erased on every node)."""
    sum_limit: tuple[int, int] | None = None
    """(max_sums, window_s): ``decrypt_sum`` requests each client may have served per
    window (a homomorphic key), or None for no limit."""

    @property
    def current(self) -> KeyVersionInfo | None:
        """The version new encryptions use."""
        for v in self.versions:
            if v.version == self.current_version:
                return v
        return None

    def version(self, number: int) -> KeyVersionInfo | None:
        for v in self.versions:
            if v.version == number:
                return v
        return None

    @classmethod
    def from_result(cls, d: dict[str, Any]) -> KeyMetadata:
        """Parse a ``describe_key`` result.

        Raises:
            RequestRejected: the nodes' (agreed) answer is not a key description.
        """
        try:
            versions = tuple(
                KeyVersionInfo(
                    version=int(v["version"]),
                    epoch=int(v["epoch"]),
                    state=str(v["state"]),
                    public_key=bytes.fromhex(v["public_key"]) if v["public_key"] else None,
                    verification_keys={
                        int(i): bytes.fromhex(k) for i, k in v["verification_keys"].items()
                    },
                    qualified=tuple(int(i) for i in v.get("qualified", ())),
                    disqualified={int(i): str(w) for i, w in v.get("disqualified", {}).items()},
                    failure=str(v.get("failure", "")),
                    refreshing=v.get("refreshing") is True,
                    refreshed_height=(
                        None if v.get("refreshed_height") is None else int(v["refreshed_height"])
                    ),
                    refresh_failure=str(v.get("refresh_failure", "")),
                )
                for v in d["versions"]
            )
            return cls(
                key_id=str(d["key_id"]),
                kind=str(d["kind"]),
                description=str(d["description"]),
                state=str(d["state"]),
                current_version=None if d["current_version"] is None else int(d["current_version"]),
                created_height=int(d["created_height"]),
                created_ms=int(d["created_ms"]),
                versions=versions,
                deletion_due_ms=_optional_int(d.get("deletion_due_ms")),
                deleted_ms=_optional_int(d.get("deleted_ms")),
                sum_limit=_sum_limit(d.get("sum_limit")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RequestRejected("malformed_answer", f"not a key description: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "kind": self.kind,
            "description": self.description,
            "state": self.state,
            "current_version": self.current_version,
            "created_height": self.created_height,
            "created_ms": self.created_ms,
            "deletion_due_ms": self.deletion_due_ms,
            "deleted_ms": self.deleted_ms,
            "sum_limit": (
                None
                if self.sum_limit is None
                else {"max_sums": self.sum_limit[0], "window_s": self.sum_limit[1]}
            ),
            "versions": [v.to_json() for v in self.versions],
        }


@dataclass(frozen=True)
class KeyPolicy:
    """Who may do what on a key, as f + 1 nodes reported it (genesis admins hold every
    permission on every key, listed or not; a key's creator is listed as its admin)."""

    key_id: str
    creator: bytes
    grants: dict[bytes, tuple[str, ...]]

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> KeyPolicy:
        return cls(
            key_id=str(result["key_id"]),
            creator=bytes.fromhex(result["creator"]),
            grants={
                bytes.fromhex(client): tuple(perms) for client, perms in result["grants"].items()
            },
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "creator": self.creator.hex(),
            "grants": {c.hex(): list(p) for c, p in sorted(self.grants.items())},
        }


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _sum_limit(value: Any) -> tuple[int, int] | None:
    """A described key's sum limit (absent: none)."""
    if value is None:
        return None
    return int(value["max_sums"]), int(value["window_s"])
