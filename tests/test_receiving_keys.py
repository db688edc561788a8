"""Receiving keys over the in-process log: every deal in the log is sealed to a key its
recipient erases once the session ends, so neither a refreshed-away share nor a deleted key
can be rebuilt later from the log and the nodes' keystores (the attack a review found)."""

from __future__ import annotations

from pathlib import Path

from kmsnode.crypto import dkg
from kmsnode.crypto.dkg._messages import share_aad
from kmsnode.crypto.errors import CryptoError
from kmsnode.crypto.sealing import SealingPrivateKey, open_sealed
from kmsnode.genesis import DEFAULT_MIN_DELETION_WAIT_S
from kmsnode.identity import GENESIS_SEALING_RECORD
from kmsnode.state import GROUPS
from kmsnode.testing import LocalNetwork
from kmsnode.wire.payload import DkgPayload, ReceivingKeyPayload, client_payload, decode_payload
from kmsnode.wire.requests import (
    ActivateRules,
    CreateKey,
    Decrypt,
    KeyKind,
    RefreshKey,
    ScheduleKeyDeletion,
)

from .test_pipeline import CTX, create, encrypt, key_material


def sealing_keys_held(net: LocalNetwork, node: int) -> list[SealingPrivateKey]:
    """Every hybrid private key in ``node``'s keystore that a share could be sealed to."""
    ks = net.executors[node].keystore
    names = [*ks.names("receiving-key")]
    if GENESIS_SEALING_RECORD in ks.names("identity"):
        names.append(GENESIS_SEALING_RECORD)
    return [SealingPrivateKey.from_bytes(ks.get(n)) for n in names]


def openable_shares(net: LocalNetwork, key_id: str) -> int:
    """Shares of ``key_id``'s deals in the log that some key in its recipient's keystore
    still opens (what an attacker holding the keystores and the log would get)."""
    group = GROUPS[KeyKind.ENCRYPT]
    held = {i: sealing_keys_held(net, i) for i in net.executors}
    count = 0
    for block in net.log:
        for raw in block.payloads:
            payload = decode_payload(raw)
            if not isinstance(payload, DkgPayload) or payload.key_id != key_id:
                continue
            message = dkg.decode_message(group, payload.message)
            if not isinstance(message, dkg.Deal):
                continue
            for recipient, sealed in message.sealed_shares:
                aad = share_aad(message.session_id, message.dealer, recipient)
                for key in held[recipient]:
                    try:
                        open_sealed(key, sealed, aad)
                    except CryptoError:
                        continue
                    count += 1
    return count


def settle_keys(net: LocalNetwork, blocks: int = 3) -> None:
    """A few more blocks: the nodes' next receiving keys land and the used ones are erased."""
    for _ in range(blocks):
        net.commit()


def test_no_deal_in_the_log_opens_once_its_session_ended(net: LocalNetwork) -> None:
    key_id = create(net)
    # While the DKG ran its deals opened (the nodes needed them); now none does.
    settle_keys(net)
    assert openable_shares(net, key_id) == 0
    for i, ex in net.executors.items():
        held = sealing_keys_held(net, i)
        assert len(held) == 1, f"node {i} holds {len(held)} receiving keys"
        assert held[0].public_key == net.states[i].receiving_keys[i].public
        assert net.states[1].receiving_keys[i].seq == 1  # one rotation after the one use
        assert GENESIS_SEALING_RECORD not in ex.keystore.names("identity")
        assert ex.receiving.stats.keys_erased == 1
    # The nodes still serve the key (its shares are in the keystores, not in the log).
    ct = encrypt(net, key_id, b"still here")
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), key_material(net, key_id))
    assert c.done and c.result == b"still here"
    # A refresh's deals are sealed to the fresh keys, and erased alike once it ends.
    net.commit(client_payload(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms).request))
    net.settle()
    settle_keys(net)
    assert openable_shares(net, key_id) == 0
    assert all(net.states[1].receiving_keys[i].seq == 2 for i in net.executors)
    material = key_material(net, key_id)
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), material)
    assert c.done and c.result == b"still here"


def test_a_deleted_key_cannot_be_rebuilt_from_the_log_and_the_keystores(
    net: LocalNetwork,
) -> None:
    key_id = create(net)
    op = ScheduleKeyDeletion(key_id, DEFAULT_MIN_DELETION_WAIT_S)
    assert net.run(net.client.prepare(op, now_ms=net.time_ms)).done
    net.time_ms += DEFAULT_MIN_DELETION_WAIT_S * 1000
    settle_keys(net)
    assert all(
        not [n for n in ex.keystore.names() if n.key_id == key_id] for ex in net.executors.values()
    )
    assert openable_shares(net, key_id) == 0


