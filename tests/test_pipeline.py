"""State machine + executor + client core together, over an in-process log (no network)."""

from __future__ import annotations

import pytest

from kmsnode.client._core import ClientCore, KeyMaterial
from kmsnode.client.errors import (
    AccessDenied,
    InvalidCiphertextError,
    KeyNotFound,
    StaleKeyMaterial,
)
from kmsnode.crypto import tdh2
from kmsnode.testing import LocalNetwork
from kmsnode.wire.payload import client_payload
from kmsnode.wire.requests import CreateKey, Decrypt, Encrypt, KeyKind, RefreshKey
from kmsnode.wire.responses import Response

CTX = {"app": "payroll"}


def create(net: LocalNetwork) -> str:
    return net.create_key(KeyKind.ENCRYPT, "pipeline")


def key_material(
    net: LocalNetwork, key_id: str, core: ClientCore | None = None, version: int = 1
) -> KeyMaterial:
    return net.key_material(key_id, version, client=core)


def encrypt(net: LocalNetwork, key_id: str, plaintext: bytes) -> bytes:
    c = net.run(net.client.prepare(Encrypt(key_id), now_ms=net.time_ms))
    assert c.done
    return tdh2.encrypt(
        c.result["public_key"],
        plaintext,
        key_id=key_id,
        key_version=c.result["version"],
        context=CTX,
    )


def test_create_encrypt_decrypt(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"salary data")
    km = key_material(net, key_id)
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km)
    assert c.done and c.result == b"salary data"
    assert c.misbehaving == set()
    # Shares exist only in the keystores, one per node.
    for ex in net.executors.values():
        assert [r.kind for r in ex.keystore.names("share")] == ["share"]


def test_wrong_context_and_tampering_get_the_opaque_error_and_no_partial(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"x")
    km = key_material(net, key_id)
    refused_before = sum(e.stats.partials_refused for e in net.executors.values())
    with pytest.raises(InvalidCiphertextError):
        net.run(net.client.prepare(Decrypt(ct, {"app": "other"}), now_ms=net.time_ms), km)
    tampered = bytearray(ct)
    tampered[-5] ^= 1
    with pytest.raises(InvalidCiphertextError):
        net.run(net.client.prepare(Decrypt(bytes(tampered), CTX), now_ms=net.time_ms), km)
    # Every node's state machine refused both before any partial existed, and audited it.
    assert sum(e.stats.partials for e in net.executors.values()) == 0
    assert sum(e.stats.partials_refused for e in net.executors.values()) == refused_before
    for state in net.states.values():
        outcomes = [a.outcome for a in state.audit.entries if a.op == "decrypt"]
        assert outcomes == ["invalid_ciphertext", "invalid_ciphertext"]


def test_a_lying_node_is_named_and_decryption_still_works(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"still fine")
    km = key_material(net, key_id)
    liar = net.identities[2]

    def lie(response: Response) -> bytes:
        if response.op != "decrypt" or response.sealed is None:
            return response.encode()
        # A validly signed answer whose sealed partial is another node's work: wrong id.
        fake = Response(**{**response.__dict__, "sealed": b"\x01" + bytes(1300)})
        return fake.signed(liar.signing_key).encode()

    net.byzantine[2] = lie
    prepared = net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms)
    c = net.run(prepared, km)
    assert c.done and c.result == b"still fine"
    assert c.misbehaving == {2}
    assert "still fine" not in repr(c)  # the plaintext (and the partials) stay out of reprs
    # Short of a quorum, the liar's answer is not counted as a valid one.
    partial = net.client.collector(prepared, km)
    for node in (1, 2):
        partial.add(node, net.outbox_history[prepared.request_id][node])
    assert not partial.done and partial.unavailable().answered == 1


def test_a_node_lying_about_the_public_key_is_outvoted(net: LocalNetwork) -> None:
    key_id = create(net)
    honest = key_material(net, key_id)[0]
    liar = net.identities[1]

    def lie(response: Response) -> bytes:
        if response.op != "encrypt" or response.result is None:
            return response.encode()
        forged = {**response.result, "public_key": bytes(32)}
        return Response(**{**response.__dict__, "result": forged}).signed(liar.signing_key).encode()

    net.byzantine[1] = lie
    # Node 1's answer is read first: one answer alone would settle on the forged key.
    c = net.run(net.client.prepare(Encrypt(key_id), now_ms=net.time_ms))
    assert c.done and c.result["public_key"] == honest


