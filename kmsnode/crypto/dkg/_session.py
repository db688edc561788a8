"""What a DKG, refresh or reshare session is: its parameters, committees and deadlines.

A ``Session`` is opened by a committed request (DESIGN §4.6) and is identical on every node;
its ``session_id`` (a hash of every field) is carried and signed in every message, so no
message can be replayed into another session, key, version or epoch.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..encoding import transcript, u16
from ..errors import InvalidParameters
from ..groups import Group
from ..sealing import SealingPublicKey
from ..shamir import validate_ids, validate_threshold

E = TypeVar("E")

_SESSION_DST = b"kmsnode/dkg/session/v1"


class Kind(enum.Enum):
    """Which protocol a session runs."""

    DKG = "dkg"
    """A fresh key: every dealer shares a random secret."""
    REFRESH = "refresh"
    """Proactive refresh: every dealer shares zero; same key, same committee, next epoch."""
    RESHARE = "reshare"
    """Committee or threshold change: the old committee shares its shares to a new one."""


@dataclass(frozen=True)
class Member:
    """A committee member's public identity: message-signing key and share-sealing key."""

    signing_key: bytes
    """Raw 32-byte Ed25519 public key; every message this member sends is signed with it."""
    sealing_key: SealingPublicKey | None = None
    """Hybrid key the member's shares are sealed to (needed for recipients only)."""

    def __post_init__(self) -> None:
        if not isinstance(self.signing_key, bytes) or len(self.signing_key) != 32:
            raise InvalidParameters("a member's signing key is a raw 32-byte Ed25519 key")
        # Parse once so a bad key is reported where the session is built, not mid-protocol.
        Ed25519PublicKey.from_public_bytes(self.signing_key)


@dataclass(frozen=True)
class Previous(Generic[E]):
    """The key as it stands before a refresh or reshare: who holds it and how it verifies."""

    committee: Mapping[int, Member]
    threshold: int
    public_key: E
    verification_keys: Mapping[int, E]
    epoch: int

    def ids(self) -> tuple[int, ...]:
        """The old committee's ids, sorted."""
        return tuple(sorted(self.committee))


@dataclass(frozen=True)
class Session(Generic[E]):
    """One run of DKG, refresh or reshare; identical on every node, hashed into ``session_id``.

    ``committee`` is the committee that *receives* shares (for a reshare, the new one); the
    dealers are the same committee, except for a reshare, where they are ``previous.committee``.
    Deadlines are log heights: deals are accepted up to ``deal_deadline``, complaints up to
    ``complaint_deadline``, justifications up to ``justification_deadline``.
    """

    key_id: str
    version: int
    epoch: int
    group: Group[E]
    kind: Kind
    committee: Mapping[int, Member]
    threshold: int
    deal_deadline: int
    complaint_deadline: int
    justification_deadline: int
    previous: Previous[E] | None = None
    session_id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        group = self.group
        validate_ids(self.committee, group.order)
        validate_threshold(len(self.committee), self.threshold)
        if not 0 <= self.version < 2**32 or not 0 <= self.epoch < 2**32:
            raise InvalidParameters("version and epoch must be integers in [0, 2^32)")
        if not 0 <= self.deal_deadline < self.complaint_deadline < self.justification_deadline:
            raise InvalidParameters(
                "deadlines must satisfy 0 <= deal < complaint < justification heights"
            )
        for i, member in self.committee.items():
            if member.sealing_key is None:
                raise InvalidParameters(f"committee member {i} has no sealing key")
        prev = self.previous
        if self.kind is Kind.DKG:
            if prev is not None:
                raise InvalidParameters("a fresh DKG has no previous key")
        else:
            if prev is None:
                raise InvalidParameters(f"a {self.kind.value} needs the previous key")
            validate_ids(prev.committee, group.order)
            validate_threshold(len(prev.committee), prev.threshold)
            if set(prev.verification_keys) != set(prev.committee):
                raise InvalidParameters("previous verification keys must cover the old committee")
            if self.epoch <= prev.epoch:
                raise InvalidParameters(
                    f"a {self.kind.value} must advance the epoch past {prev.epoch}"
                )
        if self.kind is Kind.REFRESH:
            assert prev is not None
            if set(prev.committee) != set(self.committee) or prev.threshold != self.threshold:
                raise InvalidParameters(
                    "a refresh keeps the committee and threshold; use a reshare to change them"
                )
        object.__setattr__(self, "session_id", self._compute_id())

    @property
    def dealers(self) -> Mapping[int, Member]:
        """Who deals: the committee, or the old committee for a reshare."""
        if self.kind is Kind.RESHARE:
            assert self.previous is not None
            return self.previous.committee
        return self.committee

    @property
    def dealer_threshold(self) -> int:
        """How many qualified dealers the session needs to succeed."""
        if self.kind is Kind.RESHARE:
            assert self.previous is not None
            return self.previous.threshold
        return self.threshold

    def _compute_id(self) -> bytes:
        g = self.group
        parts = [
            self.key_id.encode("utf-8"),
            self.version.to_bytes(4, "big"),
            self.epoch.to_bytes(4, "big"),
            g.name.encode(),
            self.kind.value.encode(),
            u16(self.threshold),
            self.deal_deadline.to_bytes(8, "big"),
            self.complaint_deadline.to_bytes(8, "big"),
            self.justification_deadline.to_bytes(8, "big"),
        ]
        parts += _committee_parts(self.committee)
        if self.previous is not None:
            prev = self.previous
            parts += [u16(prev.threshold), prev.epoch.to_bytes(4, "big"), g.encode(prev.public_key)]
            parts += _committee_parts(prev.committee)
            for i in sorted(prev.verification_keys):
                parts += [u16(i), g.encode(prev.verification_keys[i])]
        return hashlib.sha256(_SESSION_DST + transcript(*parts)).digest()


def _committee_parts(committee: Mapping[int, Member]) -> list[bytes]:
    out: list[bytes] = []
    for i in sorted(committee):
        m = committee[i]
        out += [u16(i), m.signing_key, m.sealing_key.encode() if m.sealing_key else b""]
    return out
