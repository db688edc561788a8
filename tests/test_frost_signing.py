"""FROST Ed25519 signing through the log: nonce pools, signer choice, shares, and the client's
aggregation, over the in-process log (``LocalNetwork``). Signatures are checked with OpenSSL
(``cryptography``), an independent RFC 8032 implementation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kmsnode.client._core import Collector, KeyMaterial
from kmsnode.client.errors import RequestRejected, SignersFailed
from kmsnode.crypto import frost
from kmsnode.crypto.sealing import SealingPublicKey, open_sealed, seal
from kmsnode.errors import KeystoreRecordMissing
from kmsnode.executor import Executor
from kmsnode.frost_nonces import BATCH, LOW_WATER, REPOST_AFTER, nonce_record
from kmsnode.identity import NodeIdentity
from kmsnode.keystore import Keystore
from kmsnode.state import (
    MAX_POOL,
    ComputeFrostShare,
    KMSState,
    NonceRef,
    entry_from_json,
    verify_chain,
)
from kmsnode.state._machine import FROST_SIGNS_PER_BLOCK
from kmsnode.testing import PASSPHRASE, LocalNetwork
from kmsnode.wire.payload import NoncePayload, client_payload, decode_payload
from kmsnode.wire.requests import KeyKind, RefreshKey, Sign
from kmsnode.wire.responses import Response, sealed_aad

SUITE = frost.FROST_ED25519_SHA512


def openssl_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def sign(
    net: LocalNetwork, key_id: str, message: bytes, km: KeyMaterial, avoid: tuple[int, ...] = ()
) -> Collector:
    return net.run(net.client.prepare(Sign(key_id, message, avoid), now_ms=net.time_ms), km)


def signers_of(net: LocalNetwork, request_id: bytes) -> list[int]:
    """The signers the log chose, from a non-Byzantine node's answer."""
    answers = net.outbox_history[request_id]
    for node in sorted(answers):
        if node in net.byzantine:
            continue
        result = Response.decode(answers[node]).result
        assert isinstance(result, dict)
        return sorted(int.from_bytes(c[:2], "big") for c in result["commitments"])
    raise AssertionError("no honest answer")


def test_a_frost_signature_verifies_with_openssl(net: LocalNetwork) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    assert km.kind == "sign-ed25519"
    c = sign(net, key_id, b"release 1.4.2", km)
    assert c.done and not c.misbehaving
    signature = c.result
    assert isinstance(signature, bytes) and len(signature) == 64
    assert openssl_verifies(km.public_key, b"release 1.4.2", signature)
    assert not openssl_verifies(km.public_key, b"release 1.4.3", signature)
    # Exactly t signers took part, and each spent one commitment of its pool.
    chosen = signers_of(net, c.prepared.request_id)
    assert len(chosen) == net.t
    # FROST is randomized: a second signature of the same message differs, and verifies.
    again = sign(net, key_id, b"release 1.4.2", km)
    assert again.result != signature
    assert openssl_verifies(km.public_key, b"release 1.4.2", again.result)
    # The audit trail names the signers the log chose for each signature (hashed with it).
    last = net.states[2].audit.entries[-1]
    assert (last.op, last.outcome) == ("sign", "ok")
    assert last.detail == "signers " + ",".join(
        map(str, signers_of(net, again.prepared.request_id))
    )
    first = [e for e in net.states[3].audit.entries if e.request_id == c.prepared.request_id]
    assert [e.detail for e in first] == ["signers " + ",".join(map(str, chosen))]
    assert entry_from_json(last.to_json()) == last
    verify_chain(net.states[2].audit.entries)
    tampered = dataclasses.replace(last, detail=last.detail + ",5")  # another signer named
    with pytest.raises(ValueError):
        verify_chain([*net.states[2].audit.entries[:-1], tampered])


