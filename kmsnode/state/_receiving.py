"""Each node's receiving key in the replicated state: the key DKG shares are sealed to in
sessions opened now (rules v3; ``kmsnode.receiving_keys`` is the node's side).

A node replaces its key once a session used it and erases the private half when no open
session seals to it, so the deals in the log cannot be opened later. Keys arrive in signed,
numbered payloads; the state checks each key in pure Python (the same on every replica).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..crypto import dkg
from ..crypto.errors import CryptoError
from ..crypto.sealing import SealingPublicKey
from ..genesis import Genesis
from ..wire.payload import ReceivingKeyPayload


@dataclass
class ReceivingKey:
    """A node's current receiving key in the log: sessions opened now seal its shares to
    ``public``; ``used`` once one did (the node then posts its next one)."""

    seq: int
    public: SealingPublicKey
    used: bool = False


class ReceivingKeyTable(dict[int, ReceivingKey]):
    """Node id -> its current receiving key; the genesis sealing keys (seq 0) to begin with."""

    def __init__(self, genesis: Genesis) -> None:
        super().__init__({info.id: ReceivingKey(0, info.sealing_key) for info in genesis.nodes})
        self._genesis = genesis

    def take(self, payload: ReceivingKeyPayload) -> bool:
        """Take a node's next key if it is signed by the node, numbered after its current
        one and a usable key; returns whether it was taken."""
        info = next((i for i in self._genesis.nodes if i.id == payload.node), None)
        current = self.get(payload.node)
        if info is None or current is None or payload.seq <= current.seq:
            return False
        try:
            payload.verify(self._genesis.chain_id, info.signing_key)
            public = SealingPublicKey.decode_checked(payload.public_key)
        except CryptoError:
            return False
        self[payload.node] = ReceivingKey(payload.seq, public)
        return True

    def members(self) -> dict[int, dkg.Member]:
        """The committee, sealing to the current keys (for a session opened now)."""
        return {
            info.id: dkg.Member(info.signing_key, self[info.id].public)
            for info in self._genesis.nodes
        }

    def mark_used(self, committee: Mapping[int, dkg.Member]) -> None:
        """A session opened with ``committee``: the current keys it seals to are used."""
        for node, member in committee.items():
            key = self.get(node)
            if key is not None and key.public == member.sealing_key:
                key.used = True

    def mark_all_used(self) -> None:
        """Count every current key used (at the move to v3: every v2 deal is sealed to the
        genesis keys, so each node moves on and erases its genesis one)."""
        for key in self.values():
            key.used = True
