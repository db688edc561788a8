"""Key deletion in the replicated state: scheduled, cancelled, and due in log time."""

from __future__ import annotations

import dataclasses

import pytest

from kmsnode.crypto import tdh2
from kmsnode.genesis import DEFAULT_MIN_DELETION_WAIT_S
from kmsnode.state import ComputePartial, KeyDeleted, KeyState, KMSState, verify_chain
from kmsnode.state._keys import VersionState
from kmsnode.wire.requests import (
    CancelKeyDeletion,
    Decrypt,
    DescribeKey,
    EnableKey,
    Encrypt,
    KeyKind,
    ListKeys,
    Operation,
    Permission,
    RefreshKey,
    RotateKey,
    ScheduleKeyDeletion,
    SetPolicy,
    Sign,
)

from .conftest import Client, Network
from .test_machine import create_key, replies

WEEK_S = DEFAULT_MIN_DELETION_WAIT_S


def outcome(net: Network, client: Client, op: Operation, **kw: bool) -> set[str | None]:
    """The error code every node answered ``op`` with (None: served)."""
    return {
        r.error for r in replies(net.send(client.request(op, at_ms=net.time_ms, **kw))).values()
    }


def states(net: Network, key_id: str) -> set[KeyState]:
    return {s.keys[key_id].state for s in net.states.values()}


def ciphertext(net: Network, key_id: str) -> bytes:
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    version, pk = rs[1].result["version"], rs[1].result["public_key"]  # type: ignore[index]
    return tdh2.encrypt(pk, b"secret", key_id=key_id, key_version=version)


def deleted_effects(net: Network) -> dict[int, list[KeyDeleted]]:
    return {i: [e for e in es if isinstance(e, KeyDeleted)] for i, es in net.effects.items()}


def test_a_scheduled_key_is_unusable_at_once_and_deleted_when_due(net: Network) -> None:
    key_id = create_key(net)
    ct = ciphertext(net, key_id)
    scheduled_at = net.time_ms
    rs = replies(
        net.send(net.admin.request(ScheduleKeyDeletion(key_id, WEEK_S), at_ms=net.time_ms))
    )
    due = {r.result["deletion_due_ms"] for r in rs.values()}  # type: ignore[index]
    # The due time is the committing block's time plus the wait, the same on every node.
    assert due == {scheduled_at + 100 + WEEK_S * 1000}
    assert states(net, key_id) == {KeyState.PENDING_DELETION}
    for op, kw in ((Encrypt(key_id), {}), (Decrypt(ct), {"reply": True})):
        assert outcome(net, net.admin, op, **kw) == {"key_unavailable"}
    # Still described (with its due time) and listed; not enabled without a cancel.
    described = replies(net.send(net.admin.request(DescribeKey(key_id), at_ms=net.time_ms)))
    assert described[1].result["state"] == "pending-deletion"  # type: ignore[index]
    assert described[1].result["deletion_due_ms"] == due.pop()  # type: ignore[index]
    assert outcome(net, net.admin, EnableKey(key_id)) == {"key_unavailable"}
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S)) == {"key_unavailable"}
    # The policy is frozen while pending: no admin can lock the others out of cancelling.
    user = Client()
    grant = SetPolicy(key_id, user.public, (Permission.DECRYPT,))
    assert outcome(net, net.admin, grant) == {"key_unavailable"}
    assert not any(deleted_effects(net).values())

    # Just before the due time nothing happens; the first block at or after it deletes.
    net.time_ms = scheduled_at + 100 + WEEK_S * 1000 - 150
    net.tick()
    assert states(net, key_id) == {KeyState.PENDING_DELETION}
    net.tick()
    assert states(net, key_id) == {KeyState.DELETED}
    assert all(es == [KeyDeleted(key_id)] for es in deleted_effects(net).values())
    record = net.states[1].keys[key_id]
    assert record.deleted_ms == net.time_ms and record.deletion_due_ms is None
    assert record.current is None
    assert {v.state for v in record.versions} == {VersionState.DELETED}
    described = record.to_json()
    assert described["deleted_ms"] == net.time_ms and "deletion_due_ms" not in described
    # The audit trail names the deletion, the same on every node, and still verifies.
    entries = net.states[2].audit.entries
    assert [(e.op, e.key_id, e.outcome) for e in entries[-1:]] == [("key_deleted", key_id, "ok")]
    assert len({s.audit.head for s in net.states.values()}) == 1
    verify_chain(entries)

    # A deleted key serves nothing, takes no change, and is never deleted twice.
    assert outcome(net, net.admin, Decrypt(ct), reply=True) == {"key_unavailable"}
    for op in (
        EnableKey(key_id),
        RotateKey(key_id),
        RefreshKey(key_id),
        ScheduleKeyDeletion(key_id, WEEK_S),
        SetPolicy(key_id, Client().public, (Permission.DECRYPT,)),
    ):
        assert outcome(net, net.admin, op) == {"key_unavailable"}, op
    assert outcome(net, net.admin, CancelKeyDeletion(key_id)) == {"not_pending_deletion"}
    assert outcome(net, net.admin, DescribeKey(key_id)) == {None}  # a public tombstone
    net.time_ms += WEEK_S * 1000
    net.tick()
    assert all(len(es) == 1 for es in deleted_effects(net).values())


