"""Signature checks a driver can run ahead of the replica, in worker threads.

OpenSSL releases the GIL for part of each Ed25519 verification, so verifying a message's
signatures in a thread before handing it to the (single-threaded) replica puts the second
core to work. The results land in the ``Committee`` cache; the replica still decides
validity itself and only finds cache hits.
"""

from __future__ import annotations

from ._crypto import (
    Committee,
    block_signing_message,
    timeout_signing_message,
    vote_signing_message,
)
from ._messages import Message, Proposal, QuorumCert, SyncResponse, TimeoutCert, TimeoutMsg, Vote
from ._types import ChainId

__all__ = ["prewarm", "signature_count"]


def _qc(committee: Committee, qc: QuorumCert, chain_id: ChainId) -> None:
    if qc.round == 0:
        return
    msg = vote_signing_message(chain_id, qc.round, qc.block_id)
    for signer, sig in qc.signatures:
        committee.verify(signer, msg, sig)


def _tc(committee: Committee, tc: TimeoutCert, chain_id: ChainId) -> None:
    for signer, hqc_round, sig in tc.entries:
        committee.verify(signer, timeout_signing_message(chain_id, tc.round, hqc_round), sig)
    _qc(committee, tc.high_qc, chain_id)


def signature_count(msg: Message) -> int:
    """Roughly how many signatures ``msg`` carries (drivers skip prewarming tiny ones)."""
    if isinstance(msg, Proposal):
        return 1 + len(msg.block.qc.signatures) + (len(msg.tc.entries) if msg.tc else 0)
    if isinstance(msg, TimeoutMsg):
        return 1 + len(msg.high_qc.signatures)
    if isinstance(msg, SyncResponse):
        return sum(len(b.qc.signatures) for b in msg.blocks)
    return 1 if isinstance(msg, Vote) else 0


def prewarm(committee: Committee, msg: Message, chain_id: ChainId) -> None:
    """Verify every signature in ``msg`` into ``committee``'s cache (results unused here)."""
    if isinstance(msg, Proposal):
        b = msg.block
        committee.verify(b.proposer, block_signing_message(b.id), b.signature)
        _qc(committee, b.qc, chain_id)
        if msg.tc is not None:
            _tc(committee, msg.tc, chain_id)
    elif isinstance(msg, Vote):
        committee.verify(
            msg.voter, vote_signing_message(chain_id, msg.round, msg.block_id), msg.signature
        )
    elif isinstance(msg, TimeoutMsg):
        m = timeout_signing_message(chain_id, msg.round, msg.high_qc.round)
        committee.verify(msg.sender, m, msg.signature)
        _qc(committee, msg.high_qc, chain_id)
        if msg.last_tc is not None:
            _tc(committee, msg.last_tc, chain_id)
    elif isinstance(msg, SyncResponse):
        for blk in msg.blocks:
            _qc(committee, blk.qc, chain_id)
        _qc(committee, msg.qc, chain_id)