def test_every_node_spends_the_same_commitments_and_pools_refill(net: LocalNetwork) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    pools = {i: net.states[1].nonce_pools.available(i) for i in net.states}
    assert all(p >= LOW_WATER for p in pools.values())
    used: dict[int, int] = dict.fromkeys(net.states, 0)
    for k in range(3 * BATCH):
        c = sign(net, key_id, b"m%d" % k, km)
        assert c.done, k
        for i in signers_of(net, c.prepared.request_id):
            used[i] += 1
    # Every node holds the same pools (deterministic), none ran dry, and the work was spread.
    views = [
        {i: [e for e in s.nonce_pools.pool(i).entries] for i in net.states}
        for s in net.states.values()
    ]
    assert all(v == views[0] for v in views)
    assert all(net.states[1].nonce_pools.available(i) >= LOW_WATER for i in net.states)
    assert all(n > 0 for n in used.values()), used
    # Nonces in each keystore: exactly the node's unspent pool (spent ones were erased).
    for i, ex in net.executors.items():
        held = {n for n in ex.keystore.names("frost-nonce")}
        assert held == {
            nonce_record(ref, c) for ref, c in net.states[i].nonce_pools.pool(i).entries
        }


def test_the_log_chooses_signers_deterministically_and_honours_avoid(net: LocalNetwork) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    c = sign(net, key_id, b"m", km, avoid=(1,))
    assert 1 not in signers_of(net, c.prepared.request_id)
    # Too many to avoid: the log still picks t signers, the avoided ones last.
    c = sign(net, key_id, b"m", km, avoid=(1, 2))
    chosen = signers_of(net, c.prepared.request_id)
    assert {3, 4} <= set(chosen) and len(chosen) == net.t
    assert c.done and openssl_verifies(km.public_key, b"m", c.result)


def test_a_bad_share_names_its_signer_and_a_retry_without_it_succeeds(net: LocalNetwork) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    evil = 2

    def bad_share(response: Response) -> bytes:
        if response.sealed is None:
            return response.encode()
        prepared_key = reply_keys[response.request_id]
        wrong = frost.SignatureShare(evil, 12345).encode(SUITE)
        sealed = seal(prepared_key, wrong, sealed_aad(response.request_id, evil))
        return net.resigned(evil, response, sealed=sealed)

    reply_keys: dict[bytes, SealingPublicKey] = {}
    net.byzantine[evil] = bad_share
    for k in range(12):  # until the log picks the Byzantine node
        prepared = net.client.prepare(Sign(key_id, b"m%d" % k), now_ms=net.time_ms)
        assert prepared.request.reply_key is not None
        reply_keys[prepared.request_id] = SealingPublicKey.decode(prepared.request.reply_key)
        try:
            c = net.run(prepared, km)
        except SignersFailed as failed:
            assert failed.nodes == (evil,) and failed.misbehaving == (evil,)
            break
        assert evil not in signers_of(net, prepared.request_id)
        assert openssl_verifies(km.public_key, b"m%d" % k, c.result)
    else:
        raise AssertionError("the log never chose node 2")
    c = sign(net, key_id, b"retry", km, avoid=(evil,))
    assert c.done and openssl_verifies(km.public_key, b"retry", c.result)


def test_a_node_that_proposes_nothing_is_passed_over_then_used_when_needed(
    net: LocalNetwork,
) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    net.silent.add(3)  # proposes no blocks and posts no nonce batches, as if down
    for _ in range(net.states[1].nonce_pools.stale_after + 1):
        net.commit()
    assert net.states[1].nonce_pools.stale(3, net.height)
    assert net.states[1].nonce_pools.available(3) > 0  # it still has commitments to spend
    for k in range(10):
        c = sign(net, key_id, b"m%d" % k, km)
        assert c.done and 3 not in signers_of(net, c.prepared.request_id)
    # With node 4 down too, t = 3 needs node 3 after all (it does answer here).
    net.silent.add(4)
    for _ in range(net.states[1].nonce_pools.stale_after + 1):
        net.commit()
    c = sign(net, key_id, b"both", km)
    assert c.done and signers_of(net, c.prepared.request_id) in ([1, 2, 3], [1, 2, 4])
    # Until their pools run dry: then t signers cannot be found, refused and not hung.
    for k in range(2 * MAX_POOL):
        try:
            sign(net, key_id, b"n%d" % k, km)
        except RequestRejected as refused:
            assert refused.code == "signers_unavailable"
            break
    else:
        raise AssertionError("the silent nodes' pools never ran dry")


