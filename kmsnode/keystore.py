"""The node-local secret store: SQLite, every record AES-256-GCM under a passphrase-derived key.

Shares, nonces and identity keys live only here (never in the replicated state). Each record is
sealed with AES-256-GCM under a key derived by scrypt from the operator's passphrase, with AAD
binding the node id and the record's full name (kind, key id, version, epoch), so a record
copied to another name, node or keystore does not open. Writes are transactions in WAL mode
with ``synchronous=FULL`` (durable when ``put`` returns). Opening checks the passphrase and
authenticates every record: a flipped bit makes the node refuse to start, naming the record.

Security: no secret value, passphrase or derived key is ever logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .crypto.encoding import transcript
from .errors import KeystoreCorrupted, KeystoreLocked, KeystoreRecordMissing

FORMAT = b"kmsnode/keystore/v1"
PASSPHRASE_ENV = "KMSNODE_PASSPHRASE"
DEFAULT_SCRYPT_LOG2_N = 15  # 32 MiB, about 0.1 s: once per start
_CHECK = b"kmsnode keystore passphrase check"
_NONCE = 12

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key_id TEXT NOT NULL, version INTEGER NOT NULL, epoch INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (kind, key_id, version, epoch)
);
"""


@dataclass(frozen=True, order=True)
class RecordName:
    """Where a secret lives: its kind (share, nonce, identity, ...), key id, version, epoch."""

    kind: str
    key_id: str
    version: int = 0
    epoch: int = 0

    def aad(self, node_id: int) -> bytes:
        return transcript(
            FORMAT,
            str(node_id).encode(),
            self.kind.encode(),
            self.key_id.encode(),
            str(self.version).encode(),
            str(self.epoch).encode(),
        )


def read_passphrase(
    *, env: str = PASSPHRASE_ENV, file: str | os.PathLike[str] | None = None
) -> bytes:
    """The operator's passphrase from a file (first line) or an environment variable.

    Raises:
        KeystoreLocked: neither is set, the passphrase is empty, or the file is readable or
            writable by other users (as ssh refuses such a key file).
    """
    if file is not None:
        path = Path(file)
        lines: list[str] = []
        if path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise KeystoreLocked(
                    f"the passphrase file {file} is open to other users (mode {mode:o}): "
                    f"make it owner-only (chmod 600)"
                )
            lines = path.read_text(encoding="utf-8").splitlines()
        value = lines[0] if lines else ""
    else:
        value = os.environ.get(env, "")
    if not value:
        where = f"the file {file}" if file is not None else f"the environment variable {env}"
        raise KeystoreLocked(f"no keystore passphrase: set {where}")
    return value.encode("utf-8")


