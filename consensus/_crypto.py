"""Ed25519 identities of the committee: signing, verification with a cache, signed messages.

Every signature is over a domain-separated message that binds the chain id, so a vote or a
timeout can never be replayed on another chain or read as another kind of message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._codec import pack
from ._types import BlockId, ChainId, NodeId, Round
from .errors import ConfigurationError

__all__ = [
    "Committee",
    "Signer",
    "block_signing_message",
    "timeout_signing_message",
    "vote_signing_message",
]

SIGNATURE_BYTES = 64
_VERIFY_CACHE_LIMIT = 8_192
"""Verified signatures remembered (oldest evicted first). The cache only has to span a few
rounds: a QC's signatures were checked as votes moments before, and the driver's thread
prewarm checks a message just before the replica does. At ~270 bytes an entry, 200,000 of
them (the old bound, cleared all at once when reached) held ~50 MB per replica between
clears, which a 20-minute soak showed as steady RSS growth."""


def vote_signing_message(chain_id: ChainId, round: Round, block_id: BlockId) -> bytes:
    """The bytes a vote (and so a QC) signs: binds chain, round and block."""
    return pack(["consensus/vote/v1", chain_id, round, block_id])


def timeout_signing_message(chain_id: ChainId, round: Round, high_qc_round: Round) -> bytes:
    """The bytes a timeout (and so a TC) signs: binds chain, round and the high QC round."""
    return pack(["consensus/timeout/v1", chain_id, round, high_qc_round])


def block_signing_message(block_id: BlockId) -> bytes:
    """The bytes a proposer signs; the block id already binds the chain id."""
    return b"consensus/proposal/v1" + block_id


class Signer:
    """A replica's private signing key. Security: ``repr`` never shows the key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def from_seed(cls, seed: bytes) -> Signer:
        """Derive a key from 32 bytes of seed (tests and benchmarks use fixed seeds)."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    @classmethod
    def generate(cls) -> Signer:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (Ed25519 is deterministic: same message, same signature)."""
        return self._key.sign(message)

    def public_key(self) -> bytes:
        """The 32-byte raw public key."""
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def __repr__(self) -> str:
        return "Signer(<redacted>)"


class Committee:
    """The replicas' public keys in id order, quorum arithmetic and signature verification.

    Verification results are cached per (signer, message, signature) so a QC seen again (in a
    proposal, a timeout, a TC) costs dictionary look-ups, not Ed25519 verifications. Each
    replica owns its own ``Committee`` so the cache is never shared between replicas.

    ``verifier(public_key, message, signature) -> bool`` replaces OpenSSL's check (the node
    plugs in libsodium's, twice as fast here); every replica of a committee must use one with
    the same accept set, or a crafted signature could be a valid vote to some and not others.
    """

    def __init__(
        self,
        public_keys: Sequence[bytes],
        verifier: Callable[[bytes, bytes, bytes], bool] | None = None,
    ) -> None:
        n = len(public_keys)
        if n < 1:
            raise ConfigurationError("a committee needs at least one member")
        if len(set(public_keys)) != n:
            raise ConfigurationError("committee public keys must be distinct")
        self.public_keys: tuple[bytes, ...] = tuple(public_keys)
        self._keys = [Ed25519PublicKey.from_public_bytes(k) for k in public_keys]
        self._verifier = verifier
        self._verified: dict[tuple[int, bytes, bytes], None] = {}  # insertion-ordered
        self.verifications = 0
        """Ed25519 verifications actually performed (cache misses); for statistics."""

    @property
    def n(self) -> int:
        """Committee size."""
        return len(self._keys)

    @property
    def f(self) -> int:
        """Byzantine replicas tolerated: the largest f with n >= 3f + 1."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """Signatures a certificate needs: n - f (= 2f + 1 when n = 3f + 1)."""
        return self.n - self.f

    def members(self) -> range:
        """All node ids."""
        return range(self.n)

    def is_member(self, node: int) -> bool:
        """Whether ``node`` is a valid id in this committee."""
        return type(node) is int and 0 <= node < self.n

    def remember(self, signer: NodeId, message: bytes, signature: bytes) -> None:
        """Record a signature as valid without checking it: only for one this replica just
        made itself (its vote comes back inside the next QC; no need to verify it then)."""
        self._verified[(signer, message, signature)] = None
        if len(self._verified) > _VERIFY_CACHE_LIMIT:
            del self._verified[next(iter(self._verified))]

    def verify(self, signer: NodeId, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is ``signer``'s valid signature over ``message``."""
        if not self.is_member(signer) or len(signature) != SIGNATURE_BYTES:
            return False
        key = (signer, message, signature)
        if key in self._verified:
            return True
        self.verifications += 1
        if self._verifier is not None:
            if not self._verifier(self.public_keys[signer], message, signature):
                return False
        else:
            try:
                self._keys[signer].verify(signature, message)
            except _CryptoInvalidSignature:
                return False
        self.remember(signer, message, signature)
        return True