def test_one_client_gets_at_most_its_share_of_signatures_per_block(net: LocalNetwork) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    burst = [
        net.client.prepare(Sign(key_id, b"burst%d" % k), now_ms=net.time_ms)
        for k in range(FROST_SIGNS_PER_BLOCK + 4)
    ]
    pools = net.states[1].nonce_pools
    before = sum(pools.available(i) for i in net.states)
    net.commit(*(client_payload(p.request) for p in burst))
    codes = [Response.decode(net.outbox_history[p.request_id][1]).error for p in burst]
    assert codes.count(None) == FROST_SIGNS_PER_BLOCK and codes.count("throttled") == 4
    # The refused ones spent nothing (the refills are posted, not yet in the log).
    after = sum(pools.available(i) for i in net.states)
    assert before - after == FROST_SIGNS_PER_BLOCK * net.t


def test_a_node_restored_from_an_old_backup_catches_up_and_replaces_its_pool(
    net: LocalNetwork, tmp_path: Path
) -> None:
    # The keystore goes back in time; the log does not. Catching up block by block, the
    # node makes nonces for batch numbers the log already gave to commitments made after the
    # backup: they must never answer for those, and the node must replace what it lost.
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    node = 2
    backup = tmp_path / "backup.db"
    net.backup_keystore(node, backup)
    backup_height = net.height
    seq = net.states[1].nonce_pools.pool(node).next_seq
    k = 0
    while net.states[1].nonce_pools.pool(node).next_seq < seq + 2:
        k += 1
        assert sign(net, key_id, b"m%d" % k, km).done
    net.restore_keystore(node, backup)
    ks = Keystore.open(net.keystore_path(node), PASSPHRASE, node)
    executor = Executor(node, net.genesis, NodeIdentity.load(ks), ks)
    state = KMSState(net.genesis)
    for block in net.log[:backup_height]:
        for effect in state.apply(block):
            executor.replay(effect)
    posts = []
    for block in net.log[backup_height:]:  # executed again, as KMSNode does after a restore
        for effect in state.apply(block):
            executor.run(effect)
        made = executor.nonce_supply.wanted(state.nonce_pools.pool(node), net.time_ms / 1000)
        if made is not None:
            posts.append(made)
    assert posts, "the catching-up node made no batch (the test lost its point)"
    net.states[node], net.executors[node] = state, executor
    net.commit(*posts)  # what it posted while behind: the log refuses all of it
    net.settle()
    pool = net.states[1].nonce_pools.pool(node)
    assert {nonce_record(ref, c) for ref, c in pool.entries} == set(ks.names("frost-nonce"))
    assert executor.nonce_supply.missing == 0
    refusals = 0
    for j in range(40):
        c = sign(net, key_id, b"after%d" % j, km)
        assert c.done
        answer = Response.decode(net.outbox_history[c.prepared.request_id][node])
        refusals += answer.error == "nonce_unavailable"
    assert refusals == 0


def test_a_batch_not_yet_in_the_log_is_posted_again_with_the_same_nonces(
    net: LocalNetwork,
) -> None:
    ex = net.executors[1]
    pool = net.states[1].nonce_pools.pool(1)
    first = ex.nonce_supply.wanted(pool, 100.0)
    assert first is not None
    assert ex.nonce_supply.wanted(pool, 100.0 + REPOST_AFTER / 2) is None  # not yet
    again = ex.nonce_supply.wanted(pool, 100.0 + REPOST_AFTER)
    assert again == first
    # A restarted node rebuilds the very same batch from its keystore.
    net.restart(1)
    assert net.executors[1].nonce_supply.wanted(net.states[1].nonce_pools.pool(1), 0.0) == first