def test_a_cancelled_deletion_leaves_the_key_disabled_and_never_fires(net: Network) -> None:
    key_id = create_key(net)
    ct = ciphertext(net, key_id)
    net.send(net.admin.request(ScheduleKeyDeletion(key_id, WEEK_S), at_ms=net.time_ms))
    rs = replies(net.send(net.admin.request(CancelKeyDeletion(key_id), at_ms=net.time_ms)))
    assert {r.result["state"] for r in rs.values()} == {"disabled"}  # type: ignore[index]
    assert states(net, key_id) == {KeyState.DISABLED}
    assert all(not s.deletions for s in net.states.values())  # nothing left to skip later
    assert outcome(net, net.admin, CancelKeyDeletion(key_id)) == {"not_pending_deletion"}
    assert outcome(net, net.admin, Decrypt(ct), reply=True) == {"key_unavailable"}
    assert outcome(net, net.admin, EnableKey(key_id)) == {None}
    effects = net.send(net.admin.request(Decrypt(ct), at_ms=net.time_ms, reply=True))
    assert all(any(isinstance(e, ComputePartial) for e in es) for es in effects.values())
    # The cancelled schedule's time passes: nothing happens.
    net.time_ms += WEEK_S * 1000 + 1000
    net.tick()
    assert states(net, key_id) == {KeyState.ENABLED}
    assert not any(deleted_effects(net).values())
    # Scheduled again (from disabled), it is deleted at the new time, once.
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S + 5)) == {None}
    net.send(net.admin.request(CancelKeyDeletion(key_id), at_ms=net.time_ms))
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S + 5)) == {None}
    net.time_ms += (WEEK_S + 5) * 1000
    net.tick()
    assert states(net, key_id) == {KeyState.DELETED}
    assert all(len(es) == 1 for es in deleted_effects(net).values())


def test_who_may_delete_and_how_soon(net: Network) -> None:
    key_id = create_key(net)
    user = Client()
    net.send(
        net.admin.request(
            SetPolicy(key_id, user.public, (Permission.DECRYPT, Permission.ENCRYPT)),
            at_ms=net.time_ms,
        )
    )
    assert outcome(net, user, ScheduleKeyDeletion(key_id, WEEK_S)) == {"access_denied"}
    assert outcome(net, Client(), ScheduleKeyDeletion(key_id, WEEK_S)) == {"access_denied"}
    assert outcome(net, net.admin, ScheduleKeyDeletion("key-none", WEEK_S)) == {"key_not_found"}
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S - 1)) == {"wait_too_short"}
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, 0)) == {"wait_too_short"}
    assert states(net, key_id) == {KeyState.ENABLED}
    # A key admin granted by policy may; then the user may not cancel either.
    other_admin = Client()
    net.send(
        net.admin.request(
            SetPolicy(key_id, other_admin.public, (Permission.ADMIN,)), at_ms=net.time_ms
        )
    )
    assert outcome(net, other_admin, ScheduleKeyDeletion(key_id, WEEK_S)) == {None}
    assert outcome(net, user, CancelKeyDeletion(key_id)) == {"access_denied"}
    # Every refusal and the grant are in the audit trail.
    ops = [(e.op, e.outcome) for e in net.states[1].audit.entries if "deletion" in e.op]
    assert ops[-1] == ("cancel_key_deletion", "access_denied")
    assert ops.count(("schedule_key_deletion", "wait_too_short")) == 2