def test_unauthorised_client(net: LocalNetwork) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_id = create(net)
    stranger = ClientCore(net.genesis, Ed25519PrivateKey.generate())
    with pytest.raises(AccessDenied):
        net.run(stranger.prepare(Encrypt(key_id), now_ms=net.time_ms), client=stranger)
    with pytest.raises(KeyNotFound):
        net.run(net.client.prepare(Encrypt("key-missing"), now_ms=net.time_ms))
    outcomes = [e.outcome for e in net.states[1].audit.entries]
    assert "access_denied" in outcomes
    # A refused decryption is audited under the key its ciphertext names (the operation has
    # no key field of its own), for a refusal by policy and for a failed proof alike.
    ct = encrypt(net, key_id, b"not yours")
    with pytest.raises(AccessDenied):
        net.run(stranger.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), client=stranger)
    with pytest.raises(InvalidCiphertextError):
        net.run(net.client.prepare(Decrypt(ct, {"app": "other"}), now_ms=net.time_ms))
    last = net.states[1].audit.entries[-2:]
    assert [(e.op, e.key_id, e.outcome) for e in last] == [
        ("decrypt", key_id, "access_denied"),
        ("decrypt", key_id, "invalid_ciphertext"),
    ]


def test_small_order_reply_key_gets_no_partial(net: LocalNetwork) -> None:
    from kmsnode.client._core import Prepared
    from kmsnode.client.errors import RequestRejected
    from kmsnode.crypto.sealing import SealingPrivateKey
    from kmsnode.wire.requests import Request

    key_id = create(net)
    ct = encrypt(net, key_id, b"x")
    km = key_material(net, key_id)
    mlkem = SealingPrivateKey.generate().public_key.mlkem768
    bad_key = bytes(32) + mlkem  # X25519 point 0: small order
    req = Request(
        net.genesis.chain_id, net.client.client_id, net.time_ms << 16, Decrypt(ct, CTX), bad_key
    ).signed(net.admin)
    prepared = Prepared(req, SealingPrivateKey.generate(), req.encode())
    with pytest.raises(RequestRejected) as info:
        net.run(prepared, km)
    assert info.value.code == "invalid_reply_key"
    assert sum(e.stats.partials for e in net.executors.values()) == 0


def test_a_node_restarted_mid_dkg_finishes_it_with_the_same_polynomial(net: LocalNetwork) -> None:
    from kmsnode.executor import seed_record, share_record

    prepared = net.client.prepare(CreateKey(KeyKind.ENCRYPT, "restart"), now_ms=net.time_ms)
    from kmsnode.wire.payload import client_payload

    net.commit(client_payload(prepared.request))  # StartDkg everywhere: deals are queued
    net.commit()  # the deals are committed
    key_id = next(iter(net.states[1].keys))
    assert net.executors[4].keystore.names("dkg-seed") == [seed_record(key_id, 1, 0)]
    net.restart(4)  # its participant is rebuilt from the seed and the replayed log
    assert net.executors[4].participants, "the open session was not resumed"
    net.settle()
    record = net.states[4].keys[key_id]
    assert record.state.value == "enabled"
    assert record.current is not None and len(record.current.verification_keys) == 4
    ks = net.executors[4].keystore
    assert ks.names("dkg-seed") == []  # erased once the session ended
    assert ks.get(share_record(key_id, 1, 0))
    # Node 4's share works: decrypt with nodes 2, 3 and 4 only.
    ct = encrypt(net, key_id, b"after a restart")
    km = key_material(net, key_id)
    net.byzantine[1] = lambda response: b"\x00"  # node 1 answers garbage
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km)
    assert c.done and c.result == b"after a restart"
    assert c.misbehaving == {1}