class Keystore:
    """An open keystore; use ``Keystore.create`` once, then ``Keystore.open`` at every start."""

    def __init__(self, db: sqlite3.Connection, node_id: int, key: bytes, path: Path) -> None:
        self._db = db
        self._aead = AESGCM(key)
        # Authenticates the keystore's mutable metadata (the executed-height mark): a key of
        # its own, derived from the record key, so no value is ever used under both.
        self._mac_key = hmac.new(key, transcript(FORMAT, b"metadata mac"), hashlib.sha256).digest()
        self.node_id = node_id
        self.path = path

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: bytes,
        node_id: int,
        *,
        scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N,
    ) -> Keystore:
        """Create a new, empty keystore file (refuses to overwrite an existing one).

        Raises:
            FileExistsError: the file exists.
        """
        p = Path(path)
        if p.exists():
            raise FileExistsError(f"keystore {p} already exists; refusing to overwrite it")
        if not passphrase:
            raise KeystoreLocked("an empty passphrase is not allowed")
        salt = os.urandom(16)
        key = _derive(passphrase, salt, scrypt_log2_n)
        # Created owner-only before SQLite opens it (its -wal and -shm files copy the mode).
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        db = _connect(p)
        aead = AESGCM(key)
        nonce = os.urandom(_NONCE)
        check = nonce + aead.encrypt(nonce, _CHECK, transcript(FORMAT, str(node_id).encode()))
        with db:
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [
                    ("format", FORMAT),
                    ("node_id", str(node_id).encode()),
                    ("salt", salt),
                    ("scrypt_log2_n", str(scrypt_log2_n).encode()),
                    ("check", check),
                ],
            )
        return cls(db, node_id, key, p)

    @classmethod
    def open(cls, path: str | os.PathLike[str], passphrase: bytes, node_id: int) -> Keystore:
        """Open a keystore, check the passphrase, and authenticate every record.

        Raises:
            FileNotFoundError: no keystore at ``path`` (run ``kmsnode init`` first).
            KeystoreLocked: wrong passphrase.
            KeystoreCorrupted: the file or a record fails authentication, or belongs to another
                node; the message names the record.
        """
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no keystore at {p}; create one with `kmsnode init`")
        try:
            db = _connect(p)
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise KeystoreCorrupted(f"keystore {p} is not a readable database ({exc})") from exc
        try:
            if meta.get("format") != FORMAT:
                raise KeystoreCorrupted(f"keystore {p} has an unknown format")
            if int(meta["node_id"]) != node_id:
                raise KeystoreCorrupted(
                    f"keystore {p} belongs to node {int(meta['node_id'])}, not node {node_id}"
                )
            key = _derive(passphrase, meta["salt"], int(meta["scrypt_log2_n"]))
            check = meta["check"]
        except (KeyError, ValueError) as exc:
            raise KeystoreCorrupted(f"keystore {p} has damaged metadata") from exc
        try:
            AESGCM(key).decrypt(
                check[:_NONCE], check[_NONCE:], transcript(FORMAT, str(node_id).encode())
            )
        except InvalidTag as exc:
            # The check value opens only under the key that the passphrase, salt and cost
            # derive: a wrong passphrase and altered derivation metadata look the same here.
            raise KeystoreLocked(
                f"wrong passphrase for keystore {p} (or its key-derivation metadata was altered)"
            ) from exc
        store = cls(db, node_id, key, p)
        store.verify_all()
        return store

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Keystore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Keystore(path={str(self.path)!r}, node_id={self.node_id})"

    # -- records -----------------------------------------------------------------------------
    def put(self, name: RecordName, secret: bytes) -> None:
        """Store (or replace) a secret atomically and durably."""
        self.put_many([(name, secret)])

    def put_many(self, records: list[tuple[RecordName, bytes]]) -> None:
        """Store several secrets in one transaction (one fsync): all of them or none."""
        rows = []
        for name, secret in records:
            nonce = os.urandom(_NONCE)
            sealed = nonce + self._aead.encrypt(nonce, bytes(secret), name.aad(self.node_id))
            rows.append((name.kind, name.key_id, name.version, name.epoch, sealed))
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO records (kind, key_id, version, epoch, sealed) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def get(self, name: RecordName) -> bytes:
        """Read and authenticate one secret.

        Raises:
            KeystoreRecordMissing: no such record.
            KeystoreCorrupted: the record fails authentication.
        """
        row = self._db.execute(f"SELECT sealed FROM records WHERE {_WHERE}", _key(name)).fetchone()
        if row is None:
            raise KeystoreRecordMissing(f"no keystore record {_describe(name)}")
        return self._open(name, row[0])

    def delete(self, name: RecordName) -> bool:
        """Erase a secret durably; returns whether it existed."""
        return self.delete_many([name]) > 0

    def delete_many(self, names: list[RecordName]) -> int:
        """Erase several secrets in one transaction (one fsync); returns how many existed.

        The database overwrites deleted records with zeros (``secure_delete``); ``scrub``
        also clears the write-ahead log of their earlier copies.
        """
        with self._db:
            cur = self._db.executemany(
                f"DELETE FROM records WHERE {_WHERE}", [_key(n) for n in names]
            )
        return max(cur.rowcount, 0)

    def scrub(self) -> bool:
        """Checkpoint the write-ahead log into the database and truncate it, so no earlier
        copy of an erased record stays in either file (after a key deletion or a refresh).

        What the filesystem or the disk keeps of truncated blocks is beyond a file's reach:
        whole-disk encryption covers that. Returns False if another reader of the file kept
        the log from being truncated (it is then truncated at a later checkpoint).
        """
        # Never wait for another reader (a backup, an operator's tool): the node's event loop
        # runs this. A busy file is scrubbed on a later try (``Executor.retry_scrub``).
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:  # locked: same as busy
            busy = 1
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return not busy

    def take(self, name: RecordName) -> bytes:
        """Read a single-use secret and erase it durably *before* returning it.

        Security: for FROST nonces: once ``take`` returns, a crash cannot bring the nonce
        back, so it can never sign twice.
        """
        with self._db:
            row = self._db.execute(
                f"SELECT sealed FROM records WHERE {_WHERE}", _key(name)
            ).fetchone()
            if row is None:
                raise KeystoreRecordMissing(f"no keystore record {_describe(name)}")
            secret = self._open(name, row[0])
            self._db.execute(f"DELETE FROM records WHERE {_WHERE}", _key(name))
        return secret

    def names(self, kind: str | None = None) -> list[RecordName]:
        """The names of all records (of one kind), sorted."""
        query = "SELECT kind, key_id, version, epoch FROM records"
        rows = (
            self._db.execute(query + " WHERE kind=?", (kind,)).fetchall()
            if kind is not None
            else self._db.execute(query).fetchall()
        )
        return sorted(RecordName(*row) for row in rows)

    def verify_all(self) -> int:
        """Authenticate every record; returns how many.

        Raises:
            KeystoreCorrupted: names the first record that fails.
        """
        count = 0
        for row in self._iter_rows():
            name = RecordName(*row[:4])
            self._open(name, row[4])
            count += 1
        return count

    def executed_height(self) -> int:
        """The last log height whose effects this node executed (0 for none).

        Raises:
            KeystoreCorrupted: the mark was altered (its MAC fails) or is malformed: a changed
                mark would make a restart skip or repeat executions, so it is not guessed.
        """
        return self._read_mark("executed_height", "executed-height") or 0

    def set_executed_height(self, height: int) -> None:
        """Record, durably, that the effects of every height up to ``height`` were executed.

        Written in the same database as the shares, so a share stored by a block's DKG and the
        mark that the block was executed cannot disagree after a crash by more than one block.
        """
        self._write_mark("executed_height", height)

    def rules_version(self) -> int | None:
        """The state-machine rules version this node's log is applied under (None: not yet
        recorded, a fresh node or one from before versions were recorded).

        Raises:
            KeystoreCorrupted: the mark was altered or is malformed.
        """
        return self._read_mark("rules_version", "rules-version")

    def set_rules_version(self, version: int) -> None:
        """Record, durably, the rules version the log is applied under."""
        self._write_mark("rules_version", version)

    def _read_mark(self, name: str, label: str) -> int | None:
        """A MAC'd integer in the metadata (None: absent)."""
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        value = bytes(row[0])
        digits, tag = value[:-32], value[-32:]
        if not digits.isdigit():
            raise KeystoreCorrupted(f"keystore {self.path}: damaged {label} mark")
        if not hmac.compare_digest(tag, self._mark_mac(name, digits)):
            raise KeystoreCorrupted(f"keystore {self.path}: {label} mark was altered")
        return int(digits)

    def _write_mark(self, name: str, value: int) -> None:
        digits = str(value).encode()
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                (name, digits + self._mark_mac(name, digits)),
            )

    def _mark_mac(self, name: str, digits: bytes) -> bytes:
        msg = transcript(FORMAT, name.encode(), str(self.node_id).encode(), digits)
        return hmac.new(self._mac_key, msg, hashlib.sha256).digest()

    def _iter_rows(self) -> Iterator[tuple[str, str, int, int, bytes]]:
        try:
            with closing(
                self._db.execute("SELECT kind, key_id, version, epoch, sealed FROM records")
            ) as cur:
                yield from cur
        except sqlite3.DatabaseError as exc:
            raise KeystoreCorrupted(f"keystore {self.path} is damaged ({exc})") from exc

    def _open(self, name: RecordName, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], name.aad(self.node_id))
        except (InvalidTag, ValueError) as exc:
            raise KeystoreCorrupted(
                f"keystore record {_describe(name)} in {self.path} failed authentication: "
                "the file was modified or damaged; restore it from a backup"
            ) from exc


_WHERE = "kind=? AND key_id=? AND version=? AND epoch=?"


def _key(name: RecordName) -> tuple[str, str, int, int]:
    return (name.kind, name.key_id, name.version, name.epoch)


def _describe(name: RecordName) -> str:
    return f"{name.kind}/{name.key_id}/v{name.version}/e{name.epoch}"


def _derive(passphrase: bytes, salt: bytes, log2_n: int) -> bytes:
    if not 10 <= log2_n <= 22:
        raise ValueError("scrypt cost out of range")
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=8, p=1).derive(passphrase)


_BUSY_TIMEOUT_MS = 5000
"""How long a keystore statement waits for another reader of the file (sqlite3's default)."""


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(
        path,
        isolation_level="DEFERRED",
        check_same_thread=False,
        timeout=_BUSY_TIMEOUT_MS / 1000,
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    # Deleted records (old shares, spent nonces) are overwritten with zeros, not just unlinked,
    # and the write-ahead log is cut back to nothing after each checkpoint (not left holding
    # old copies of pages until they happen to be overwritten).
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA journal_size_limit=0")
    db.executescript(_SCHEMA)
    return db
