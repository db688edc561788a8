"""Receiving keys in the replicated state: who may post one, which sessions use it."""

from __future__ import annotations

import dataclasses

from kmsnode.crypto.sealing import SealingPrivateKey
from kmsnode.state import KMSState
from kmsnode.wire.payload import ReceivingKeyPayload
from kmsnode.wire.requests import CreateKey, KeyKind

from .conftest import Network


def posted(net: Network, node: int, seq: int, *, signer: int | None = None) -> tuple[bytes, bytes]:
    public = SealingPrivateKey.generate().public_key.encode()
    payload = ReceivingKeyPayload(node, seq, public).signed(
        net.genesis.chain_id, net.identities[signer or node].signing_key
    )
    return payload.encode(), public


def test_a_node_posts_its_next_key_and_only_it(net: Network) -> None:
    st = net.states[1]
    good, public = posted(net, 2, 1)
    forged, _ = posted(net, 3, 1, signer=2)  # node 2's signature on node 3's key
    stale, _ = posted(net, 4, 0)  # seq 0 is the genesis key's
    net.commit(good, forged, stale)
    assert st.receiving_keys[2].seq == 1 and st.receiving_keys[2].public.encode() == public
    assert st.receiving_keys[3].seq == 0 and st.receiving_keys[4].seq == 0
    assert st.rejected_payloads == 2
    again, _ = posted(net, 2, 1)  # same seq, other key: not newer
    bad = ReceivingKeyPayload(2, 5, bytes(1216)).signed(
        net.genesis.chain_id, net.identities[2].signing_key
    )  # not a usable key (small-order X25519 part)
    net.commit(again, bad.encode())
    assert st.receiving_keys[2].public.encode() == public and st.rejected_payloads == 4
    assert len({str(s.receiving_keys) for s in net.states.values()}) == 1


def test_a_session_seals_to_the_current_keys_and_marks_them_used(net: Network) -> None:
    fresh = SealingPrivateKey.generate()
    public = fresh.public_key.encode()
    raw = (
        ReceivingKeyPayload(3, 1, public)
        .signed(net.genesis.chain_id, net.identities[3].signing_key)
        .encode()
    )
    # (this simulation's node 3 opens its shares with its identity's key: the fresh one now)
    net.identities[3] = dataclasses.replace(net.identities[3], sealing_key=fresh)
    net.commit(raw)
    assert not net.states[1].receiving_keys[3].used
    net.send(net.admin.request(CreateKey(KeyKind.ENCRYPT), at_ms=net.time_ms))
    st = net.states[1]
    session = next(iter(st.sessions.values())).observer.session
    assert session.committee[3].sealing_key.encode() == public  # type: ignore[union-attr]
    assert session.committee[1].sealing_key == net.genesis.node(1).sealing_key
    assert all(k.used for k in st.receiving_keys.values())
    assert st.receiving_keys_in_use(3) == {public}
    # Later keys do not change an open session's committee; it still counts as in use.
    newer, _ = posted(net, 3, 2)
    net.commit(newer)
    assert st.receiving_keys_in_use(3) == {public} and st.receiving_keys[3].seq == 2


def test_v2_rules_seal_to_the_genesis_keys_and_drop_posted_ones() -> None:
    net = Network()
    net.genesis = dataclasses.replace(net.genesis, rules_version=2)
    net.states = {i: KMSState(net.genesis) for i in net.identities}
    raw, _ = posted(net, 2, 1)
    net.commit(raw)
    st = net.states[1]
    assert st.receiving_keys[2].seq == 0 and st.rejected_payloads == 1
    net.send(net.admin.request(CreateKey(KeyKind.ENCRYPT), at_ms=net.time_ms))
    session = next(iter(st.sessions.values())).observer.session
    assert all(
        session.committee[i].sealing_key == net.genesis.node(i).sealing_key for i in (1, 2, 3, 4)
    )
    assert not any(k.used for k in st.receiving_keys.values())