def test_a_nonce_that_does_not_match_its_commitment_is_never_used(net: LocalNetwork) -> None:
    net.commit()
    net.settle()
    ex = net.executors[1]
    ref, commitment = net.states[1].nonce_pools.pool(1).entries[0]
    ex.keystore.put(nonce_record(ref, commitment), bytes(31) + b"\x07" + bytes(31) + b"\x09")
    assert ex.nonce_supply.take(ref, commitment) is None
    assert ex.nonce_supply.stats.nonces_refused == 1
    with pytest.raises(KeystoreRecordMissing):  # erased all the same
        ex.keystore.get(nonce_record(ref, commitment))


def test_a_nonce_is_erased_before_its_share_leaves_and_never_used_twice(
    net: LocalNetwork,
) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    prepared = net.client.prepare(Sign(key_id, b"once"), now_ms=net.time_ms)
    net.commit(client_payload(prepared.request))
    answers = net.outbox_history[prepared.request_id]
    signer = signers_of(net, prepared.request_id)[0]
    assert Response.decode(answers[signer]).sealed is not None
    # The committed effect run again (a crash before the executed-height mark): the nonce
    # is gone from the keystore, so the signer refuses instead of signing with another.
    effect = _effect_for(net, prepared.request_id)
    response = net.executors[signer].run(effect).responses[0]
    assert response.error == "nonce_unavailable" and response.sealed is None
    c = net.client.collector(prepared, km)
    for node, data in sorted(answers.items()):
        c.add(node, data)
    assert c.done and openssl_verifies(km.public_key, b"once", c.result)


def _effect_for(net: LocalNetwork, request_id: bytes) -> ComputeFrostShare:
    """The FROST effect the log made for ``request_id``, from a fresh replay of the log."""
    state = KMSState(net.genesis)
    for block in net.log:
        for effect in state.apply(block):
            if isinstance(effect, ComputeFrostShare) and effect.request_id == request_id:
                return effect
    raise AssertionError("no FROST effect for the request")


def test_a_restored_keystore_replaces_its_lost_commitments(
    net: LocalNetwork, tmp_path: Path
) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    node = 2
    ks = net.executors[node].keystore
    for name in ks.names("frost-nonce"):  # as if restored from before these were made
        ks.delete(name)
    net.restart(node)
    net.commit()
    net.settle()
    pool = net.states[1].nonce_pools.pool(node)
    held = set(net.executors[node].keystore.names("frost-nonce"))
    assert pool.entries and held == {nonce_record(ref, c) for ref, c in pool.entries}
    for k in range(6):
        c = sign(net, key_id, b"m%d" % k, km)
        assert c.done and openssl_verifies(km.public_key, b"m%d" % k, c.result)


def test_the_log_refuses_forged_replayed_and_oversized_batches(net: LocalNetwork) -> None:
    net.commit()
    net.settle()
    pools = net.states[1].nonce_pools
    before = {i: pools.available(i) for i in net.states}
    seq = pools.pool(1).next_seq
    commitment = net.states[1].nonce_pools.pool(2).entries[0][1]
    forged = NoncePayload(1, seq, False, (commitment,)).signed(
        net.genesis.chain_id, net.identities[2].signing_key
    )
    replayed = NoncePayload(1, seq - 1, False, (commitment,)).signed(
        net.genesis.chain_id, net.identities[1].signing_key
    )
    bad_point = NoncePayload(1, seq, False, (b"\x01" + bytes(63),)).signed(
        net.genesis.chain_id, net.identities[1].signing_key
    )
    other_chain = NoncePayload(1, seq, False, (commitment,)).signed(
        "another-chain", net.identities[1].signing_key
    )
    for payload in (forged, replayed, bad_point, other_chain):
        assert decode_payload(payload.encode()) == payload
        net.commit(payload.encode())
    assert {i: pools.available(i) for i in net.states} == before
    assert pools.rejected_batches == 4
    assert all(s.nonce_pools.rejected_batches == 4 for s in net.states.values())


