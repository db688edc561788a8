"""This node's FROST nonces: made in batches, kept in the keystore, posted to the log, used once.

FROST round one runs ahead of time: the node keeps a pool of nonce commitments in the log
(``kmsnode.state``'s ``NoncePools``), and the nonces themselves only in its keystore, under the
batch sequence number and position the log will give their commitments, named by the
commitment. No network I/O (the keystore is its only I/O): ``wanted`` says which batch to post
(the caller posts it), ``take`` hands a nonce out once.

Security:
- nonces are stored durably before their commitments leave the node, and a nonce is erased
  durably (``Keystore.take``) before the signature share made with it can leave;
- nonces are hedged (RFC 9591 §4.1): fresh randomness and a secret derived from the node's
  signing key, so a broken RNG alone does not repeat one;
- a nonce is only used for the commitment the log spent, checked against its points.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .crypto.frost import FROST_ED25519_SHA512, SigningCommitments, SigningNonces
from .crypto.frost.round1 import nonce_generate
from .crypto.groups import Rng, default_rng
from .errors import KeystoreRecordMissing
from .keystore import Keystore, RecordName
from .state import NodePool, NonceRef
from .wire.payload import MAX_NONCE_BATCH, NoncePayload

log = logging.getLogger(__name__)

BATCH = MAX_NONCE_BATCH
"""Nonces made and posted at a time (one keystore transaction, one log payload)."""
LOW_WATER = BATCH
"""Post a new batch when fewer unused commitments than this are left in the log."""
REPOST_AFTER = 3.0
"""Seconds before a posted batch that has not landed is posted again (the same commitments)."""
_KIND = "frost-nonce"
_SUITE = FROST_ED25519_SHA512
_G = _SUITE.group


def nonce_record(ref: NonceRef, commitment: bytes) -> RecordName:
    """Where the nonce pair of ``commitment``, at ``ref`` in the log, lives in the keystore.

    The name binds the commitment (by hash): nonces made for a batch number that the log
    gave to other commitments (a node catching up from an old backup) never answer for them.
    """
    digest = hashlib.sha256(commitment).hexdigest()[:32]
    return RecordName(_KIND, f"{ref.seq}-{digest}", ref.position, 0)


def _commitment(hiding: int, binding: int) -> bytes:
    """The commitment to a nonce pair as the log carries it: the encodings of ``D`` and ``E``,
    concatenated (``D = d*G``, ``E = e*G``)."""
    return _G.base_mul(hiding) + _G.base_mul(binding)


def _parse(name: RecordName) -> tuple[NonceRef, str] | None:
    """The log position and commitment digest a record name carries (None: not a nonce)."""
    seq, _, digest = name.key_id.partition("-")
    if name.kind != _KIND or not seq.isdigit() or not digest:
        return None
    return NonceRef(int(seq), name.version), digest


@dataclass
class NonceStats:
    """Counters for the console and metrics (nothing secret)."""

    batches_posted: int = 0
    nonces_made: int = 0
    nonces_used: int = 0
    nonces_refused: int = 0
    """Spent commitments this node had no matching nonce for (it signed nothing for them)."""


class NonceSupply:
    """See the module docstring."""

    def __init__(
        self,
        node_id: int,
        chain_id: str,
        signing_key: Ed25519PrivateKey,
        keystore: Keystore,
        rng: Rng = default_rng,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._signing_key = signing_key
        self._keystore = keystore
        self._rng = rng
        self._hedge = _SUITE.h3(b"kmsnode/frost-nonce-hedge" + signing_key.private_bytes_raw())
        self._seen_seq = -1
        self._replace = False
        self._posted: tuple[int, float] | None = None
        """The seq of the batch last posted, and when."""
        self.stats = NonceStats()
        self.missing = 0
        """Commitments of this node in the log whose nonces its keystore lacks, as of the last
        check (a start, and each batch of its own landing); a replacing batch is then due."""

    def wanted(self, pool: NodePool, now: float) -> bytes | None:
        """The batch to post now, if any, given this node's pool as the log holds it after
        a block's effects were all executed (mid-block, a spent nonce not yet used would look
        abandoned).

        A batch is wanted when the pool runs low, or when the log lists commitments whose
        nonces this keystore lacks (a restored backup): that batch replaces them (checked at a
        start and whenever a batch of ours lands). A batch not yet in the log is posted again
        after ``REPOST_AFTER`` seconds; the log takes one batch per sequence number, so a
        repeat is harmless.
        """
        seq = pool.next_seq
        if seq != self._seen_seq:  # a start, or a batch of ours landed
            self._seen_seq = seq
            missing = self.missing = len(pool.entries) - len(self._collect(pool))
            if missing and not self._replace:
                log.warning(
                    "the log lists %d FROST nonce commitments of node %d whose nonces its "
                    "keystore lacks (restored from a backup?): replacing them",
                    missing,
                    self.node_id,
                )
            self._replace = bool(missing)
        if not self._replace and len(pool.entries) >= LOW_WATER:
            return None
        posted = self._posted
        if posted is not None and posted[0] == seq and now - posted[1] < REPOST_AFTER:
            return None
        payload = self._batch(seq)
        self._posted = (seq, now)
        self.stats.batches_posted += 1
        return payload

    def take(self, ref: NonceRef, commitment: bytes) -> SigningNonces[bytes] | None:
        """The nonce pair of the commitment the log spent at ``ref``, erased durably first;
        None (nothing to sign with) when it is missing or does not match ``commitment``."""
        try:
            secret = self._keystore.take(nonce_record(ref, commitment))
        except KeystoreRecordMissing:
            self.stats.nonces_refused += 1
            return None
        hiding, binding = _G.decode_scalar(secret[:32]), _G.decode_scalar(secret[32:])
        if _commitment(hiding, binding) != commitment:
            self.stats.nonces_refused += 1
            log.error("node %d: the nonce at %s does not match its commitment", self.node_id, ref)
            return None
        self.stats.nonces_used += 1
        # The points are the commitment's own, computed just now: valid by construction.
        commitments = SigningCommitments(self.node_id, commitment[:32], commitment[32:])
        return SigningNonces(hiding, binding, commitments)

    # -- internals ---------------------------------------------------------------------------
    def _collect(self, pool: NodePool) -> set[RecordName]:
        """Erase nonces the log will never spend: of batches before ``pool.next_seq`` whose
        commitment is not in the pool (spent, replaced, or made for a batch number the log
        gave to other commitments). Returns the names of the pool's nonces still held."""
        wanted = {nonce_record(ref, c) for ref, c in pool.entries}
        held: set[RecordName] = set()
        for name in self._keystore.names(_KIND):
            parsed = _parse(name)
            if name in wanted:
                held.add(name)
            elif parsed is None or parsed[0].seq < pool.next_seq:
                self._keystore.delete(name)
        return held

    def _batch(self, seq: int) -> bytes:
        """Batch ``seq``: rebuilt from the keystore if its nonces exist (a repost, or after a
        restart), else made now and stored durably before anything is posted."""
        stored = sorted(
            (parsed[0].position, name)
            for name in self._keystore.names(_KIND)
            if (parsed := _parse(name)) is not None and parsed[0].seq == seq
        )
        commitments: list[bytes] = []
        if stored:
            for _, name in stored:
                secret = self._keystore.get(name)
                commitments.append(
                    _commitment(_G.decode_scalar(secret[:32]), _G.decode_scalar(secret[32:]))
                )
        else:
            records: list[tuple[RecordName, bytes]] = []
            for position in range(BATCH):
                hiding = nonce_generate(_SUITE, self._hedge, self._rng)
                binding = nonce_generate(_SUITE, self._hedge, self._rng)
                commitment = _commitment(hiding, binding)
                records.append(
                    (
                        nonce_record(NonceRef(seq, position), commitment),
                        _G.encode_scalar(hiding) + _G.encode_scalar(binding),
                    )
                )
                commitments.append(commitment)
            self._keystore.put_many(records)  # durable before the commitments leave
            self.stats.nonces_made += BATCH
        batch = NoncePayload(self.node_id, seq, self._replace, tuple(commitments))
        return batch.signed(self.chain_id, self._signing_key).encode()
