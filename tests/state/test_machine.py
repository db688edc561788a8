"""The replicated state machine, driven by simulated committed blocks on four nodes."""

from __future__ import annotations

import dataclasses

import pytest

from kmsnode.crypto import tdh2
from kmsnode.crypto.errors import InvalidCiphertext
from kmsnode.crypto.shamir import validate_ids
from kmsnode.state import (
    NONCE_WINDOW_MS,
    ComputePartial,
    KeyActivated,
    KeyState,
    Reply,
    StartDkg,
    verify_chain,
)
from kmsnode.state._keys import KeyVersion, VersionState
from kmsnode.state._machine import MAX_KEY_VERSIONS
from kmsnode.wire.requests import (
    CreateKey,
    Decrypt,
    DescribeKey,
    DisableKey,
    EnableKey,
    Encrypt,
    GetPolicy,
    KeyKind,
    ListKeys,
    Permission,
    RotateKey,
    SetPolicy,
)

from .conftest import Client, Network


def replies(effects: dict[int, list[object]]) -> dict[int, Reply]:
    out = {}
    for i, es in effects.items():
        rs = [e for e in es if isinstance(e, Reply)]
        assert len(rs) <= 1
        if rs:
            out[i] = rs[0]
    return out


def create_key(net: Network, kind: KeyKind = KeyKind.ENCRYPT) -> str:
    effects = net.send(net.admin.request(CreateKey(kind, "test"), at_ms=net.time_ms))
    rs = replies(effects)
    assert len(rs) == net.n and all(r.error is None for r in rs.values())
    key_id = rs[1].result["key_id"]  # type: ignore[index]
    assert all(any(isinstance(e, StartDkg) for e in es) for es in effects.values())
    net.run_until(
        lambda: all(s.keys[key_id].state is KeyState.ENABLED for s in net.states.values())
    )
    return key_id  # type: ignore[no-any-return]


def test_dkg_over_the_log_activates_the_key_everywhere(net: Network) -> None:
    key_id = create_key(net)
    records = [s.keys[key_id] for s in net.states.values()]
    pks = {r.current.public_key for r in records}  # type: ignore[union-attr]
    assert len(pks) == 1
    vks = [r.current.verification_keys for r in records]  # type: ignore[union-attr]
    assert all(v == vks[0] for v in vks)
    validate_ids(vks[0], 2**252)
    assert all(any(isinstance(e, KeyActivated) for e in es) for es in net.effects.values())
    # Every node's private result matches the public verification keys the state recorded.
    for i in range(1, net.n + 1):
        share = net.results[(i, key_id, 1)].share
        assert share is not None and share.id == i
    heads = {s.audit.head for s in net.states.values()}
    assert len(heads) == 1


def test_encrypt_then_decrypt_partials_combine(net: Network) -> None:
    key_id = create_key(net)
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    results = {(r.result["version"], r.result["public_key"]) for r in rs.values()}  # type: ignore[index]
    assert len(results) == 1
    version, public_key = results.pop()
    ct = tdh2.encrypt(public_key, b"hello", key_id=key_id, key_version=version, context={"a": "b"})
    req = net.admin.request(Decrypt(ct, {"a": "b"}), at_ms=net.time_ms, reply=True)
    effects = net.send(req)
    work = {i: [e for e in es if isinstance(e, ComputePartial)] for i, es in effects.items()}
    assert all(len(w) == 1 for w in work.values())
    # The executor's job, done here by hand: each node's partial from its DKG share.
    record = net.states[1].keys[key_id]
    partials = [
        tdh2.partial_decrypt(net.results[(i, key_id, 1)].share, public_key, ct, {"a": "b"})  # type: ignore[arg-type]
        for i in (1, 2, 3)
    ]
    plaintext, _ = tdh2.combine(
        public_key,
        ct,
        partials,
        record.current.verification_keys,
        net.t,
        {"a": "b"},  # type: ignore[union-attr]
    )
    assert plaintext == b"hello"


