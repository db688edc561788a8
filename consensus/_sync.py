"""Verification of catch-up data: a chain of blocks linked and certified by valid QCs."""

from __future__ import annotations

from ._crypto import Committee
from ._events import ServeSync
from ._messages import Block, SyncResponse
from ._storage import Store
from ._types import ChainId
from .errors import InvalidMessage

__all__ = ["check_sync_chain", "serve_sync"]


def serve_sync(store: Store, action: ServeSync) -> SyncResponse | None:
    """Build the response a ``ServeSync`` action asks for from committed blocks in ``store``.

    Each stored block is certified by the next one's QC and the last by its stored QC; when
    the range ends at the block the witness proves committed, the witness is appended so the
    requester can commit too.
    """
    rows = store.committed_range(action.from_height, action.limit)
    if not rows:
        return None
    blocks = [b for b, _ in rows]
    qc = rows[-1][1]
    w = action.witness
    if w is not None and w[0].parent_id == blocks[-1].id and len(blocks) < 1024:
        blocks.append(w[0])
        qc = w[1]
    return SyncResponse(tuple(blocks), qc)


def check_sync_chain(
    parent: Block, resp: SyncResponse, committee: Committee, chain_id: ChainId
) -> None:
    """Return None if ``resp.blocks`` extend ``parent`` as a certified chain, else raise.

    Each block must name the previous one through its QC (same id, same round) at the next
    height; every QC, including the final ``resp.qc`` that certifies the last block, must
    carry a valid quorum. Proposer signatures are not needed: 2f+1 votes vouch for each block.

    Raises:
        InvalidMessage: a broken link or height; InvalidCertificate: a bad QC.
    """
    prev = parent
    for b in resp.blocks:
        if b.parent_id != prev.id or b.qc.round != prev.round or b.height != prev.height + 1:
            raise InvalidMessage("sync chain is not linked")
        if b.round <= prev.round:
            raise InvalidMessage("sync chain rounds do not increase")
        b.qc.verify(committee, chain_id)
        prev = b
    if resp.qc.block_id != prev.id or resp.qc.round != prev.round:
        raise InvalidMessage("sync QC does not certify the last block")
    resp.qc.verify(committee, chain_id)
