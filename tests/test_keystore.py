"""The encrypted keystore: round trips, nothing in the clear, tamper detection, wrong keys."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from kmsnode.errors import KeystoreCorrupted, KeystoreLocked, KeystoreRecordMissing
from kmsnode.keystore import Keystore, RecordName, read_passphrase

PASS = b"correct horse battery staple"
FAST = {"scrypt_log2_n": 10}  # tests only: the default cost is 2^15
SHARE = RecordName("share", "key-1", 1, 0)


def make(tmp_path: Path, node_id: int = 1) -> Keystore:
    return Keystore.create(tmp_path / "ks.db", PASS, node_id, **FAST)


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    secret = os.urandom(32)
    with make(tmp_path) as ks:
        ks.put(SHARE, secret)
        assert ks.get(SHARE) == secret
    with Keystore.open(tmp_path / "ks.db", PASS, 1) as ks:
        assert ks.get(SHARE) == secret
        assert ks.names("share") == [SHARE]
        assert ks.verify_all() == 1


def test_no_secret_in_the_clear_on_disk(tmp_path: Path) -> None:
    secrets_ = [os.urandom(32) for _ in range(20)]
    with make(tmp_path) as ks:
        for i, s in enumerate(secrets_):
            ks.put(RecordName("share", f"k{i}", 1, 0), s)
        # Scan while open too: the WAL file holds the newest pages.
        blobs = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        for s in secrets_:
            assert s not in blobs
            assert s.hex().encode() not in blobs
        assert PASS not in blobs


def test_wrong_passphrase_or_node(tmp_path: Path) -> None:
    make(tmp_path).close()
    with pytest.raises(KeystoreLocked):
        Keystore.open(tmp_path / "ks.db", b"wrong", 1)
    with pytest.raises(KeystoreCorrupted, match="belongs to node 1"):
        Keystore.open(tmp_path / "ks.db", PASS, 2)


def test_flipped_bit_refuses_to_open(tmp_path: Path) -> None:
    with make(tmp_path) as ks:
        ks.put(SHARE, os.urandom(32))
    path = tmp_path / "ks.db"
    db = sqlite3.connect(path)
    (sealed,) = db.execute("SELECT sealed FROM records").fetchone()
    db.close()
    data = bytearray(path.read_bytes())
    pos = data.find(sealed)
    assert pos >= 0, "record not found in the main file after checkpoint"
    data[pos + 20] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(KeystoreCorrupted, match="share/key-1/v1/e0"):
        Keystore.open(path, PASS, 1)


def test_record_moved_to_another_name_does_not_open(tmp_path: Path) -> None:
    with make(tmp_path) as ks:
        ks.put(SHARE, b"s" * 32)
    db = sqlite3.connect(tmp_path / "ks.db")
    db.execute("UPDATE records SET version = 2")
    db.commit()
    db.close()
    with pytest.raises(KeystoreCorrupted):
        Keystore.open(tmp_path / "ks.db", PASS, 1)


def test_take_erases_before_returning(tmp_path: Path) -> None:
    name = RecordName("nonce", "key-1", 1, 7)
    with make(tmp_path) as ks:
        ks.put(name, b"n" * 64)
        assert ks.take(name) == b"n" * 64
        with pytest.raises(KeystoreRecordMissing):
            ks.take(name)
    with Keystore.open(tmp_path / "ks.db", PASS, 1) as ks, pytest.raises(KeystoreRecordMissing):
        ks.get(name)


def test_erased_records_leave_no_bytes_in_the_files(tmp_path: Path) -> None:
    """``delete_many`` + ``scrub``: neither the database nor its write-ahead log keeps the
    sealed bytes of an erased record (old shares, deleted keys), while others stay."""
    names = [RecordName("share", f"key-{i}", 1, 0) for i in range(6)]

    def on_disk() -> bytes:
        wal = tmp_path / "ks.db-wal"
        return (tmp_path / "ks.db").read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    with make(tmp_path) as ks:
        assert ks._db.execute("PRAGMA secure_delete").fetchone()[0] == 1
        ks.put_many([(n, os.urandom(32)) for n in names])
        ks.scrub()  # the records reach the database file itself
        sealed = {
            n.key_id: bytes(
                ks._db.execute("SELECT sealed FROM records WHERE key_id=?", (n.key_id,)).fetchone()[
                    0
                ]
            )
            for n in names
        }
        assert all(s in on_disk() for s in sealed.values())
        assert ks.delete_many([names[1], names[4], RecordName("share", "absent", 1, 0)]) == 2
        assert ks.scrub() is True
        disk = on_disk()
        for n in names:
            assert (sealed[n.key_id] in disk) is (n not in (names[1], names[4])), n.key_id
        assert [n.key_id for n in ks.names()] == ["key-0", "key-2", "key-3", "key-5"]
        assert ks.delete_many([]) == 0


def test_a_scrub_never_waits_for_another_reader_and_succeeds_later(tmp_path: Path) -> None:
    import time

    with make(tmp_path) as ks:
        ks.put_many([(SHARE, os.urandom(32)), (RecordName("share", "key-2", 1, 0), b"y")])
        sealed = bytes(
            ks._db.execute("SELECT sealed FROM records WHERE key_id='key-1'").fetchone()[0]
        )
        reader = sqlite3.connect(tmp_path / "ks.db")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM records").fetchone()  # holds a read snapshot
        ks.delete(SHARE)
        started = time.monotonic()
        assert ks.scrub() is False  # busy: put off, at once
        assert time.monotonic() - started < 1.0
        reader.rollback()
        reader.close()
        assert ks.scrub() is True
        wal = tmp_path / "ks.db-wal"
        disk = (tmp_path / "ks.db").read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert sealed not in disk
        ks.put(SHARE, b"z")  # the usual busy wait is back for other statements
        assert ks._db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_delete_and_missing(tmp_path: Path) -> None:
    with make(tmp_path) as ks:
        ks.put(SHARE, b"x")
        assert ks.delete(SHARE) is True
        assert ks.delete(SHARE) is False
        with pytest.raises(KeystoreRecordMissing, match="share/key-1"):
            ks.get(SHARE)


def test_create_refuses_overwrite_and_open_needs_a_file(tmp_path: Path) -> None:
    make(tmp_path).close()
    with pytest.raises(FileExistsError):
        make(tmp_path)
    with pytest.raises(FileNotFoundError, match="kmsnode init"):
        Keystore.open(tmp_path / "missing.db", PASS, 1)


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ks.db"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(KeystoreCorrupted):
        Keystore.open(path, PASS, 1)


def test_passphrase_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMS_TEST_PASS", "from-env")
    assert read_passphrase(env="KMS_TEST_PASS") == b"from-env"
    f = tmp_path / "pass.txt"
    f.write_text("from-file\n")
    f.chmod(0o644)
    with pytest.raises(KeystoreLocked, match="chmod 600"):  # open to other users: refused
        read_passphrase(file=f)
    f.chmod(0o600)
    assert read_passphrase(file=f) == b"from-file"
    monkeypatch.delenv("KMS_TEST_PASS")
    with pytest.raises(KeystoreLocked, match="KMS_TEST_PASS"):
        read_passphrase(env="KMS_TEST_PASS")
    # An empty file (or one whose first line is empty) is a locked keystore, not a crash.
    for text in ("", "\n", "\nsecond line\n"):
        f.write_text(text)
        with pytest.raises(KeystoreLocked, match=r"pass\.txt"):
            read_passphrase(file=f)


def test_repr_has_no_secret(tmp_path: Path) -> None:
    with make(tmp_path) as ks:
        assert "Keystore(path=" in repr(ks)
        assert PASS.decode() not in repr(ks)


def test_executed_height_mark_is_authenticated(tmp_path: Path) -> None:
    with make(tmp_path) as ks:
        assert ks.executed_height() == 0
        ks.set_executed_height(130)
    path = tmp_path / "ks.db"
    with Keystore.open(path, PASS, 1) as ks:
        assert ks.executed_height() == 130

    def rewrite(value: bytes) -> None:
        db = sqlite3.connect(path)
        with db:
            db.execute("UPDATE meta SET value=? WHERE name='executed_height'", (value,))
        db.close()

    db = sqlite3.connect(path)
    (good,) = db.execute("SELECT value FROM meta WHERE name='executed_height'").fetchone()
    db.close()
    # Another height under the old tag (a restart would skip or repeat executions), a bare
    # number as the mark used to be, and garbage: each is refused by name, never guessed.
    for bad in (b"999" + good[-32:], b"130", b"\xff" * 40, b"-1" + good[-32:], b""):
        rewrite(bad)
        with Keystore.open(path, PASS, 1) as ks, pytest.raises(KeystoreCorrupted, match="mark"):
            ks.executed_height()
    rewrite(good)
    with Keystore.open(path, PASS, 1) as ks:
        assert ks.executed_height() == 130


def test_altered_salt_names_the_metadata_as_a_possible_cause(tmp_path: Path) -> None:
    make(tmp_path).close()
    path = tmp_path / "ks.db"
    db = sqlite3.connect(path)
    (salt,) = db.execute("SELECT value FROM meta WHERE name='salt'").fetchone()
    with db:
        db.execute("UPDATE meta SET value=? WHERE name='salt'", (bytes([salt[0] ^ 1]) + salt[1:],))
    db.close()
    with pytest.raises(KeystoreLocked, match="key-derivation metadata was altered"):
        Keystore.open(path, PASS, 1)


def test_a_new_keystore_is_owner_only(tmp_path: Path) -> None:
    import stat

    with make(tmp_path) as ks:
        ks.put(SHARE, os.urandom(32))
        for name in ("ks.db", "ks.db-wal"):
            path = tmp_path / name
            if path.exists():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_a_log_is_only_replayed_under_the_rules_it_was_written_with(tmp_path: Path) -> None:
    import dataclasses

    from kmsnode.errors import LogRulesMismatch
    from kmsnode.genesis import Genesis
    from kmsnode.identity import NodeIdentity
    from kmsnode.node import check_rules_version
    from kmsnode.state import RULES_VERSION, SUPPORTED_RULES
    from kmsnode.testing import make_genesis

    genesis = make_genesis(
        {i: NodeIdentity.generate() for i in range(1, 5)}, (bytes(32),), f=1, t=2
    )
    fresh = make(tmp_path, 1)
    check_rules_version(genesis, fresh)  # a fresh node records the rules it runs
    assert fresh.rules_version() == RULES_VERSION
    check_rules_version(genesis, fresh)
    # A network whose genesis predates versions (no field: v1), or names newer rules.
    legacy = {k: v for k, v in genesis.to_json().items() if k != "rules_version"}
    with pytest.raises(LogRulesMismatch, match="genesis file says state rules v1") as caught:
        check_rules_version(Genesis.from_json(legacy), fresh)
    assert (caught.value.found, caught.value.supported) == (1, SUPPORTED_RULES)
    with pytest.raises(LogRulesMismatch):
        check_rules_version(dataclasses.replace(genesis, rules_version=RULES_VERSION + 1), fresh)
    # Executed blocks and no mark: written before versions were recorded (v1).
    old = Keystore.create(tmp_path / "old.db", b"pw", 2, scrypt_log2_n=10)
    old.set_executed_height(40)
    with pytest.raises(LogRulesMismatch, match="keystore says state rules v1"):
        check_rules_version(genesis, old)
    newer = Keystore.create(tmp_path / "newer.db", b"pw", 3, scrypt_log2_n=10)
    newer.set_rules_version(RULES_VERSION + 1)
    with pytest.raises(LogRulesMismatch, match=f"v{RULES_VERSION + 1}"):
        check_rules_version(genesis, newer)
    # A network still on v2 rules runs on this software (v3 without key deletion), and each
    # keystore stays with the rules its log was applied under.
    v2 = dataclasses.replace(genesis, rules_version=2)
    on_v2 = Keystore.create(tmp_path / "v2.db", b"pw", 4, scrypt_log2_n=10)
    check_rules_version(v2, on_v2)
    assert on_v2.rules_version() == 2
    with pytest.raises(LogRulesMismatch, match="keystore says state rules v2"):
        check_rules_version(genesis, on_v2)
    # A v2 network's log upgraded in place (``activate_rules``) marks its keystores v3.
    check_rules_version(v2, fresh)
    # The mark is authenticated like the executed height.
    db = fresh._db
    value = bytes(db.execute("SELECT value FROM meta WHERE name='rules_version'").fetchone()[0])
    with db:
        db.execute(
            "UPDATE meta SET value=? WHERE name='rules_version'", (b"1" + value[len(b"2") :],)
        )
    with pytest.raises(KeystoreCorrupted, match="rules-version mark"):
        fresh.rules_version()
