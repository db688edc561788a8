"""Errors raised by the consensus package, one tree rooted at ``ConsensusError``.

::

    ConsensusError
    ├── DecodeError            bytes that are not a valid message (strict decoding failed)
    ├── InvalidMessage         a well-formed message that fails validation
    │   ├── InvalidSignature   a signature that does not verify (opaque on purpose)
    │   └── InvalidCertificate a QC or TC without 2f+1 distinct valid signers for its round
    ├── MempoolError           a payload the mempool will not take
    │   ├── MempoolFull        back-pressure: retry later, or slow down
    │   └── PayloadTooLarge    the payload exceeds the configured per-payload limit
    ├── StorageError           the on-disk state is unusable (wrong chain, corrupt record)
    └── ConfigurationError     a committee or configuration that cannot work

Programmer errors (wrong types, impossible arguments) are ``TypeError``/``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConsensusError",
    "DecodeError",
    "InvalidCertificate",
    "InvalidMessage",
    "InvalidSignature",
    "MempoolError",
    "MempoolFull",
    "PayloadTooLarge",
    "StorageError",
]


class ConsensusError(Exception):
    """Base class of every error this package raises on purpose."""


class DecodeError(ConsensusError):
    """Bytes that do not decode to a valid message; the text says which field and why."""


class InvalidMessage(ConsensusError):
    """A well-formed message that fails a validity check (wrong round, sender, chain...)."""


class InvalidSignature(InvalidMessage):
    """A signature that does not verify. Deliberately says nothing more."""


class InvalidCertificate(InvalidMessage):
    """A QC or TC that does not carry 2f+1 distinct, valid signatures for what it claims."""


class MempoolError(ConsensusError):
    """A payload the mempool refuses."""


class MempoolFull(MempoolError):
    """The mempool is at its size bound: back off and resubmit after some blocks commit.

    Attributes:
        pending: payloads currently waiting.
        limit: the configured bound.
    """

    def __init__(self, pending: int, limit: int) -> None:
        super().__init__(
            f"mempool full ({pending} pending payloads, limit {limit}); "
            "retry after blocks commit or raise mempool_max_payloads"
        )
        self.pending = pending
        self.limit = limit


class PayloadTooLarge(MempoolError):
    """A payload larger than ``Config.max_payload_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class StorageError(ConsensusError):
    """The persistent state cannot be used; the text says what to do."""


class ConfigurationError(ConsensusError):
    """A committee or configuration that cannot work (too few nodes, bad ids, bad limits)."""
