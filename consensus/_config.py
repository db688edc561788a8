"""Replica configuration: committee, identity, limits and timing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._leader import LeaderElection, RoundRobin
from ._pacemaker import Pacemaker
from ._types import ChainId, NodeId
from .errors import ConfigurationError

__all__ = ["Config"]


@dataclass(frozen=True)
class Config:
    """Everything a replica needs to know besides its private key.

    Raises:
        ConfigurationError: from ``__post_init__`` when the values cannot work.
    """

    chain_id: ChainId
    me: NodeId
    public_keys: tuple[bytes, ...]
    leader_election: LeaderElection | None = None
    """Defaults to ``RoundRobin(n)``."""
    pacemaker: Pacemaker = field(default_factory=Pacemaker)
    max_block_payloads: int = 4096
    max_block_bytes: int = 4 * 1024 * 1024
    max_payload_bytes: int = 64 * 1024
    mempool_max_payloads: int = 200_000
    mempool_max_bytes: int = 256 * 1024 * 1024
    dedup_window: int = 200_000
    """How many recently delivered payloads are remembered (whole blocks at a time) to drop
    re-proposed duplicates; they are held in memory, so this bounds memory too."""
    dedup_window_bytes: int = 64 * 1024 * 1024
    """The same window's bound in bytes of memory: payload bytes plus a fixed overhead per
    payload (whichever bound is reached first evicts)."""
    sync_batch: int = 32
    """Most blocks in one ``SyncResponse`` served from the store."""
    sync_retry: float = 0.2
    """Seconds before another ``SyncRequest`` may be sent while one is outstanding."""
    sync_serve_rate: float = 100.0
    """``SyncRequest``s served per second to one peer (a token bucket): each costs a store
    read of up to ``sync_batch`` blocks, so a Byzantine member must not repeat them at will.
    An honest replica catching up asks for one batch at a time; more are dropped (it asks
    again after ``sync_retry``)."""
    sync_serve_burst: int = 16
    """Requests one peer may have served back to back before the rate applies."""
    max_clock_skew_ms: int = 10_000
    """Refuse to vote for a block timestamped further than this in the local future."""
    max_future_rounds: int = 1_000
    """Ignore votes and timeouts for rounds this far ahead (bounds memory under flooding)."""
    broadcast_votes: bool = False
    """Send votes to every replica, not only the next leader: all form the QC and commit one
    message delay sooner, for n times the vote traffic and signature checks (small n)."""
    signature_verifier: Callable[[bytes, bytes, bytes], bool] | None = None
    """``(public_key, message, signature) -> valid``: the Ed25519 check of votes, blocks and
    timeouts; ``None`` is OpenSSL's (``cryptography``). Every replica must use one with the
    same accept set (see ``Committee``)."""

    def __post_init__(self) -> None:
        n = len(self.public_keys)
        if n < 1:
            raise ConfigurationError("the committee is empty")
        if not 0 <= self.me < n:
            raise ConfigurationError(f"node id {self.me} is not in the committee of {n}")
        if self.max_block_payloads < 1 or self.max_block_bytes < self.max_payload_bytes:
            raise ConfigurationError(
                "max_block_payloads must be >= 1 and max_block_bytes >= max_payload_bytes"
            )
        if not self.chain_id:
            raise ConfigurationError("chain_id must not be empty")

    @property
    def leaders(self) -> LeaderElection:
        """The leader election in use."""
        return self.leader_election or RoundRobin(len(self.public_keys))
