"""Who is in the committee, as the network layer needs it: node id <-> peer id <-> addresses.

Built from the genesis file. Every member's peer id must be the one derived from its Ed25519
public key, so a genesis that names a key and a different peer id is refused at load time,
not discovered when a handshake fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NewType

from libp2p.peer.id import ID

from .errors import CommitteeError, IdentityError, UnknownNode
from .identity import parse_peer_id, peer_id_from_public_key

__all__ = ["Committee", "Member", "NodeId"]

NodeId = NewType("NodeId", int)
"""A node's id in the genesis committee, ``1 .. n`` (0 is never an id)."""


@dataclass(frozen=True)
class Member:
    """One committee member as listed in the genesis file.

    Raises:
        CommitteeError: from ``__post_init__`` for an id < 1, no address, or a peer id that
            is not the one derived from ``public_key``.
    """

    node_id: NodeId
    peer_id: str
    addrs: tuple[str, ...]
    public_key: bytes
    """The raw 32-byte Ed25519 network (libp2p) public key."""

    def __post_init__(self) -> None:
        if type(self.node_id) is not int or self.node_id < 1:
            raise CommitteeError(f"node ids start at 1, got {self.node_id!r}")
        if not self.addrs:
            raise CommitteeError(f"node {self.node_id} has no address")
        try:
            derived = peer_id_from_public_key(self.public_key)
        except IdentityError as exc:
            raise CommitteeError(f"node {self.node_id}: {exc}") from None
        if derived != self.peer_id:
            raise CommitteeError(
                f"node {self.node_id}: peer id {self.peer_id} does not match its public key "
                f"(expected {derived}); fix the genesis file"
            )


class Committee:
    """The members in id order, with look-ups both ways.

    Raises:
        CommitteeError: duplicate node ids or peer ids, or no members.
    """

    def __init__(self, members: Iterable[Member]) -> None:
        ordered = sorted(members, key=lambda m: m.node_id)
        if not ordered:
            raise CommitteeError("the committee is empty")
        self._by_id: dict[NodeId, Member] = {}
        self._by_peer: dict[ID, NodeId] = {}
        self._peer_ids: dict[NodeId, ID] = {}
        for m in ordered:
            if m.node_id in self._by_id:
                raise CommitteeError(f"node id {m.node_id} appears twice")
            pid = parse_peer_id(m.peer_id)
            if pid in self._by_peer:
                raise CommitteeError(f"peer id {m.peer_id} appears twice")
            self._by_id[m.node_id] = m
            self._by_peer[pid] = m.node_id
            self._peer_ids[m.node_id] = pid

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Member]:
        return iter(self._by_id.values())

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def node_ids(self) -> list[NodeId]:
        """Every member's id, ascending."""
        return list(self._by_id)

    def member(self, node_id: NodeId) -> Member:
        """The member with ``node_id``.

        Raises:
            UnknownNode: no such member.
        """
        try:
            return self._by_id[node_id]
        except KeyError:
            raise UnknownNode(node_id) from None

    def peer_id(self, node_id: NodeId) -> ID:
        """The libp2p peer id of ``node_id``.

        Raises:
            UnknownNode: no such member.
        """
        try:
            return self._peer_ids[node_id]
        except KeyError:
            raise UnknownNode(node_id) from None

    def node_of(self, peer_id: ID) -> NodeId | None:
        """The node id of an authenticated ``peer_id``, or None for a peer outside the committee."""
        return self._by_peer.get(peer_id)