def test_sessions_open_concurrently_keep_their_keys_until_each_ends(net: LocalNetwork) -> None:
    # Two keys created in one block share the receiving keys; both complete.
    a = net.client.prepare(CreateKey(KeyKind.ENCRYPT, "a"), now_ms=net.time_ms)
    b = net.client.prepare(CreateKey(KeyKind.SIGN_BLS, "b"), now_ms=net.time_ms)
    net.commit(client_payload(a.request), client_payload(b.request))
    key_ids = list(net.states[1].keys)
    net.commit()  # the used keys' successors are posted now, while both sessions run
    net.settle()
    assert all(net.states[1].keys[k].state.value == "enabled" for k in key_ids)
    settle_keys(net)
    assert openable_shares(net, key_ids[0]) == 0


def test_a_node_restored_without_its_current_key_posts_a_new_one(
    net: LocalNetwork, tmp_path: Path
) -> None:
    backup = tmp_path / "node2-before.db"
    net.backup_keystore(2, backup)  # holds only the genesis key
    create(net)
    settle_keys(net)
    net.restore_keystore(2, backup)
    net.restart(2)
    settle_keys(net)
    current = net.states[1].receiving_keys[2]
    assert current.seq == 2  # replaced: the log's seq-1 key was not in the restored keystore
    assert net.executors[2].receiving.holds(current.public)
    # It takes part in (and completes) the next DKG again.
    key_id = create(net)
    version = net.states[1].keys[key_id].versions[0]
    assert 2 in version.qualified


def test_an_upgraded_v2_network_retires_its_genesis_keys(tmp_path: Path) -> None:
    """Under v2 every deal is sealed to the genesis keys; the upgrade to v3 counts them as
    used, so the nodes move on and erase them, and a key from the v2 days can be shredded."""
    net = LocalNetwork(tmp_path, rules_version=2)
    try:
        key_id = create(net)
        settle_keys(net)
        assert openable_shares(net, key_id) > 0  # v2: the genesis keys still open them
        net.commit(*(net.state_rules(i) for i in net.identities))
        c = net.run(net.client.prepare(ActivateRules(3, 10), now_ms=net.time_ms))
        assert c.done
        net.commit(*(net.state_rules(i) for i in net.identities))
        while net.height < c.result["height"]:
            net.commit()
        settle_keys(net)
        assert all(net.states[1].receiving_keys[i].seq == 1 for i in net.identities)
        assert openable_shares(net, key_id) == 0
    finally:
        net.close()


def test_a_key_posted_before_a_restart_is_posted_again_not_lost(net: LocalNetwork) -> None:
    net.commit()
    net.settle()
    prepared = net.client.prepare(CreateKey(KeyKind.ENCRYPT, "k"), now_ms=net.time_ms)
    net.commit(client_payload(prepared.request))  # the session uses the genesis keys
    mine = [
        raw
        for raw in net.pending
        if isinstance(p := decode_payload(raw), ReceivingKeyPayload) and p.node == 2
    ]
    assert len(mine) == 1, "each node posts its next key once the session used its key"
    # Node 2 restarts before its post is committed; the post lands after all (another
    # node's mempool had it), before or after the node posts it again.
    net.pending = [raw for raw in net.pending if raw not in mine]
    net.restart(2)
    net.commit()  # the restarted node posts again: the very key it stored before
    again = [
        raw
        for raw in net.pending
        if isinstance(p := decode_payload(raw), ReceivingKeyPayload) and p.node == 2
    ]
    assert again == mine
    net.commit(*mine)
    net.settle()
    settle_keys(net)
    current = net.states[1].receiving_keys[2]
    assert current.seq == 1
    assert net.executors[2].receiving.holds(current.public)  # the key the log took is here
    key_id = create(net)
    assert 2 in net.states[1].keys[key_id].versions[0].qualified


def test_a_node_without_its_receiving_key_still_deals_in_a_refresh(
    net: LocalNetwork, tmp_path: Path
) -> None:
    key_id = create(net)
    settle_keys(net)
    backup = tmp_path / "node3-backup.db"
    net.backup_keystore(3, backup)  # its share, and its then current receiving key
    create(net)  # uses that key: node 3 moves on to another and erases it
    settle_keys(net)
    net.restore_keystore(3, backup)
    net.restart(3)
    # A refresh opens before node 3's replacement key is in the log: it seals node 3's new
    # share to a key node 3 no longer has. Node 3 cannot receive, but deals its share.
    net.pending = [
        raw
        for raw in net.pending
        if not (isinstance(p := decode_payload(raw), ReceivingKeyPayload) and p.node == 3)
    ]
    net.commit(client_payload(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms).request))
    net.settle()
    version = net.states[1].keys[key_id].versions[0]
    assert version.epoch == 1 and 3 in version.qualified
    assert net.executors[3].stats.shares_missing == 1
