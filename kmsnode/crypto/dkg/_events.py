"""Events the DKG state machine consumes and actions it emits, and the result it produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..shamir import Share
from ._messages import Message

E = TypeVar("E")


# -- events ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    """Begin the session: a dealer posts its deal."""


@dataclass(frozen=True)
class Committed:
    """The log committed ``message`` (raw bytes, untrusted) at ``height``."""

    height: int
    message: bytes = field(repr=False)


@dataclass(frozen=True)
class HeightReached:
    """Every message up to and including ``height`` has been delivered."""

    height: int


Event = Start | Committed | HeightReached


# -- result ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DkgResult(Generic[E]):
    """The outcome of a successful session, as seen by one participant.

    Everything but ``share`` is public and identical on every honest node. ``share`` is this
    participant's new share (``None`` for a member leaving in a reshare, or when a qualified
    dealer's share to it could not be obtained; ``missing_from`` then names those dealers).
    """

    key_id: str
    version: int
    epoch: int
    threshold: int
    public_key: E
    verification_keys: Mapping[int, E]
    qualified: tuple[int, ...]
    disqualified: Mapping[int, str]
    share: Share | None
    missing_from: tuple[int, ...] = ()


# -- actions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Post(Generic[E]):
    """Submit ``message`` to the log (``message.encode()`` gives the bytes)."""

    message: Message[E]


@dataclass(frozen=True)
class Rejected:
    """A committed message was ignored; ``reason`` says why (for logs and metrics)."""

    height: int
    sender: int | None
    reason: str


@dataclass(frozen=True)
class Completed(Generic[E]):
    """The session is final: store the result (durably, before acting on later actions)."""

    result: DkgResult[E]


@dataclass(frozen=True)
class EraseShare:
    """Erase the share of ``key_id``/``version`` at ``epoch``: its replacement is final.

    Security: only ever emitted after ``Completed``, so a node never holds neither share.
    """

    key_id: str
    version: int
    epoch: int


@dataclass(frozen=True)
class Failed:
    """The session failed; ``reason`` is for the operator. Nothing changed; it can be retried."""

    reason: str
    disqualified: Mapping[int, str]


Action = Post[E] | Rejected | Completed[E] | EraseShare | Failed
