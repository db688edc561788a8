"""A simulated committee for the state machine tests: identities, genesis, a block builder."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kmsnode.crypto import dkg
from kmsnode.crypto.sealing import SealingPrivateKey
from kmsnode.genesis import Genesis, NodeInfo
from kmsnode.identity import NodeIdentity
from kmsnode.state import DeliverDkg, Effect, KMSState, StartDkg
from kmsnode.wire.payload import DkgPayload, TickPayload, client_payload
from kmsnode.wire.requests import Operation, Request

T0 = 1_760_000_000_000  # block time of the first block (ms)


@dataclass(frozen=True)
class Block:
    height: int
    timestamp_ms: int
    payloads: tuple[bytes, ...]
    proposer: int | None = None


@dataclass
class Client:
    """A client identity that signs requests with fresh, time-stamped nonces."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    chain_id: str = "test-chain"
    reply: SealingPrivateKey = field(default_factory=SealingPrivateKey.generate)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def public(self) -> bytes:
        return self.key.public_key().public_bytes_raw()

    def request(self, op: Operation, *, at_ms: int, reply: bool = False) -> Request:
        nonce = (at_ms << 16) | (next(self._seq) & 0xFFFF)
        reply_key = self.reply.public_key.encode() if reply else None
        return Request(self.chain_id, self.public, nonce, op, reply_key).signed(self.key)


@dataclass
class Network:
    """n nodes' identities, each node's replicated state, and the nodes' DKG participants."""

    n: int = 4
    t: int = 3
    f: int = 1
    admin: Client = field(default_factory=Client)
    identities: dict[int, NodeIdentity] = field(default_factory=dict)
    states: dict[int, KMSState] = field(default_factory=dict)
    participants: dict[tuple[int, str, int, int], dkg.Participant[Any]] = field(
        default_factory=dict
    )
    results: dict[tuple[int, str, int], dkg.DkgResult[Any]] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)
    height: int = 0
    time_ms: int = T0
    effects: dict[int, list[Effect]] = field(default_factory=dict)
    log: list[Block] = field(default_factory=list)
    """Every committed block, in order (to replay on a fresh state)."""
    _ticks: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.identities = {i: NodeIdentity.generate() for i in range(1, self.n + 1)}
        nodes = tuple(
            NodeInfo(
                id=i,
                peer_id=f"peer-{i}",
                addrs=(f"/ip4/127.0.0.1/tcp/{9000 + i}",),
                signing_key=ident.signing_public,
                sealing_key=ident.sealing_public,
                network_key=ident.network_public,
            )
            for i, ident in self.identities.items()
        )
        self.genesis = Genesis("test-chain", self.f, self.t, nodes, (self.admin.public,))
        self.genesis.validate()
        self.states = {i: KMSState(self.genesis) for i in self.identities}

    def commit(self, *payloads: bytes) -> dict[int, list[Effect]]:
        """Commit one block with ``payloads`` (plus what nodes queued) on every node."""
        self.height += 1
        self.time_ms += 100
        block = Block(self.height, self.time_ms, tuple(self.pending) + payloads)
        self.log.append(block)
        self.pending = []
        out = {}
        for i, state in self.states.items():
            effects = state.apply(block)
            out[i] = effects
            self.effects.setdefault(i, []).extend(effects)
            self._run_dkg(i, effects)
        return out

    def _run_dkg(self, i: int, effects: list[Effect]) -> None:
        ident = self.identities[i]
        for e in effects:
            if isinstance(e, StartDkg):
                s = e.session
                # A refresh (a reshare to the same committee) deals the node's current share.
                old = self.results[(i, s.key_id, s.version)].share if s.previous else None
                p = dkg.Participant(
                    s,
                    signing_key=ident.signing_key,
                    sealing_key=ident.sealing_key,
                    id=i,
                    old_id=i if old is not None else None,
                    old_share=old,
                )
                self.participants[(i, s.key_id, s.version, s.epoch)] = p
                self._actions(i, s, p.handle(dkg.Start()))
            elif isinstance(e, DeliverDkg):
                p = self.participants.get((i, e.key_id, e.version, e.epoch))
                if p is None:
                    continue
                event: dkg.Event = (
                    dkg.Committed(e.height, e.message)
                    if e.message is not None
                    else dkg.HeightReached(e.height)
                )
                self._actions(i, p.session, p.handle(event))

    def _actions(self, i: int, s: dkg.Session[Any], actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, dkg.Post):
                self.pending.append(
                    DkgPayload(s.key_id, s.version, s.epoch, a.message.encode()).encode()
                )
            elif isinstance(a, dkg.Completed):
                self.results[(i, s.key_id, s.version)] = a.result

    def tick(self) -> dict[int, list[Effect]]:
        return self.commit(TickPayload(1, next(self._ticks)).encode())

    def run_until(self, predicate: Any, max_blocks: int = 200) -> None:
        for _ in range(max_blocks):
            if predicate():
                return
            self.tick()
        raise AssertionError("condition not reached within the block budget")

    def send(self, request: Request) -> dict[int, list[Effect]]:
        return self.commit(client_payload(request))


@pytest.fixture
def net() -> Network:
    return Network()


def random_bytes(n: int) -> bytes:
    return secrets.token_bytes(n)
