"""Key administration requests (the key's admins): grants, enable/disable, sum limits,
scheduling and cancelling deletion. ``KMSState`` dispatches them here; each reads and
changes that state (its records, policy checks, audit trail and replies) as its methods did."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire.requests import (
    CancelKeyDeletion,
    DisableKey,
    EnableKey,
    KeyKind,
    Permission,
    Request,
    ScheduleKeyDeletion,
    SetPolicy,
    SetSumLimit,
)
from ._denied import Denied
from ._effects import Effect
from ._keys import KeyState, VersionState

if TYPE_CHECKING:
    from ._machine import KMSState


def set_policy(state: KMSState, request: Request, op: SetPolicy) -> list[Effect]:
    record = state._key(op.key_id)
    state._require(request.client, record, Permission.ADMIN)
    if record.state in (KeyState.PENDING_DELETION, KeyState.DELETED):
        # Frozen while pending, so no one can lock the other admins out of cancelling.
        raise Denied("key_unavailable", f"key {record.key_id} is {record.state.value}")
    state._grant(record, op.client, frozenset(op.permissions))
    state._audit(request, op.key_id, "ok")
    return [
        state._reply(
            request,
            result={
                "key_id": op.key_id,
                "client": op.client.hex(),
                "permissions": [p.value for p in op.permissions],
            },
        )
    ]


def set_sum_limit(state: KMSState, request: Request, op: SetSumLimit) -> list[Effect]:
    record = state._key(op.key_id)
    state._require(request.client, record, Permission.ADMIN)
    if record.kind is not KeyKind.HOMOMORPHIC:
        raise Denied(
            "wrong_key_kind",
            f"{op.key_id} is a {record.kind.value} key: sum limits are for homomorphic keys",
        )
    if record.state in (KeyState.PENDING_DELETION, KeyState.DELETED):
        raise Denied("key_unavailable", f"key {record.key_id} is {record.state.value}")
    # Sums served before a change still count against the new limit; lifted, none counts.
    record.sum_limit = (op.max_sums, op.window_s) if op.max_sums else None
    if record.sum_limit is None:
        state.sum_uses.forget_key(op.key_id)
    detail = f"{op.max_sums} per {op.window_s} s" if op.max_sums else "no limit"
    state._audit(request, op.key_id, "ok", detail)
    return [state._reply(request, result={"key_id": op.key_id} | record.sum_limit_json())]


def set_key_state(state: KMSState, request: Request, op: DisableKey | EnableKey) -> list[Effect]:
    record = state._key(op.key_id)
    state._require(request.client, record, Permission.ADMIN)
    if record.state not in (KeyState.ENABLED, KeyState.DISABLED):
        raise Denied("key_unavailable", f"key {record.key_id} is {record.state.value}")
    record.state = KeyState.DISABLED if isinstance(op, DisableKey) else KeyState.ENABLED
    state._audit(request, op.key_id, "ok")
    return [state._reply(request, result={"key_id": op.key_id, "state": record.state.value})]


def schedule_deletion(state: KMSState, request: Request, op: ScheduleKeyDeletion) -> list[Effect]:
    record = state._key(op.key_id)
    state._require(request.client, record, Permission.ADMIN)
    if record.state not in (KeyState.ENABLED, KeyState.DISABLED, KeyState.FAILED):
        raise Denied("key_unavailable", f"key {record.key_id} is {record.state.value}")
    if any(v.state is VersionState.PENDING for v in record.versions):
        raise Denied("rotation_in_progress", f"a new version of {record.key_id} is pending")
    if any(v.refreshing_to is not None for v in record.versions):
        raise Denied("refresh_in_progress", f"a refresh of {record.key_id} is running")
    shortest = state.genesis.min_deletion_wait_s
    if op.wait_seconds < shortest:
        raise Denied(
            "wait_too_short",
            f"this network deletes keys no sooner than {shortest} s after they are "
            "scheduled for deletion",
        )
    due = state.timestamp_ms + op.wait_seconds * 1000
    state.deletions.schedule(record, due)
    state._audit(request, op.key_id, "ok")
    return [
        state._reply(
            request,
            result={"key_id": op.key_id, "state": record.state.value, "deletion_due_ms": due},
        )
    ]


def cancel_deletion(state: KMSState, request: Request, op: CancelKeyDeletion) -> list[Effect]:
    record = state._key(op.key_id)
    state._require(request.client, record, Permission.ADMIN)
    if record.state is not KeyState.PENDING_DELETION:
        raise Denied("not_pending_deletion", f"key {record.key_id} is {record.state.value}")
    # As AWS KMS: back disabled, whatever it was before, so its use resumes only when an
    # admin says so.
    record.state = KeyState.FAILED if record.current is None else KeyState.DISABLED
    state.deletions.cancel(record)
    state._audit(request, op.key_id, "ok")
    return [state._reply(request, result={"key_id": op.key_id, "state": record.state.value})]
