"""Key deletion end to end over the in-process log: every node erases every secret of the
key, durably and scrubbed from its keystore file, and a restarted node replays it the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmsnode.client.errors import KeyUnavailable
from kmsnode.genesis import DEFAULT_MIN_DELETION_WAIT_S
from kmsnode.testing import LocalNetwork
from kmsnode.wire.payload import client_payload
from kmsnode.wire.requests import (
    CancelKeyDeletion,
    Decrypt,
    EnableKey,
    RefreshKey,
    ScheduleKeyDeletion,
)

from .test_pipeline import CTX, create, encrypt, key_material


def records_of(net: LocalNetwork, key_id: str) -> dict[int, list[str]]:
    """Each node's keystore records naming ``key_id`` (any kind)."""
    return {
        i: [n.kind for n in ex.keystore.names() if n.key_id == key_id]
        for i, ex in net.executors.items()
    }


def file_bytes(path: Path) -> bytes:
    """The keystore database and its write-ahead log, as the disk holds them."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def schedule(net: LocalNetwork, key_id: str, wait_s: int = DEFAULT_MIN_DELETION_WAIT_S) -> None:
    op = ScheduleKeyDeletion(key_id, wait_s)
    c = net.run(net.client.prepare(op, now_ms=net.time_ms))
    assert c.done and c.result["state"] == "pending-deletion", c.result


def test_every_node_erases_and_scrubs_every_share_of_a_deleted_key(net: LocalNetwork) -> None:
    key_id = create(net)
    other = create(net)
    material = key_material(net, key_id)
    ct = encrypt(net, key_id, b"shredded")
    # Two epochs' worth of history: a refresh, so the deletion covers every epoch.
    net.commit(client_payload(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms).request))
    net.settle()
    assert all(kinds == ["share"] for kinds in records_of(net, key_id).values())
    sealed = {
        i: ex.keystore._db.execute(  # the encrypted record as stored
            "SELECT sealed FROM records WHERE key_id=?", (key_id,)
        ).fetchone()[0]
        for i, ex in net.executors.items()
    }
    assert all(s in file_bytes(net.keystore_path(i)) for i, s in sealed.items())

    schedule(net, key_id)
    # Pending: shares kept (a cancel must be able to bring the key back), nothing served.
    assert all(kinds == ["share"] for kinds in records_of(net, key_id).values())
    with pytest.raises(KeyUnavailable, match="pending-deletion"):
        net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), material)

    net.time_ms += DEFAULT_MIN_DELETION_WAIT_S * 1000
    net.commit()
    assert records_of(net, key_id) == {i: [] for i in net.executors}
    assert all(ex.stats.keys_erased == 1 for ex in net.executors.values())
    # Neither the database nor its log keeps the erased record's bytes.
    for i, s in sealed.items():
        assert s not in file_bytes(net.keystore_path(i)), f"node {i} kept the sealed share"
    # The other key is untouched and still decrypts.
    ct2 = encrypt(net, other, b"kept")
    c = net.run(net.client.prepare(Decrypt(ct2, CTX), now_ms=net.time_ms), key_material(net, other))
    assert c.done and c.result == b"kept"
    with pytest.raises(KeyUnavailable, match="deleted"):
        net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), material)


def test_a_node_restarted_after_a_deletion_replays_it(net: LocalNetwork, tmp_path: Path) -> None:
    key_id = create(net)
    backup = tmp_path / "node3-backup.db"
    net.backup_keystore(3, backup)  # still holds the share
    schedule(net, key_id)
    net.time_ms += DEFAULT_MIN_DELETION_WAIT_S * 1000
    net.commit()
    assert records_of(net, key_id)[3] == []
    # Node 3 comes back from the backup taken before the deletion: the replayed log erases
    # the share again, so a restore cannot resurrect a deleted key on one node.
    net.restore_keystore(3, backup)
    net.restart(3)
    assert records_of(net, key_id)[3] == []
    net.restart(2)  # an ordinary restart replays the deletion harmlessly
    assert records_of(net, key_id)[2] == []


def test_a_cancelled_deletion_keeps_the_shares(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = encrypt(net, key_id, b"saved")
    schedule(net, key_id)
    c = net.run(net.client.prepare(CancelKeyDeletion(key_id), now_ms=net.time_ms))
    assert c.done and c.result["state"] == "disabled"
    net.time_ms += DEFAULT_MIN_DELETION_WAIT_S * 1000
    net.commit()
    assert all(kinds == ["share"] for kinds in records_of(net, key_id).values())
    assert net.run(net.client.prepare(EnableKey(key_id), now_ms=net.time_ms)).done
    c = net.run(net.client.prepare(Decrypt(ct, CTX), now_ms=net.time_ms), key_material(net, key_id))
    assert c.done and c.result == b"saved"