def test_a_dealer_restarted_after_a_complaint_justifies_with_the_same_polynomial(
    net: LocalNetwork,
) -> None:
    # Node 4's sealed share to node 2 is unreadable (garbled in flight): node 2 complains,
    # node 4 restarts before the complaint arrives, and must still justify correctly.
    from kmsnode.crypto import dkg
    from kmsnode.wire.payload import DkgPayload, client_payload, decode_payload

    prepared = net.client.prepare(CreateKey(KeyKind.ENCRYPT, "complaint"), now_ms=net.time_ms)
    net.commit(client_payload(prepared.request))
    garbled = []
    group = net.states[1].sessions[next(iter(net.states[1].sessions))].observer.session.group
    for raw in net.pending:
        payload = decode_payload(raw)
        if not isinstance(payload, DkgPayload):  # the nodes' first FROST nonce batches
            garbled.append(raw)
            continue
        msg = dkg.decode_message(group, payload.message)
        if isinstance(msg, dkg.Deal) and msg.dealer == 4:
            sealed = tuple((j, b"\x01" + bytes(40) if j == 2 else s) for j, s in msg.sealed_shares)
            forged = dkg.Deal.create(
                group,
                msg.session_id,
                4,
                msg.commitments,
                msg.proof,
                sealed,
                net.identities[4].signing_key,
            )
            raw = DkgPayload(
                payload.key_id, payload.version, payload.epoch, forged.encode()
            ).encode()
        garbled.append(raw)
    net.pending = garbled
    net.commit()  # deals committed; node 2 queues a complaint against dealer 4
    net.restart(4)
    net.settle()
    key_id = next(iter(net.states[1].keys))
    record = net.states[1].keys[key_id]
    assert record.state.value == "enabled"
    complaints = [
        m
        for block in net.log
        for raw in block.payloads
        if isinstance(p := decode_payload(raw), DkgPayload)
        and isinstance(m := dkg.decode_message(group, p.message), dkg.Complaint)
    ]
    assert [(c.complainer, c.dealer) for c in complaints] == [(2, 4)]
    # Dealer 4 justified correctly after its restart, so it stays qualified (without the
    # stored seed it would have come back with another polynomial, or none, and been cut).
    assert record.current is not None
    assert record.current.qualified == (1, 2, 3, 4)
    assert record.current.disqualified == {}


def test_a_flipped_bit_anywhere_releases_no_partial(net: LocalNetwork) -> None:
    # Every part of a ciphertext is bound: the group elements and scalars of the proof, the
    # nonce and the AEAD body all fail the nodes' proof check (the opaque error). Only a flip
    # in the key id or version can name another, absent key, and gets that refusal instead.
    from kmsnode.client.errors import KeyUnavailable

    key_id = create(net)
    ct = encrypt(net, key_id, b"bound everywhere")
    km = key_material(net, key_id)
    header = 3 + ct[2] + 4
    partials_before = sum(e.stats.partials for e in net.executors.values())
    for pos in [*range(0, header), *range(header, len(ct), 7), len(ct) - 1]:
        tampered = bytearray(ct)
        tampered[pos] ^= 0x04
        prepared = net.client.prepare(Decrypt(bytes(tampered), CTX), now_ms=net.time_ms)
        allowed: tuple[type[Exception], ...] = (InvalidCiphertextError,)
        if pos < header:
            allowed += (KeyNotFound, KeyUnavailable)
        with pytest.raises(allowed):
            net.run(prepared, km)
    assert sum(e.stats.partials for e in net.executors.values()) == partials_before


def _shares(net: LocalNetwork, key_id: str) -> dict[int, list[tuple[int, int]]]:
    """Each node's share records of ``key_id`` as (version, epoch) pairs."""
    return {
        i: [(n.version, n.epoch) for n in ex.keystore.names("share") if n.key_id == key_id]
        for i, ex in net.executors.items()
    }


def test_refresh_keeps_ciphertexts_erases_old_shares_and_stale_clients_refetch(
    net: LocalNetwork,
) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"outlives the refresh")
    km0 = key_material(net, key_id)
    assert km0.epoch == 0
    c = net.run(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms))
    assert c.done and c.result == {"key_id": key_id, "epochs": {"1": 1}}
    km1 = key_material(net, key_id)
    assert km1.epoch == 1 and km1.public_key == km0.public_key
    assert set(km1.verification_keys.values()).isdisjoint(km0.verification_keys.values())
    # Every node erased its epoch-0 share once its epoch-1 share was stored.
    assert _shares(net, key_id) == {i: [(1, 1)] for i in range(1, 5)}
    # A client still holding the old verification keys is told to fetch them again (the
    # partials carry their epoch), not misled into naming honest nodes.
    with pytest.raises(StaleKeyMaterial) as stale:
        net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km0)
    assert stale.value.epoch == 1
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km1)
    assert c.done and c.result == b"outlives the refresh" and not c.misbehaving