def test_signing_after_a_refresh_uses_the_new_shares(net: LocalNetwork) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    net.run(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms))
    fresh = net.key_material(key_id)
    assert fresh.epoch == km.epoch + 1 and fresh.public_key == km.public_key
    c = sign(net, key_id, b"after refresh", fresh)
    assert c.done and openssl_verifies(km.public_key, b"after refresh", c.result)


def test_a_frost_effect_carries_no_secret_in_its_repr() -> None:
    e = ComputeFrostShare(
        b"r" * 32,
        b"c" * 32,
        1,
        "key-1",
        1,
        0,
        b"k",
        {},
        message=b"secret message",
        public_key=b"p",
        commitments=(),
        nonce_refs={1: NonceRef(0, 0)},
    )
    assert "secret message" not in repr(e)


def test_a_keystore_restored_with_a_used_nonce_can_only_repeat_the_same_share(
    net: LocalNetwork, tmp_path: Path
) -> None:
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    node = 1
    backup = tmp_path / "backup.db"
    net.backup_keystore(node, backup)
    prepared = net.client.prepare(Sign(key_id, b"m", (4,)), now_ms=net.time_ms)
    c = net.run(prepared, km)
    assert c.done and node in signers_of(net, prepared.request_id)
    assert prepared.reply_key is not None

    def share_in(data: bytes) -> frost.SignatureShare:
        sealed = Response.decode(data).sealed
        assert sealed is not None
        raw = open_sealed(prepared.reply_key, sealed, sealed_aad(prepared.request_id, node))
        return frost.SignatureShare.decode(SUITE, raw)

    first = share_in(net.outbox_history[prepared.request_id][node])
    # Restore the backup (it still holds the nonce the log spent) and execute the block again.
    net.restore_keystore(node, backup)
    net.restart(node)
    again = net.executors[node].run(_effect_for(net, prepared.request_id)).responses[0]
    assert share_in(again.encode()) == first  # the same share: nothing new revealed


def test_frost_signing_on_a_larger_committee(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path, n=7, f=2, t=5)
    try:
        key_id = net.create_key(KeyKind.SIGN_ED25519)
        km = net.key_material(key_id)
        for k in range(3):
            c = sign(net, key_id, b"m%d" % k, km, avoid=(k + 1,))
            assert c.done and openssl_verifies(km.public_key, b"m%d" % k, c.result)
            chosen = signers_of(net, c.prepared.request_id)
            assert len(chosen) == 5 and k + 1 not in chosen
    finally:
        net.close()


@pytest.mark.parametrize("chosen", [False, True], ids=["liar-not-signing", "liar-signing"])
def test_a_node_lying_about_the_package_is_outvoted_and_named(
    net: LocalNetwork, chosen: bool
) -> None:
    # Node 4 names a forged package. It is outvoted by the f + 1 that name the log's; when
    # the log chose it as a signer (node 1 passed over instead), its share still counts
    # against the agreed package, so the attempt completes (or, had the share been bad,
    # fails naming it) and never stalls waiting for a share set aside.
    key_id = net.create_key(KeyKind.SIGN_ED25519)
    km = net.key_material(key_id)
    liar = 4

    def other_package(response: Response) -> bytes:
        result = dict(response.result or {})
        if "commitments" in result:
            forged = list(result["commitments"])
            forged[0] = forged[0][:2] + bytes(reversed(forged[0][2:]))
            result["commitments"] = forged
        return net.resigned(liar, response, result=result)

    net.byzantine[liar] = other_package
    first = sign(net, key_id, b"m", km, avoid=(1,) if chosen else (liar,))
    assert (liar in signers_of(net, first.prepared.request_id)) is chosen
    answers = net.outbox_history[first.prepared.request_id]
    c = net.client.collector(first.prepared, km)
    for node in (liar, *sorted(set(answers) - {liar})):  # the liar speaks first
        if c.add(node, answers[node]):
            break
    assert c.done and openssl_verifies(km.public_key, b"m", c.result)
    assert c.misbehaving == {liar} and c.waiting_for_signers() == ()
