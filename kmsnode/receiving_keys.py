"""This node's receiving keys: the hybrid keys its DKG shares are sealed to, one after another.

Every deal stays in the BFT log for good, sealed to each recipient's key. If that key lived
for good too, whoever later held ``t`` nodes' keystores and the log could open old deals and
rebuild keys that were refreshed or deleted since. So under rules v3 each node posts a fresh
receiving key once a session has used its current one, and erases a key's private half as soon
as no open session seals to it: from then on those deals open for no one.

No network I/O (the keystore is its only I/O): ``wanted`` says what to post (the caller posts
it), ``private_for`` finds the key a session needs, ``erase_unused`` forgets the rest.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .crypto.sealing import SealingPrivateKey, SealingPublicKey
from .identity import GENESIS_SEALING_RECORD
from .keystore import Keystore, RecordName
from .state import ReceivingKey
from .wire.payload import ReceivingKeyPayload

log = logging.getLogger(__name__)

REPOST_AFTER = 3.0
"""Seconds before a posted key that has not landed in the log is posted again (the same key)."""
_KIND = "receiving-key"


def receiving_record(public: bytes, seq: int) -> RecordName:
    """Where the private half of receiving key ``public`` (encoded), this node's ``seq``-th,
    lives: named by the key's hash, the number kept so a restart finds a posted key again."""
    return RecordName(_KIND, hashlib.sha256(public).hexdigest()[:32], seq, 0)


@dataclass
class ReceivingKeyStats:
    """Counters for the console and metrics (nothing secret)."""

    keys_posted: int = 0
    keys_erased: int = 0


class ReceivingKeys:
    """See the module docstring."""

    def __init__(
        self,
        node_id: int,
        chain_id: str,
        signing_key: Ed25519PrivateKey,
        genesis_key: SealingPublicKey,
        keystore: Keystore,
    ) -> None:
        self.node_id = node_id
        self.genesis_key = genesis_key
        """This node's sealing key in the genesis: its first receiving key."""
        self.chain_id = chain_id
        self._signing_key = signing_key
        self.keystore = keystore
        self.stats = ReceivingKeyStats()
        self._posted_at = -REPOST_AFTER
        """When the pending key (stored, not yet in the log) was last posted."""
        self._seen: tuple[int, bool, frozenset[bytes]] | None = None
        """The log's view at the last ``tend`` that found nothing to do."""

    def tend(
        self, current: ReceivingKey, in_use: set[bytes], now: float
    ) -> tuple[bytes | None, int]:
        """After a block: the key to post (if any, see ``wanted``) and how many unused keys
        were erased (``erase_unused``). Cheap when nothing changed in the log's view."""
        view = (current.seq, current.used, frozenset(in_use))
        if view == self._seen:
            return None, 0
        post = self.wanted(current, now)
        erased = self.erase_unused(current, in_use)
        self._seen = None if self._pending(current) is not None else view
        return post, erased

    def _records(self) -> list[RecordName]:
        """Every receiving-key record (the genesis sealing key's too, if still held)."""
        names = self.keystore.names(_KIND)
        if GENESIS_SEALING_RECORD in self.keystore.names(GENESIS_SEALING_RECORD.kind):
            names.append(GENESIS_SEALING_RECORD)
        return names

    def _find(self, public: bytes) -> RecordName | None:
        """The record of the encoded key ``public``, if held."""
        if public == self.genesis_key.encode():
            target = GENESIS_SEALING_RECORD
            return target if target in self.keystore.names(target.kind) else None
        digest = hashlib.sha256(public).hexdigest()[:32]
        return next((n for n in self.keystore.names(_KIND) if n.key_id == digest), None)

    def _pending(self, current: ReceivingKey) -> RecordName | None:
        """The key this node made to follow the log's current one and has not seen logged
        (stored before it was first posted, so a restart posts the same key again)."""
        ahead = [n for n in self.keystore.names(_KIND) if n.version > current.seq]
        return max(ahead, key=lambda n: n.version) if ahead else None

    def holds(self, public: SealingPublicKey) -> bool:
        """Whether the private half of ``public`` is in the keystore (without opening it)."""
        return self._find(public.encode()) is not None

    def private_for(self, public: SealingPublicKey) -> SealingPrivateKey | None:
        """The private half of ``public``, if this node still holds it."""
        name = self._find(public.encode())
        if name is None:
            return None
        key = SealingPrivateKey.from_bytes(self.keystore.get(name))
        return key if key.public_key == public else None

    def wanted(self, current: ReceivingKey, now: float) -> bytes | None:
        """A receiving key to post: the pending one again if it has not landed for a while,
        or a new one if the log's current key was used by a session (or its private half is
        not here: a restore from an older backup). A new key is stored durably first."""
        pending = self._pending(current)
        if pending is not None:
            if now - self._posted_at < REPOST_AFTER:
                return None
            key = SealingPrivateKey.from_bytes(self.keystore.get(pending))
            seq = pending.version
        elif not current.used and self.holds(current.public):
            return None
        else:
            key = SealingPrivateKey.generate()
            seq = current.seq + 1
            self.keystore.put(receiving_record(key.public_key.encode(), seq), key.to_bytes())
            self.stats.keys_posted += 1
        self._posted_at = now
        payload = ReceivingKeyPayload(self.node_id, seq, key.public_key.encode())
        return payload.signed(self.chain_id, self._signing_key).encode()

    def erase_unused(self, current: ReceivingKey, in_use: set[bytes]) -> int:
        """Erase every receiving key (the genesis sealing key among them) that is neither the
        log's current one for this node, nor one an open session seals to, nor one made to
        follow it and not yet logged; returns how many. The caller scrubs the keystore file."""
        keep = {n for k in (current.public.encode(), *in_use) if (n := self._find(k))}
        doomed = [n for n in self._records() if n not in keep and n.version <= current.seq]
        if doomed:
            self.keystore.delete_many(doomed)
            self.stats.keys_erased += len(doomed)
            log.info("erased %d receiving key(s) no open session seals to", len(doomed))
        return len(doomed)