def test_unauthorized_client_is_refused_everywhere_and_audited(net: Network) -> None:
    key_id = create_key(net)
    stranger = Client()
    for op in (Encrypt(key_id), DescribeKey(key_id)):
        rs = replies(net.send(stranger.request(op, at_ms=net.time_ms)))
        assert {r.error for r in rs.values()} == {"access_denied"}
    rs = replies(net.send(stranger.request(CreateKey(KeyKind.ENCRYPT), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"access_denied"}
    outcomes = [(e.client, e.outcome) for e in net.states[2].audit.entries]
    assert outcomes.count((stranger.public, "access_denied")) == 3
    assert len(net.states[3].keys) == 1  # the stranger's create_key created nothing
    rs = replies(net.send(stranger.request(ListKeys(), at_ms=net.time_ms)))
    assert rs[1].result == {"keys": []}


def test_policy_grants_and_revokes(net: Network) -> None:
    key_id = create_key(net)
    user = Client()
    grant = SetPolicy(key_id, user.public, (Permission.ENCRYPT, Permission.DECRYPT))
    rs = replies(net.send(net.admin.request(grant, at_ms=net.time_ms)))
    assert all(r.error is None for r in rs.values())
    rs = replies(net.send(user.request(Encrypt(key_id), at_ms=net.time_ms)))
    assert all(r.error is None for r in rs.values())
    rs = replies(net.send(user.request(ListKeys(), at_ms=net.time_ms)))
    assert rs[1].result == {"keys": [key_id]}
    # A non-admin cannot grant itself more.
    rs = replies(
        net.send(
            user.request(SetPolicy(key_id, user.public, (Permission.ADMIN,)), at_ms=net.time_ms)
        )
    )
    assert {r.error for r in rs.values()} == {"access_denied"}
    net.send(net.admin.request(SetPolicy(key_id, user.public, ()), at_ms=net.time_ms))
    rs = replies(net.send(user.request(Encrypt(key_id), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"access_denied"}


def test_get_policy_shows_the_grants_to_the_keys_admins_only(net: Network) -> None:
    key_id = create_key(net)
    user, helper = Client(), Client()
    admin = net.admin.public.hex()  # the creator holds admin on its key
    grant = SetPolicy(key_id, user.public, (Permission.DECRYPT,))
    net.send(net.admin.request(grant, at_ms=net.time_ms))
    rs = replies(net.send(net.admin.request(GetPolicy(key_id), at_ms=net.time_ms)))
    assert all(r.error is None for r in rs.values())
    assert rs[1].result == {
        "key_id": key_id,
        "creator": admin,
        "grants": {admin: ["admin"], user.public.hex(): ["decrypt"]},
    }
    assert len({repr(r.result) for r in rs.values()}) == 1  # every node answers the same
    # A client with decrypt only may not read the policy; one made a key admin may.
    rs = replies(net.send(user.request(GetPolicy(key_id), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"access_denied"}
    admin_grant = SetPolicy(key_id, helper.public, (Permission.ADMIN,))
    net.send(net.admin.request(admin_grant, at_ms=net.time_ms))
    rs = replies(net.send(helper.request(GetPolicy(key_id), at_ms=net.time_ms)))
    assert rs[1].result["grants"] == {
        admin: ["admin"],
        user.public.hex(): ["decrypt"],
        helper.public.hex(): ["admin"],
    }
    # Revoked grants disappear; the reads are audited like every request.
    net.send(net.admin.request(SetPolicy(key_id, user.public, ()), at_ms=net.time_ms))
    rs = replies(net.send(net.admin.request(GetPolicy(key_id), at_ms=net.time_ms)))
    assert rs[1].result["grants"] == {admin: ["admin"], helper.public.hex(): ["admin"]}
    outcomes = [e.outcome for e in net.states[1].audit.entries if e.op == "get_policy"]
    assert outcomes == ["ok", "access_denied", "ok", "ok"]
    rs = replies(net.send(net.admin.request(GetPolicy("key-absent"), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"key_not_found"}


def test_the_state_knows_admins_and_clients_granted_something_on_some_key(
    net: Network,
) -> None:
    first, second = create_key(net), create_key(net)
    user, stranger = Client(), Client()
    states = net.states.values()
    assert all(s.knows(net.admin.public) and not s.knows(user.public) for s in states)
    for key_id in (first, second):
        grant = SetPolicy(key_id, user.public, (Permission.DECRYPT,))
        net.send(net.admin.request(grant, at_ms=net.time_ms))
    assert all(s.knows(user.public) and not s.knows(stranger.public) for s in states)
    # Revoking one grant leaves the other; revoking both forgets the client.
    net.send(net.admin.request(SetPolicy(first, user.public, ()), at_ms=net.time_ms))
    assert all(s.knows(user.public) for s in states)
    net.send(net.admin.request(SetPolicy(second, user.public, ()), at_ms=net.time_ms))
    assert not any(s.knows(user.public) for s in states)
    # A stranger's refused requests (audited) do not make it known.
    grab = SetPolicy(first, stranger.public, (Permission.ADMIN,))
    net.send(stranger.request(grab, at_ms=net.time_ms))
    assert not any(s.knows(stranger.public) for s in states)


def test_replayed_request_is_not_served_twice(net: Network) -> None:
    key_id = create_key(net)
    req = net.admin.request(DescribeKey(key_id), at_ms=net.time_ms)
    first = replies(net.send(req))
    assert len(first) == net.n
    again = replies(net.send(req))
    assert again == {}
    assert net.states[1].audit.entries[-1].outcome == "replay"


def test_another_request_reusing_a_served_nonce_gets_a_reply_to_retry(net: Network) -> None:
    # An exact replay stays silent (the nodes' caches answer it); a different request under a
    # nonce already served is refused with a reply, so its client can sign it again.
    from kmsnode.wire.requests import ListKeys, Request

    key_id = create_key(net)
    client = net.admin
    nonce = (net.time_ms << 16) | 0x1234

    def signed(op: object) -> Request:
        return Request(client.chain_id, client.public, nonce, op, None).signed(client.key)  # type: ignore[arg-type]

    first = signed(DescribeKey(key_id))
    assert {r.error for r in replies(net.send(first)).values()} == {None}
    other = signed(ListKeys())
    refused = replies(net.send(other))
    assert len(refused) == net.n
    assert {(r.request_id, r.error) for r in refused.values()} == {
        (other.request_id, "nonce_reused")
    }
    assert net.states[1].audit.entries[-1].outcome == "nonce_reused"
    assert replies(net.send(first)) == {}
    assert net.states[1].audit.entries[-1].outcome == "replay"


def test_stale_and_future_nonces_refused(net: Network) -> None:
    key_id = create_key(net)
    old = net.admin.request(DescribeKey(key_id), at_ms=net.time_ms - NONCE_WINDOW_MS - 1000)
    future = net.admin.request(DescribeKey(key_id), at_ms=net.time_ms + NONCE_WINDOW_MS + 1000)
    for req in (old, future):
        rs = replies(net.send(req))
        assert {r.error for r in rs.values()} == {"stale_request"}


def test_bad_signature_and_wrong_chain(net: Network) -> None:
    key_id = create_key(net)
    req = net.admin.request(DescribeKey(key_id), at_ms=net.time_ms)
    forged = type(req)(req.chain_id, req.client, req.nonce + 1, req.op, None, req.signature)
    rs = replies(net.send(forged))
    assert {r.error for r in rs.values()} == {"invalid_signature"}
    other = Client(chain_id="other-chain")
    net.genesis.admins  # noqa: B018 - the admin set is unchanged
    rs = replies(net.send(other.request(ListKeys(), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"wrong_chain"}


def test_garbage_payloads_are_skipped(net: Network) -> None:
    before = net.states[1].audit.head
    effects = net.commit(b"\x00garbage", b"\x92\xa3req\xc4\x01x")
    assert all(es == [] for es in effects.values())
    assert net.states[1].rejected_payloads == 2
    assert net.states[1].audit.head == before


def test_rotation_makes_a_new_version_current_and_old_ciphertexts_still_decrypt(
    net: Network,
) -> None:
    key_id = create_key(net)
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    pk1 = rs[1].result["public_key"]  # type: ignore[index]
    old_ct = tdh2.encrypt(pk1, b"v1", key_id=key_id, key_version=1)
    user = Client()
    grant = SetPolicy(key_id, user.public, (Permission.DECRYPT,))
    net.send(net.admin.request(grant, at_ms=net.time_ms))
    rs = replies(net.send(user.request(RotateKey(key_id), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"access_denied"}  # decrypt is not admin
    effects = net.send(net.admin.request(RotateKey(key_id), at_ms=net.time_ms))
    rs = replies(effects)
    assert {(r.error, r.result["version"]) for r in rs.values()} == {(None, 2)}  # type: ignore[index]
    assert all(any(isinstance(e, StartDkg) for e in es) for es in effects.values())
    # One rotation at a time; meanwhile version 1 still serves.
    rs = replies(net.send(net.admin.request(RotateKey(key_id), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"rotation_in_progress"}
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    assert {r.result["version"] for r in rs.values()} == {1}  # type: ignore[index]
    net.run_until(
        lambda: all(s.keys[key_id].current.version == 2 for s in net.states.values())  # type: ignore[union-attr]
    )
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    versions = {(r.result["version"], r.result["public_key"]) for r in rs.values()}  # type: ignore[index]
    assert len(versions) == 1
    version, pk2 = versions.pop()
    assert version == 2 and pk2 != pk1
    assert all(net.results[(i, key_id, 2)].share is not None for i in range(1, net.n + 1))
    # A version-1 ciphertext still gets every node's partial.
    effects = net.send(user.request(Decrypt(old_ct), at_ms=net.time_ms, reply=True))
    work = [e for es in effects.values() for e in es if isinstance(e, ComputePartial)]
    assert len(work) == net.n and {w.version for w in work} == {1}
    # A key has at most MAX_KEY_VERSIONS versions.
    for st in net.states.values():
        record = st.keys[key_id]
        while len(record.versions) < MAX_KEY_VERSIONS:
            n = record.versions[-1].version + 1
            record.versions.append(KeyVersion(n, 0, VersionState.FAILED, st.height))
    rs = replies(net.send(net.admin.request(RotateKey(key_id), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"too_many_versions"}
    # A disabled key cannot be rotated.
    net.send(net.admin.request(DisableKey(key_id), at_ms=net.time_ms))
    rs = replies(net.send(net.admin.request(RotateKey(key_id), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"key_unavailable"}


def test_a_disabled_key_serves_nothing_until_enabled_again(net: Network) -> None:
    key_id = create_key(net)
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    version, pk = rs[1].result["version"], rs[1].result["public_key"]  # type: ignore[index]
    ct = tdh2.encrypt(pk, b"x", key_id=key_id, key_version=version)
    user = Client()
    net.send(
        net.admin.request(SetPolicy(key_id, user.public, (Permission.DECRYPT,)), at_ms=net.time_ms)
    )

    def outcome(client: Client, op: object, **kw: bool) -> set[str | None]:
        return {
            r.error for r in replies(net.send(client.request(op, at_ms=net.time_ms, **kw))).values()
        }

    assert outcome(user, DisableKey(key_id)) == {"access_denied"}  # decrypt is not admin
    assert outcome(net.admin, DisableKey(key_id)) == {None}
    assert all(s.keys[key_id].state.value == "disabled" for s in net.states.values())
    assert outcome(net.admin, Encrypt(key_id)) == {"key_unavailable"}
    assert outcome(net.admin, Decrypt(ct), reply=True) == {"key_unavailable"}
    assert outcome(user, Decrypt(ct), reply=True) == {"key_unavailable"}
    assert outcome(net.admin, DescribeKey(key_id)) == {None}  # still visible, as disabled
    assert outcome(net.admin, DisableKey(key_id)) == {None}  # idempotent
    assert outcome(net.admin, EnableKey(key_id)) == {None}
    assert outcome(net.admin, Encrypt(key_id)) == {None}
    effects = net.send(net.admin.request(Decrypt(ct), at_ms=net.time_ms, reply=True))
    assert all(any(isinstance(e, ComputePartial) for e in es) for es in effects.values())
    outcomes = [e.outcome for e in net.states[1].audit.entries if e.op == "disable_key"]
    assert outcomes == ["access_denied", "ok", "ok"]


def test_decrypt_refusals(net: Network) -> None:
    key_id = create_key(net)
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    version, pk = rs[1].result["version"], rs[1].result["public_key"]  # type: ignore[index]
    ct = tdh2.encrypt(pk, b"x", key_id=key_id, key_version=version)
    # No reply key: nothing to seal partials to.
    rs = replies(net.send(net.admin.request(Decrypt(ct), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {"missing_reply_key"}
    # A ciphertext for a key that does not exist, and garbage.
    other = tdh2.encrypt(pk, b"x", key_id="key-nope", key_version=1)
    rs = replies(net.send(net.admin.request(Decrypt(other), at_ms=net.time_ms, reply=True)))
    assert {r.error for r in rs.values()} == {"key_not_found"}
    rs = replies(net.send(net.admin.request(Decrypt(b"junk"), at_ms=net.time_ms, reply=True)))
    assert {r.error for r in rs.values()} == {"invalid_ciphertext"}
    # A homomorphic key refuses TDH2 decryption.
    h_key = create_key(net, KeyKind.HOMOMORPHIC)
    hct = tdh2.encrypt(pk, b"x", key_id=h_key, key_version=1)
    rs = replies(net.send(net.admin.request(Decrypt(hct), at_ms=net.time_ms, reply=True)))
    assert {r.error for r in rs.values()} == {"wrong_key_kind"}
    with pytest.raises(InvalidCiphertext):
        tdh2.parse(b"junk")


def test_audit_chain_verifies_and_detects_edits(net: Network) -> None:
    create_key(net)
    entries = net.states[4].audit.entries
    assert verify_chain(entries) == net.states[4].audit.head
    tampered = list(entries)
    tampered[0] = type(entries[0])(**{**entries[0].__dict__, "outcome": "access_denied"})
    with pytest.raises(ValueError, match="audit entry 0"):
        verify_chain(tampered)


def test_blocks_must_come_in_order(net: Network) -> None:
    from .conftest import Block

    with pytest.raises(ValueError, match="expected block 1"):
        net.states[1].apply(Block(5, 0, ()))


def test_silent_node_still_activates_the_key(net: Network) -> None:
    # Node 4 never posts: its DKG messages are dropped before they reach the log.
    original = net._actions

    def drop_node_4(i, s, actions):  # type: ignore[no-untyped-def]
        if i != 4:
            original(i, s, actions)

    net._actions = drop_node_4  # type: ignore[method-assign]
    key_id = create_key(net)
    record = net.states[1].keys[key_id]
    assert record.state is KeyState.ENABLED


def test_audit_memory_is_bounded_and_pages_verify() -> None:
    from kmsnode.state import AuditTrail

    trail = AuditTrail(keep=3)
    for i in range(5):
        trail.append(
            height=i,
            timestamp_ms=i,
            request_id=bytes(32),
            client=bytes(32),
            op="list_keys",
            key_id="",
            outcome="ok",
        )
    assert trail.total == 5 and [e.index for e in trail.entries] == [2, 3, 4]
    drained = trail.drain()
    assert [e.index for e in drained] == [0, 1, 2, 3, 4] and trail.drain() == []
    assert verify_chain(drained) == trail.head
    assert verify_chain(trail.entries) == trail.head  # a page checks from its first link
    with pytest.raises(ValueError):
        verify_chain(trail.entries, prev=bytes(32))  # pinned to the wrong predecessor


def test_audit_store_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kmsnode.audit_store import AuditStore
    from kmsnode.state import AuditTrail, entry_from_json

    trail = AuditTrail()
    for i in range(4):
        trail.append(
            height=i,
            timestamp_ms=i,
            request_id=bytes([i]) * 32,
            client=bytes(32),
            op="describe_key",
            key_id="k",
            outcome="ok",
        )
    store = AuditStore(tmp_path / "audit.db")
    store.append(trail.drain())
    store.append(trail.entries[:2])  # replayed entries are idempotent
    page = [entry_from_json(x) for x in store.page(1, 10)]
    assert [e.index for e in page] == [1, 2, 3]
    assert verify_chain(page) == trail.head
    store.close()


def test_replay_memory_is_pruned_after_the_window(net: Network) -> None:
    key_id = create_key(net)
    for _ in range(5):
        net.send(net.admin.request(DescribeKey(key_id), at_ms=net.time_ms))
    state = net.states[1]
    assert len(state.replay) >= 5
    net.time_ms += NONCE_WINDOW_MS + 1000
    net.tick()
    assert len(state.replay) == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"\x82\xa1a\x01\xc4\x01b\x02",  # a map with a str key and a bytes key: unsortable
        b"\x91" * 600 + b"\xc0",  # arrays nested 600 deep
        b"\x91" * 1100 + b"\xc0",  # deeper than msgpack's own limit
        b"\xc1",  # a byte msgpack never uses
    ],
    ids=["mixed-keys", "deep-600", "deep-1100", "reserved-byte"],
)
def test_a_committed_payload_of_hostile_msgpack_is_rejected_not_fatal(
    net: Network, payload: bytes
) -> None:
    # A Byzantine leader can get any bytes committed; every node must skip them the same way
    # (raising would stop every honest node, and again at each restart's replay).
    before = {i: s.rejected_payloads for i, s in net.states.items()}
    net.commit(payload)
    assert all(s.rejected_payloads == before[i] + 1 for i, s in net.states.items())
    key_id = create_key(net)  # and the log goes on
    assert key_id


def test_an_entry_without_detail_hashes_as_before_the_field_existed(net: Network) -> None:
    # Logs applied under rules v2 must keep their audit hashes: an entry without a detail is
    # the eight fields it always was; a detail is hashed with its entry.
    from kmsnode.wire._codec import pack

    create_key(net)
    e = net.states[1].audit.entries[0]
    assert e.detail == ""
    old_body = pack(
        [e.index, e.height, e.timestamp_ms, e.request_id, e.client, e.op, e.key_id, e.outcome]
    )
    assert e.body() == old_body
    assert "detail" not in e.to_json()
    detailed = dataclasses.replace(e, detail="signers 1,2,3")
    assert detailed.body() != old_body and detailed.to_json()["detail"] == "signers 1,2,3"
