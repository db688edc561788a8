"""Share refresh under faults: a Byzantine dealer, failed and retried refreshes, restarts, nodes
without their new share, and clients misled about epochs. Over the in-process log."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest

from kmsnode.crypto import feldman, pok
from kmsnode.crypto.dkg import Deal, decode_message
from kmsnode.crypto.dkg._messages import share_aad
from kmsnode.crypto.groups import RISTRETTO255 as G
from kmsnode.crypto.sealing import open_sealed, seal
from kmsnode.crypto.shamir import evaluate
from kmsnode.executor import share_record
from kmsnode.state import SharesRefreshed
from kmsnode.testing import LocalNetwork
from kmsnode.wire.payload import DkgPayload, client_payload, decode_payload
from kmsnode.wire.requests import CreateKey, Decrypt, KeyKind, RefreshKey
from kmsnode.wire.responses import Response

from .test_pipeline import CTX, _shares, create, encrypt, key_material


def refresh(net: LocalNetwork, key_id: str) -> None:
    net.commit(client_payload(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms).request))


def decrypts(net: LocalNetwork, key_id: str, ct: bytes, plaintext: bytes) -> bool:
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), key_material(net, key_id))
    return c.done and c.result == plaintext and not c.misbehaving


def test_a_dealer_that_zeroes_its_own_share_cannot_stop_the_nodes(net: LocalNetwork) -> None:
    # Node 4 withholds its deal until the honest ones are committed, opens the shares they
    # sealed to it, and deals f(4) = -(their sum): its share, and so its verification key,
    # is zero (the identity). Every deal is valid. A refresh must still work, not raise.
    evil = 4
    net.commit()  # the nodes' first FROST nonce batches land: from here on, the log holds deals
    net.settle()
    net.commit(
        client_payload(
            net.client.prepare(CreateKey(KeyKind.ENCRYPT, "z"), now_ms=net.time_ms).request
        )
    )
    posts = [decode_payload(b) for b in net.pending]
    mine = [
        d
        for d in posts
        if isinstance(d, DkgPayload) and decode_message(G, d.message).sender == evil
    ]
    net.pending = [b for b, d in zip(net.pending, posts, strict=True) if d not in mine]
    net.commit()
    key_id = mine[0].key_id  # type: ignore[union-attr]
    session = net.states[1].sessions[(key_id, 1, 0)].observer.session
    ident = net.identities[evil]
    received = 0
    for raw in net.log[-1].payloads:
        payload = decode_payload(raw)
        if not isinstance(payload, DkgPayload):
            continue  # (the nodes' next receiving keys)
        deal = decode_message(G, payload.message)
        sealed = dict(deal.sealed_shares)[evil]
        aad = share_aad(session.session_id, deal.sender, evil)
        received += G.decode_scalar(open_sealed(ident.sealing_key, sealed, aad))
    a0, a1 = secrets.randbelow(G.order - 1) + 1, secrets.randbelow(G.order)
    a2 = (-received - a0 - a1 * evil) * pow(evil * evil, -1, G.order) % G.order
    coefficients = [a0, a1, a2]
    commitments = feldman.commit(G, coefficients)
    proof = pok.prove(G, a0, commitments[0], prover=evil, context=session.session_id)
    shares = [
        (
            j,
            seal(
                m.sealing_key,  # type: ignore[arg-type]
                G.encode_scalar(evaluate(coefficients, j, G.order)),
                share_aad(session.session_id, evil, j),
            ),
        )
        for j, m in sorted(session.committee.items())
    ]
    deal = Deal.create(
        G, session.session_id, evil, commitments, proof, shares, ident.signing_key
    ).encode()
    net.commit(DkgPayload(key_id, 1, 0, deal).encode())
    net.pending.clear()  # node 4's honest deal, posted late, would be ignored anyway
    net.settle()
    version = net.states[1].keys[key_id].versions[0]
    assert version.verification_keys[evil] == G.encode(G.identity())
    ct = encrypt(net, key_id, b"zeroed")
    refresh(net, key_id)  # committed: it must not raise out of apply
    net.settle()
    assert net.states[1].keys[key_id].versions[0].epoch == 1
    assert decrypts(net, key_id, ct, b"zeroed")


def failed_refresh_then_retry(net: LocalNetwork, key_id: str) -> None:
    """A refresh whose deals are all lost (it fails at its deadline), then a retry whose
    deals are committed."""
    refresh(net, key_id)
    net.pending.clear()
    net.settle()
    v = net.states[1].keys[key_id].versions[0]
    assert v.epoch == 0 and v.refreshing_to is None and "valid deals" in v.refresh_failure
    refresh(net, key_id)
    net.commit()


@pytest.mark.parametrize("restarted", [(4,), (1, 2, 3, 4)])
def test_a_retried_refresh_survives_restarts(net: LocalNetwork, restarted: tuple[int, ...]) -> None:
    # The retry uses a fresh epoch: replaying the failed session must not take the retry's
    # seed (and then erase it), or the restarted nodes drop out of the refresh.
    key_id = create(net)
    ct = encrypt(net, key_id, b"still readable")
    failed_refresh_then_retry(net, key_id)
    for i in restarted:
        net.restart(i)
        assert net.executors[i].participants, f"node {i} dropped out of the retried refresh"
    net.settle()
    assert net.states[1].keys[key_id].versions[0].epoch == 2  # epoch 1 was used up
    assert _shares(net, key_id) == {i: [(1, 2)] for i in range(1, 5)}
    assert decrypts(net, key_id, ct, b"still readable")


def test_a_node_without_its_new_share_keeps_no_old_one(net: LocalNetwork) -> None:
    key_id = create(net)
    ex = net.executors[4]
    assert ex.keystore.get(share_record(key_id, 1, 0))
    # As if a refresh to epoch 3 completed without a share for node 4.
    ex.run(SharesRefreshed(key_id, 1, 3))
    assert _shares(net, key_id)[4] == []
    assert ex.stats.shares_missing == 1


def test_a_node_claiming_a_newer_epoch_is_named_once_the_partials_combine(
    net: LocalNetwork,
) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"x")
    km = key_material(net, key_id)

    def newer(response: Response) -> bytes:
        return net.resigned(3, response, result=dict(response.result or {}, epoch=7))

    net.byzantine[3] = newer
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), km)
    assert c.done and c.result == b"x" and c.misbehaving == {3}


def test_nodes_without_a_share_do_not_outvote_those_that_serve(tmp_path: Path) -> None:
    # n = 4, t = 2: two nodes saying "no share" are f + 1 identical answers, but only about
    # themselves; the other two still decrypt.
    net = LocalNetwork(tmp_path, t=2)
    try:
        key_id = create(net)
        ct = encrypt(net, key_id, b"two suffice")
        for i in (1, 2):

            def no_share(response: Response, i: int = i) -> bytes:
                return net.resigned(
                    i, response, error="share_unavailable", message="", result=None, sealed=None
                )

            net.byzantine[i] = no_share
        c = net.run(
            net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), key_material(net, key_id)
        )
        assert c.done and c.result == b"two suffice"
    finally:
        net.close()


def test_a_refresh_gives_a_node_that_lost_its_share_a_new_one(net: LocalNetwork) -> None:
    # A refresh is a reshare to the same committee: the nodes holding shares deal, every node
    # receives. Node 4 lost its share (a restore from an older backup, say); after the refresh
    # it serves again, and with node 1 silent the decryption needs it.
    key_id = create(net)
    ct = encrypt(net, key_id, b"repaired")
    net.executors[4].keystore.delete(share_record(key_id, 1, 0))
    refresh(net, key_id)
    net.settle()
    version = net.states[1].keys[key_id].versions[0]
    assert version.epoch == 1 and version.qualified == (1, 2, 3)  # node 4 only received
    assert list(version.disqualified) == [4], version.disqualified
    assert _shares(net, key_id) == {i: [(1, 1)] for i in range(1, 5)}
    assert net.executors[4].stats.shares_missing == 0
    net.byzantine[1] = lambda response: b"\x00"  # useless: t = 3 needs nodes 2, 3 and 4
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), key_material(net, key_id))
    assert c.done and c.result == b"repaired" and c.misbehaving == {1}


def test_a_node_holding_a_wrong_share_says_so_and_receives_a_right_one(
    net: LocalNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"mended")
    wrong = G.encode_scalar(secrets.randbelow(G.order - 1) + 1)
    net.executors[4].keystore.put(share_record(key_id, 1, 0), wrong)  # a bad restore, say
    with caplog.at_level(logging.ERROR, logger="kmsnode.executor"):
        refresh(net, key_id)
    assert "does not match its verification key" in caplog.text  # not dealt, and said why
    net.settle()
    assert net.states[1].keys[key_id].versions[0].epoch == 1
    net.byzantine[1] = lambda response: b"\x00"  # useless: t = 3 needs nodes 2, 3 and 4
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), key_material(net, key_id))
    assert c.done and c.result == b"mended" and c.misbehaving == {1}
