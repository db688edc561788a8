"""An in-process simulation of a whole session: every participant, one shared ordered log.

For tests and benchmarks. The log commits, at each height, everything posted during the
previous height, delivers it to every participant in order, then tells each that the height
was reached. Byzantine behaviour is injected by an ``intercept`` hook that may drop, replace or
add to what a node posts, and by raw messages ``inject``-ed at chosen heights.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..groups import Group
from ..sealing import SealingPrivateKey
from ._events import Action, Committed, Completed, Failed, HeightReached, Post, Start
from ._machine import Participant, Status
from ._messages import Message
from ._session import Member

E = TypeVar("E")
N = TypeVar("N", bound=Hashable)


@dataclass(frozen=True)
class Identity:
    """A simulated node's private keys and the public ``Member`` entry they make."""

    signing_key: Ed25519PrivateKey
    sealing_key: SealingPrivateKey

    @classmethod
    def generate(cls) -> Identity:
        """Fresh keys."""
        return cls(Ed25519PrivateKey.generate(), SealingPrivateKey.generate())

    @property
    def member(self) -> Member:
        """The public committee entry."""
        return Member(self.signing_key.public_key().public_bytes_raw(), self.sealing_key.public_key)

    def __repr__(self) -> str:
        return "Identity(<redacted>)"


def identities(n: int) -> dict[int, Identity]:
    """``n`` fresh identities, keyed ``1..n``."""
    return {i: Identity.generate() for i in range(1, n + 1)}


def committee(ids: Mapping[int, Identity]) -> dict[int, Member]:
    """The public committee for some identities."""
    return {i: ident.member for i, ident in ids.items()}


Intercept = Callable[[N, Message[E]], Sequence[bytes]]
"""``(node, message it posts) -> the bytes actually posted`` (honest: ``[message.encode()]``)."""


@dataclass
class Simulation(Generic[N, E]):
    """Runs participants over one in-memory log until every one is done or the log ends."""

    group: Group[E]
    participants: Mapping[N, Participant[E]]
    intercept: Intercept[N, E] | None = None
    inject: Mapping[int, Sequence[bytes]] = field(default_factory=dict)
    actions: dict[N, list[Action[E]]] = field(default_factory=dict)
    log: list[tuple[int, bytes]] = field(default_factory=list)

    def _collect(self, node: N, actions: list[Action[E]], pending: list[bytes]) -> None:
        self.actions.setdefault(node, []).extend(actions)
        for a in actions:
            if isinstance(a, Post):
                if self.intercept is None:
                    pending.append(a.message.encode())
                else:
                    pending.extend(self.intercept(node, a.message))

    def run(self, last_height: int) -> None:
        """Start everyone, then commit heights ``1..last_height``."""
        pending: list[bytes] = []
        for node, p in self.participants.items():
            self._collect(node, p.handle(Start()), pending)
        for h in range(1, last_height + 1):
            block = pending + list(self.inject.get(h, ()))
            pending = []
            for data in block:
                self.log.append((h, data))
                for node, p in self.participants.items():
                    self._collect(node, p.handle(Committed(h, data)), pending)
            for node, p in self.participants.items():
                self._collect(node, p.handle(HeightReached(h)), pending)
            if all(
                p.status in (Status.COMPLETED, Status.FAILED) for p in self.participants.values()
            ):
                break

    def completed(self, node: N) -> Completed[E] | None:
        """The node's ``Completed`` action, if any."""
        for a in self.actions.get(node, []):
            if isinstance(a, Completed):
                return a
        return None

    def failed(self, node: N) -> Failed | None:
        """The node's ``Failed`` action, if any."""
        for a in self.actions.get(node, []):
            if isinstance(a, Failed):
                return a
        return None
