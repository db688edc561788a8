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
from ..wire.payload import NoncePayload

MAX_POOL = 256
"""Unused commitments a node may hold in the log (a batch that would exceed it is refused)."""
STALE_AFTER = 16
"""Heights after its last proposed block at which a node counts as probably down: the log
then picks it as a signer only when it must (it would hold the signature up until the client
gives up on it)."""


class NonceRef(NamedTuple):
    """Where a commitment sits: the node's batch ``seq`` and its position in that batch."""

    seq: int
    position: int


@dataclass
class NodePool:
    """One node's unused commitments, oldest first, and the batch ``seq`` it must post next."""

    next_seq: int = 0
    entries: deque[tuple[NonceRef, bytes]] = field(default_factory=deque)

    def refs(self) -> set[NonceRef]:
        return {ref for ref, _ in self.entries}


class NoncePools:
    """Every node's pool (see the module docstring). Deterministic; no secrets."""

    def __init__(self, chain_id: str, signing_keys: Mapping[int, bytes]) -> None:
        self._chain_id = chain_id
        self._signing_keys = dict(signing_keys)
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
        """Whether ``node`` proposed none of the last ``STALE_AFTER`` committed blocks (never
        before any block names its proposer)."""
        if not self.last_proposed:
            return False
        return height - self.last_proposed.get(node, 0) > STALE_AFTER

    def choose(
        self,
        request_id: bytes,
        candidates: Iterable[int],
        avoid: Iterable[int],
        count: int,
        height: int,
    ) -> list[int] | None:
        """``count`` signers among ``candidates`` with a commitment to spend, or None.

        Nodes that look down (``stale``) come last, and after them, nodes the client asked to
        avoid. Within each group the order is a hash of the request and the node id: it
        spreads the work (and the nonce use) over the nodes, and no party but the log picks
        who signs.
        """
        avoided = set(avoid)

        def rank(node: int) -> tuple[bool, bool, bytes]:
            digest = hashlib.sha256(request_id + node.to_bytes(2, "big")).digest()
            return self.stale(node, height), node in avoided, digest

        ready = sorted((i for i in candidates if self.available(i) > 0), key=rank)
        if len(ready) < count:
            return None
        return sorted(ready[:count])

    def spend(self, node: int) -> tuple[NonceRef, bytes]:
        """Take ``node``'s oldest commitment (it must have one: see ``choose``)."""
        return self.pools[node].entries.popleft()


def logged_commitments(listed: Sequence[bytes]) -> tuple[SigningCommitments[bytes], ...]:
    """A signing package's commitments as the log spent them (each ``id:u16 | D | E``).

    The points are not decoded again (a subgroup check costs ~0.1 ms a point): every honest
    replica checked them when their batch entered the log (``NoncePools.add``), and a package
    reaches a signer from the log, and a client from f + 1 nodes (one of them honest).

    Raises:
        InvalidEncoding: an entry of the wrong size or naming participant 0.
    """
    out = []
    for c in listed:
        if len(c) != 2 + 2 * ED25519.element_size or c[:2] == b"\x00\x00":
            raise InvalidEncoding("a FROST commitment is id:u16 | D | E with id >= 1")
        out.append(SigningCommitments(int.from_bytes(c[:2], "big"), c[2:34], c[34:]))
    return tuple(out)
