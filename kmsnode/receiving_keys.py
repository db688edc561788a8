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
from .errors import KeystoreRecordMissing
from .identity import GENESIS_SEALING_RECORD
from .keystore import Keystore, RecordName
from .state import ReceivingKey
from .wire.payload import ReceivingKeyPayload

log = logging.getLogger(__name__)

REPOST_AFTER = 3.0
"""Seconds before a posted key that has not landed in the log is posted again (the same key)."""
_KIND = "receiving-key"


def receiving_record(public: bytes) -> RecordName:
    """Where the private half of receiving key ``public`` (encoded) lives, named by its hash."""
    return RecordName(_KIND, hashlib.sha256(public).hexdigest()[:32])


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
        self._posted: tuple[ReceivingKeyPayload, float] | None = None
        """The last key posted and when (reposted until the log shows it)."""
        self._seen: tuple[int, bool, frozenset[bytes]] | None = None
        """The log's view at the last ``tend`` that found nothing to do."""

    def tend(
        self, current: ReceivingKey, in_use: set[bytes], now: float
    ) -> tuple[bytes | None, int]:
        """After a block: the key to post (if any, see ``wanted``) and how many unused keys
        were erased (``erase_unused``). Cheap when nothing changed in the log's view."""
        view = (current.seq, current.used, frozenset(in_use))
        posting = self._posted is not None and self._posted[0].seq > current.seq
        if view == self._seen and not posting:
            return None, 0
        post = self.wanted(current, now)
        erased = self.erase_unused(current, in_use)
        still_posting = self._posted is not None and self._posted[0].seq > current.seq
        self._seen = None if still_posting else view
        return post, erased

    def _name(self, public: bytes) -> RecordName:
        """Where the private half of the encoded key ``public`` lives."""
        if public == self.genesis_key.encode():
            return GENESIS_SEALING_RECORD
        return receiving_record(public)

    def holds(self, public: SealingPublicKey) -> bool:
        """Whether the private half of ``public`` is in the keystore (without opening it)."""
        name = self._name(public.encode())
        return name in self.keystore.names(name.kind)

    def private_for(self, public: SealingPublicKey) -> SealingPrivateKey | None:
        """The private half of ``public``, if this node still holds it."""
        try:
            key = SealingPrivateKey.from_bytes(self.keystore.get(self._name(public.encode())))
        except KeystoreRecordMissing:
            return None
        return key if key.public_key == public else None

    def wanted(self, current: ReceivingKey, now: float) -> bytes | None:
        """A receiving key to post, if the log's current one for this node was used by a
        session (or its private half is not here: a restore from an older backup), and none
        posted lately is on its way. The new key is stored durably before it is returned."""
        if self._posted is not None and self._posted[0].seq > current.seq:
            payload, at = self._posted
            if now - at < REPOST_AFTER:
                return None
            self._posted = (payload, now)
            return payload.encode()  # lost (a restart of the leader, a full mempool): again
        if not current.used and self.holds(current.public):
            return None
        fresh = SealingPrivateKey.generate()
        self.keystore.put(receiving_record(fresh.public_key.encode()), fresh.to_bytes())
        payload = ReceivingKeyPayload(
            self.node_id, current.seq + 1, fresh.public_key.encode()
        ).signed(self.chain_id, self._signing_key)
        self._posted = (payload, now)
        self.stats.keys_posted += 1
        return payload.encode()

    def erase_unused(self, current: ReceivingKey, in_use: set[bytes]) -> int:
        """Erase every receiving key (the genesis sealing key among them) that is neither the
        log's current one for this node, nor one an open session seals to, nor one posted and
        not yet in the log; returns how many. The caller scrubs the keystore file."""
        keep = {self._name(current.public.encode())} | {self._name(k) for k in in_use}
        if self._posted is not None and self._posted[0].seq > current.seq:
            keep.add(receiving_record(self._posted[0].public_key))
        held = set(self.keystore.names(_KIND))
        if GENESIS_SEALING_RECORD in self.keystore.names(GENESIS_SEALING_RECORD.kind):
            held.add(GENESIS_SEALING_RECORD)
        doomed = sorted(held - keep)
        if doomed:
            self.keystore.delete_many(doomed)
            self.stats.keys_erased += len(doomed)
            log.info("erased %d receiving key(s) no open session seals to", len(doomed))
        return len(doomed)
