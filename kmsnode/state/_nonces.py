"""FROST nonce-commitment pools: the log as FROST's coordinator (DESIGN §7).

Each node posts batches of commitments ``D || E`` to nonces it keeps in its keystore. The log
numbers them (``NonceRef``: batch ``seq``, position) and a committed signing request takes
each chosen signer's oldest one, so every honest node agrees on which commitment signs which
message, and no commitment is ever handed out twice. A signer's nonce is bound to the one
package the log gave it: even a node restored from a backup that still holds a used nonce
can only compute the same share for the same package again, which reveals nothing.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..crypto.errors import CryptoError, InvalidEncoding
from ..crypto.frost import SigningCommitments
from ..crypto.groups import ED25519
from ..wire.payload import NONCE_COMMITMENT_SIZE, NoncePayload

MAX_POOL = 256
"""Unused commitments a node may hold in the log (a batch that would exceed it is refused)."""
STALE_ROUNDS = 4
"""Leader turns (n heights each) after its last proposed block at which a node counts as
probably down: the log then picks it as a signer only when it must (it would hold the
signature up until the client gives up on it)."""
PACKAGE_ENTRY_SIZE = 2 + NONCE_COMMITMENT_SIZE


class NonceRef(NamedTuple):
    """Where a commitment sits: the node's batch ``seq`` and its position in that batch."""

    seq: int
    position: int


@dataclass
class NodePool:
    """One node's unused commitments, oldest first, and the batch ``seq`` it must post next."""

    next_seq: int = 0
    entries: deque[tuple[NonceRef, bytes]] = field(default_factory=deque)


class NoncePools:
    """Every node's pool (see the module docstring). Deterministic; no secrets."""

    def __init__(self, chain_id: str, signing_keys: Mapping[int, bytes]) -> None:
        self._chain_id = chain_id
        self._signing_keys = dict(signing_keys)
        self.stale_after = STALE_ROUNDS * len(signing_keys)
        """Heights without a block of its own after which a node looks down."""
        self.pools: dict[int, NodePool] = {i: NodePool() for i in signing_keys}
        self.rejected_batches = 0
        self.last_proposed: dict[int, int] = {}
        """Node -> the height of the last committed block it proposed."""

    def pool(self, node: int) -> NodePool:
        """``node``'s pool (empty for a node outside the committee)."""
        return self.pools.get(node) or NodePool()

    def available(self, node: int) -> int:
        """Unused commitments ``node`` holds in the log."""
        pool = self.pools.get(node)
        return len(pool.entries) if pool is not None else 0

    def add(self, batch: NoncePayload) -> bool:
        """Take a committed batch; returns whether it was accepted.

        Refused (every node alike): a node outside the committee, a wrong signature, a batch
        out of sequence (a replayed or superseded one), a pool overflow, or a commitment that
        is not two valid non-identity points.
        """
        pool = self.pools.get(batch.node)
        if pool is None or batch.seq != pool.next_seq:
            self.rejected_batches += 1
            return False
        try:
            batch.verify(self._chain_id, self._signing_keys[batch.node])
            for c in batch.commitments:
                ED25519.decode(c[:32])
                ED25519.decode(c[32:])
        except CryptoError:
            self.rejected_batches += 1
            return False
        kept = 0 if batch.replace else len(pool.entries)
        if kept + len(batch.commitments) > MAX_POOL:
            self.rejected_batches += 1
            return False
        if batch.replace:
            pool.entries.clear()
        pool.entries.extend((NonceRef(batch.seq, i), c) for i, c in enumerate(batch.commitments))
        pool.next_seq += 1
        return True

    def proposed(self, node: int, height: int) -> None:
        """``node`` proposed the block committed at ``height``."""
        self.last_proposed[node] = height

    def stale(self, node: int, height: int) -> bool:
        """Whether ``node`` proposed none of the last ``stale_after`` committed blocks (never
        before any block names its proposer)."""
        if not self.last_proposed:
            return False
        return height - self.last_proposed.get(node, 0) > self.stale_after

    def choose(
        self,
        request_id: bytes,
        candidates: Iterable[int],
        avoid: Iterable[int],
        count: int,
        height: int,
        *,
        avoid_first: bool = True,
    ) -> list[int] | None:
        """``count`` signers among ``candidates`` with a commitment to spend, or None.

        The order: nodes the client did not ask to avoid and that look up (not ``stale``);
        then those not avoided but stale; then avoided ones, likewise. A client names a node
        it just saw fail, the freshest evidence there is; staleness only says a node proposed
        no block lately, which a node back from a restart cannot do while the log is quiet.
        (``avoid_first=False``: rules v2's order, staleness first.) Within each group the
        order is a hash of the request and the node id: it spreads the work (and the nonce
        use) over the nodes, and no party but the log picks who signs.
        """
        avoided = set(avoid)

        def rank(node: int) -> tuple[bool, bool, bytes]:
            digest = hashlib.sha256(request_id + node.to_bytes(2, "big")).digest()
            stale = self.stale(node, height)
            if avoid_first:
                return node in avoided, stale, digest
            return stale, node in avoided, digest

        ready = sorted((i for i in candidates if self.available(i) > 0), key=rank)
        if len(ready) < count:
            return None
        return sorted(ready[:count])

    def spend(self, node: int) -> tuple[NonceRef, bytes]:
        """Take ``node``'s oldest commitment (it must have one: see ``choose``)."""
        return self.pools[node].entries.popleft()


def package_entry(signer: int, commitment: bytes) -> bytes:
    """One signer's line of a signing package as the log states it: ``id:u16 | D | E``."""
    return signer.to_bytes(2, "big") + commitment


def entry_signer(entry: bytes) -> int:
    """The signer a package line names."""
    return int.from_bytes(entry[:2], "big")


def logged_commitments(listed: Sequence[bytes]) -> tuple[SigningCommitments[bytes], ...]:
    """A signing package's commitments as the log spent them (``package_entry`` lines).

    The points are not decoded again (a subgroup check costs ~0.1 ms a point): every honest
    replica checked them when their batch entered the log (``NoncePools.add``), and a package
    reaches a signer from the log, and a client from f + 1 nodes (one of them honest).

    Raises:
        InvalidEncoding: a line of the wrong size or naming participant 0.
    """
    out = []
    for c in listed:
        if len(c) != PACKAGE_ENTRY_SIZE or entry_signer(c) == 0:
            raise InvalidEncoding("a FROST package line is id:u16 | D | E with id >= 1")
        out.append(SigningCommitments(entry_signer(c), c[2:34], c[34:]))
    return tuple(out)