def test_a_node_claiming_an_older_epoch_is_named(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"x")
    net.run(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms))
    km1 = key_material(net, key_id)

    def old_epoch(response: Response) -> bytes:
        return net.resigned(2, response, result=dict(response.result or {}, epoch=0))

    net.byzantine[2] = old_epoch
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km1)
    assert c.done and c.result == b"x" and c.misbehaving == {2}


def test_a_node_restarted_mid_refresh_finishes_it(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"across a restart")
    prepared = net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms)
    net.commit(client_payload(prepared.request))  # StartDkg(refresh) everywhere
    net.commit()  # the deals are committed
    assert _shares(net, key_id)[4] == [(1, 0)]
    net.restart(4)  # rebuilt from its seed and its epoch-0 share, which it still holds
    assert net.executors[4].participants, "the open refresh was not resumed"
    net.settle()
    assert _shares(net, key_id) == {i: [(1, 1)] for i in range(1, 5)}
    km1 = key_material(net, key_id)
    net.byzantine[1] = lambda response: b"\x00"  # decrypt with nodes 2, 3 and 4
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km1)
    assert c.done and c.result == b"across a restart" and c.misbehaving == {1}


def test_an_old_share_left_by_a_crash_is_erased_when_the_log_is_replayed(
    net: LocalNetwork,
) -> None:
    from kmsnode.executor import share_record

    key_id = create(net)
    ks = net.executors[3].keystore
    old = ks.get(share_record(key_id, 1, 0))
    net.run(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms))
    # As if node 3 stopped after storing its new share but before erasing the old one.
    net.executors[3].keystore.put(share_record(key_id, 1, 0), old)
    net.restart(3)
    assert _shares(net, key_id)[3] == [(1, 1)]


def test_a_share_that_does_not_match_its_verification_key_is_never_used(
    net: LocalNetwork,
) -> None:
    from kmsnode.crypto.groups import RISTRETTO255
    from kmsnode.executor import share_record

    key_id = create(net)
    ct = encrypt(net, key_id, b"kept safe")
    km = key_material(net, key_id)
    # Node 2's keystore now holds another scalar under the share's name (a restore from the
    # wrong backup, say): it must refuse rather than release a partial of a wrong share.
    wrong = RISTRETTO255.encode_scalar(RISTRETTO255.random_scalar())
    net.executors[2].keystore.put(share_record(key_id, 1, 0), wrong)
    net.restart(2)  # a fresh executor: nothing checked yet
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km)
    assert c.done and c.result == b"kept safe" and not c.misbehaving
    assert c.answers[2].error == "share_unavailable"
    assert net.executors[2].stats.partials == 0 and net.executors[2].stats.partials_refused == 1


def test_a_deal_lost_in_a_crash_is_posted_again_after_the_restart(net: LocalNetwork) -> None:
    # Node 4 decided its deal, then crashed before it reached the log (the mempool is
    # memory): restarted, it replays the log and posts the deal again, so it is not
    # disqualified as a dealer that never dealt.
    from kmsnode.crypto import dkg
    from kmsnode.wire.payload import DkgPayload, client_payload, decode_payload

    net.commit()
    net.settle()  # the nodes' first nonce batches land first: the log then holds deals
    prepared = net.client.prepare(CreateKey(KeyKind.ENCRYPT, "lost deal"), now_ms=net.time_ms)
    net.commit(client_payload(prepared.request))
    session = next(iter(net.states[1].sessions.values())).observer.session

    def dealer(raw: bytes) -> int | None:
        payload = decode_payload(raw)
        if not isinstance(payload, DkgPayload):
            return None
        return dkg.decode_message(session.group, payload.message).sender

    assert 4 in {dealer(raw) for raw in net.pending}
    net.pending = [raw for raw in net.pending if dealer(raw) != 4]  # lost with node 4
    net.restart(4)
    dealers = [d for raw in net.pending if (d := dealer(raw)) is not None]
    assert sorted(dealers) == [1, 2, 3, 4]  # 4 posted again
    net.settle()
    key_id = next(iter(net.states[1].keys))
    version = net.states[1].keys[key_id].versions[0]
    assert version.state.value == "active" and 4 in version.qualified
    assert 4 not in version.disqualified
