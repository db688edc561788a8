"""Key metadata as the replicated state holds it: kind, state, versions, policy."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..crypto.groups import BLS12_381_G1, ED25519, RISTRETTO255, Group
from ..wire.requests import KeyKind, Permission


class KeyState(enum.Enum):
    """The lifecycle of a key."""

    CREATING = "creating"
    """Its first DKG is running."""
    ENABLED = "enabled"
    DISABLED = "disabled"
    """An admin stopped its use (``disable_key``) until ``enable_key``."""
    FAILED = "failed"
    """Its first DKG failed; the key cannot be used (create another)."""
    PENDING_DELETION = "pending-deletion"
    """Scheduled for deletion: unusable, until ``cancel_key_deletion`` or the due time."""
    DELETED = "deleted"
    """Deleted: every node erased its shares; only this public record remains (its id is
    never reused, and the audit trail keeps naming it)."""


class VersionState(enum.Enum):
    """The lifecycle of one key version."""

    PENDING = "pending"
    ACTIVE = "active"
    FAILED = "failed"
    DELETED = "deleted"
    """Its key was deleted: no node holds a share of it any more."""


@dataclass(slots=True)  # one per key version held in memory: no per-instance __dict__
class KeyVersion:
    """One version of a key: the output of one DKG."""

    version: int
    epoch: int
    state: VersionState
    created_height: int
    public_key: bytes | None = None
    verification_keys: dict[int, bytes] = field(default_factory=dict)
    qualified: tuple[int, ...] = ()
    """Dealers whose dealings make up this version's current shares (QUAL of its DKG, or of
    its last refresh)."""
    disqualified: dict[int, str] = field(default_factory=dict)
    """Dealers left out of that session, with the reason every node agreed on."""
    failure: str = ""
    refreshing_to: int | None = None
    """The epoch a running refresh will move this version to (``None``: no refresh running)."""
    refreshed_height: int | None = None
    """The log height at which the last refresh completed (``None``: never refreshed)."""
    refresh_failure: str = ""
    """Why the last refresh failed ("" if it did not); the version kept its epoch and shares."""
    last_epoch: int = 0
    """The highest epoch a session of this version was opened for. A failed refresh uses its
    epoch up: numbers are never reused, so neither are sessions' seeds nor their ids."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "epoch": self.epoch,
            "state": self.state.value,
            "public_key": self.public_key.hex() if self.public_key else None,
            "verification_keys": {str(i): vk.hex() for i, vk in self.verification_keys.items()},
            "qualified": list(self.qualified),
            "disqualified": {str(i): why for i, why in self.disqualified.items()},
            "failure": self.failure,
            "refreshing": self.refreshing_to is not None,
            "refreshed_height": self.refreshed_height,
            "refresh_failure": self.refresh_failure,
        }


@dataclass(slots=True)
class KeyRecord:
    """Everything public about a key."""

    key_id: str
    kind: KeyKind
    description: str
    creator: bytes
    created_height: int
    created_ms: int
    state: KeyState
    versions: list[KeyVersion]
    policy: dict[bytes, frozenset[Permission]] = field(default_factory=dict)
    deletion_due_ms: int | None = None
    """When a scheduled deletion comes due, in log time (``None``: none scheduled)."""
    deleted_ms: int | None = None
    """The log time the key was deleted at (``None``: not deleted)."""
    sum_limit: tuple[int, int] | None = None
    """(max_sums, window_s): served ``decrypt_sum`` requests each client may have per window
    (a homomorphic key; rules v4). ``None``: no limit."""

    @property
    def current(self) -> KeyVersion | None:
        """The newest active version (what new encryptions use)."""
        active = [v for v in self.versions if v.state is VersionState.ACTIVE]
        return active[-1] if active else None

    def version(self, number: int) -> KeyVersion | None:
        for v in self.versions:
            if v.version == number:
                return v
        return None

    def policy_json(self) -> dict[str, Any]:
        """The key's grants (its creator's admin among them); genesis admins hold every
        permission on every key whether listed or not."""
        return {
            "key_id": self.key_id,
            "creator": self.creator.hex(),
            "grants": {
                client.hex(): sorted(p.value for p in perms)
                for client, perms in sorted(self.policy.items())
            },
        }

    def to_json(self) -> dict[str, Any]:
        current = self.current
        return (
            {
                "key_id": self.key_id,
                "kind": self.kind.value,
                "description": self.description,
                "state": self.state.value,
                "created_height": self.created_height,
                "created_ms": self.created_ms,
                "current_version": current.version if current else None,
                "versions": [v.to_json() for v in self.versions],
            }
            | self._deletion_json()
            | self.sum_limit_json()
        )

    def sum_limit_json(self) -> dict[str, Any]:
        # Only when set (v4): keys without one are described as before limits existed.
        if self.sum_limit is None:
            return {}
        return {"sum_limit": {"max_sums": self.sum_limit[0], "window_s": self.sum_limit[1]}}

    def _deletion_json(self) -> dict[str, Any]:
        # Only when there is something to say: a key that was never scheduled for deletion is
        # described as before deletion existed (nodes of v2 rules must answer alike).
        out: dict[str, Any] = {}
        if self.deletion_due_ms is not None:
            out["deletion_due_ms"] = self.deletion_due_ms
        if self.deleted_ms is not None:
            out["deleted_ms"] = self.deleted_ms
        return out


GROUPS: dict[KeyKind, Group[Any]] = {
    KeyKind.ENCRYPT: RISTRETTO255,
    KeyKind.HOMOMORPHIC: RISTRETTO255,
    KeyKind.SIGN_ED25519: ED25519,
    KeyKind.SIGN_BLS: BLS12_381_G1,
}
"""The group each kind of key lives in (its DKG runs there)."""