def test_a_key_never_scheduled_is_described_as_before_deletion_existed(net: Network) -> None:
    # Nodes of v2 rules (old software among them) must answer describe_key alike.
    key_id = create_key(net)
    described = net.states[1].keys[key_id].to_json()
    assert "deletion_due_ms" not in described and "deleted_ms" not in described


def test_grants_on_a_deleted_key_no_longer_make_a_client_known(net: Network) -> None:
    key_id = create_key(net)
    other = create_key(net)
    only_here, also_elsewhere = Client(), Client()
    for client, keys in ((only_here, (key_id,)), (also_elsewhere, (key_id, other))):
        for k in keys:
            net.send(
                net.admin.request(
                    SetPolicy(k, client.public, (Permission.DECRYPT,)), at_ms=net.time_ms
                )
            )
    net.send(net.admin.request(ScheduleKeyDeletion(key_id, WEEK_S), at_ms=net.time_ms))
    assert all(s.knows(only_here.public) for s in net.states.values())
    net.time_ms += WEEK_S * 1000
    net.tick()
    for s in net.states.values():
        assert not s.knows(only_here.public) and s.knows(also_elsewhere.public)
    # A former grantee may still see the tombstone.
    assert outcome(net, only_here, DescribeKey(key_id)) == {None}


def test_a_genesis_may_allow_a_shorter_wait() -> None:
    net = Network()
    net.genesis = dataclasses.replace(net.genesis, min_deletion_wait_s=0)
    net.states = {i: KMSState(net.genesis) for i in net.identities}
    key_id = create_key(net)
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, 0)) == {None}
    net.tick()  # due at the scheduling block's time: the next block deletes
    assert states(net, key_id) == {KeyState.DELETED}


def test_no_deletion_while_a_version_is_being_made(net: Network) -> None:
    key_id = create_key(net)
    net.send(net.admin.request(RotateKey(key_id), at_ms=net.time_ms))
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S)) == {"rotation_in_progress"}
    net.run_until(
        lambda: all(
            v.state is VersionState.ACTIVE
            for s in net.states.values()
            for v in s.keys[key_id].versions
        )
    )
    net.send(net.admin.request(RefreshKey(key_id), at_ms=net.time_ms))
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S)) == {"refresh_in_progress"}


@pytest.mark.parametrize("kind", [KeyKind.SIGN_BLS, KeyKind.HOMOMORPHIC])
def test_every_kind_of_key_can_be_deleted(net: Network, kind: KeyKind) -> None:
    key_id = create_key(net, kind)
    net.send(net.admin.request(ScheduleKeyDeletion(key_id, WEEK_S), at_ms=net.time_ms))
    if kind is KeyKind.SIGN_BLS:
        assert outcome(net, net.admin, Sign(key_id, b"m"), reply=True) == {"key_unavailable"}
    net.time_ms += WEEK_S * 1000
    net.tick()
    assert states(net, key_id) == {KeyState.DELETED}


def test_a_failed_key_can_be_deleted_and_a_cancel_leaves_it_failed(net: Network) -> None:
    key_id = create_key(net)
    for s in net.states.values():  # as if its DKG had failed
        s.keys[key_id].state = KeyState.FAILED
        s.keys[key_id].versions[0].state = VersionState.FAILED
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S)) == {None}
    rs = replies(net.send(net.admin.request(CancelKeyDeletion(key_id), at_ms=net.time_ms)))
    assert {r.result["state"] for r in rs.values()} == {"failed"}  # type: ignore[index]


def test_rules_v2_networks_drop_deletion_requests_as_before() -> None:
    """A log written under v2 rules replays the same today: the deletion operations, which v2
    could not decode, are dropped without a reply or an audit entry."""
    net = Network()
    net.genesis = dataclasses.replace(net.genesis, rules_version=2)
    net.states = {i: KMSState(net.genesis) for i in net.identities}
    key_id = create_key(net)
    before = {i: (s.rejected_payloads, s.audit.total) for i, s in net.states.items()}
    for op in (ScheduleKeyDeletion(key_id, WEEK_S), CancelKeyDeletion(key_id)):
        assert replies(net.send(net.admin.request(op, at_ms=net.time_ms))) == {}
    for i, s in net.states.items():
        assert (s.rejected_payloads, s.audit.total) == (before[i][0] + 2, before[i][1])
        assert not s.serves("schedule_key_deletion") and s.serves("decrypt")
    assert states(net, key_id) == {KeyState.ENABLED}
    assert outcome(net, net.admin, ListKeys()) == {None}
