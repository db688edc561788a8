"""A deterministic discrete-event simulation of replicas on an unreliable in-memory network.

Virtual time, one seeded RNG for delays, drops and reordering, partitions that heal, crashes
and restarts from the node's store, byzantine nodes (wrapped replicas) and Twins (two
physical nodes sharing one identity). It checks, as it runs, that honest replicas persist
safety data before a vote or timeout leaves, and never vote twice in a round; and after the
run, that committed logs agree.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .._config import Config
from .._crypto import Signer
from .._events import (
    Action,
    Broadcast,
    CommittedBlock,
    Deliver,
    Event,
    MessageReceived,
    PayloadSubmitted,
    Persist,
    Send,
    ServeSync,
    SetTimer,
    Start,
    TimerFired,
    coalesce,
)
from .._messages import (
    Message,
    Proposal,
    TimeoutMsg,
    Vote,
    decode_message,
    encode_message,
)
from .._pacemaker import Pacemaker
from .._replica import Replica
from .._rules import SafetyData
from .._storage import MemoryStore, Store
from .._sync import serve_sync
from .._types import ChainId, NodeId, Round
from ..errors import DecodeError

__all__ = ["SIM_CHAIN_ID", "SimNode", "Simulation", "make_committee"]

SIM_CHAIN_ID = ChainId(b"sim-chain")


class Handler(Protocol):
    """What the simulator drives: a replica or a byzantine wrapper around one."""

    replica: Replica

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process one event."""
        ...


def make_committee(n: int, tag: bytes = b"sim") -> tuple[list[Signer], tuple[bytes, ...]]:
    """Deterministic keys for ``n`` replicas."""
    signers = [Signer.from_seed(tag + b"/" + str(i).encode()) for i in range(n)]
    return signers, tuple(s.public_key() for s in signers)


def message_round(msg: Message) -> Round | None:
    """The round a message belongs to (None for sync traffic)."""
    if isinstance(msg, Proposal):
        return msg.block.round
    if isinstance(msg, (Vote, TimeoutMsg)):
        return msg.round
    return None


@dataclass
class SimNode:
    """One simulated process: an identity, a handler (honest or byzantine) and a store."""

    name: str
    identity: NodeId
    handler: Handler
    store: Store
    honest: bool = True
    up: bool = True
    log: list[CommittedBlock] = field(default_factory=list)
    timer_gen: int = 0
    durable: SafetyData = field(default_factory=SafetyData)
    votes_sent: dict[int, bytes] = field(default_factory=dict)

    @property
    def replica(self) -> Replica:
        """The (inner, honest) replica."""
        return self.handler.replica


Wrap = Callable[[Replica, Signer], Handler]


class Simulation:
    """A seeded network of simulated replicas; see the module docstring.

    Args:
        n: committee size.
        seed: drives every random choice; print it when a test fails.
        delay: (min, max) one-way message delay in seconds before ``gst``.
        drop: probability a message is lost before ``gst``.
        gst: virtual time after which drops stop and delays are at most ``delay[1]``.
        encode: send real bytes through ``encode_message``/``decode_message``.
        byzantine: identity -> wrapper factory for byzantine replicas.
        twins: identities that get a second physical node (Twins).
        store_factory: makes a node's store (default ``MemoryStore``).
        config: keyword overrides for every replica's ``Config``.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        *,
        delay: tuple[float, float] = (0.001, 0.02),
        drop: float = 0.0,
        gst: float = 0.0,
        encode: bool = True,
        byzantine: Mapping[int, Wrap] | None = None,
        twins: Iterable[int] = (),
        store_factory: Callable[[str], Store] | None = None,
        pacemaker: Pacemaker | None = None,
        **config: Any,
    ) -> None:
        self.n = n
        self.seed = seed
        self.rng = random.Random(seed)
        self.delay = delay
        self.drop = drop
        self.gst = gst
        self.encode = encode
        self.now = 0.0
        self.chain_id = SIM_CHAIN_ID
        self.signers, self.public_keys = make_committee(n)
        self.pacemaker = pacemaker or Pacemaker(base=0.5, backoff=2.0, max_timeout=8.0)
        self.config_overrides = config
        self.store_factory = store_factory or (lambda name: MemoryStore())
        self.byzantine = byzantine or {}
        self.nodes: list[SimNode] = []
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.partitions: list[tuple[float, float, list[set[str]]]] = []
        self.round_partitions: dict[int, list[set[str]]] = {}
        """Twins: round -> groups; applies to messages of that round until ``round_heal``."""
        self.round_heal = float("inf")
        self.safety_violations: list[str] = []
        self.proposals: dict[tuple[int, int], set[bytes]] = {}
        """(identity, round) -> ids of blocks broadcast; more than one is an equivocation."""
        self.submitted: list[bytes] = []
        self.messages_sent = 0
        for i in range(n):
            self._add_node(f"n{i}", NodeId(i))
        for i in twins:
            self._add_node(f"n{i}'", NodeId(i), honest=False)
            self.nodes[i].honest = False

    # ---- construction --------------------------------------------------------------------

    def _config(self, identity: NodeId) -> Config:
        return Config(
            chain_id=self.chain_id,
            me=identity,
            public_keys=self.public_keys,
            pacemaker=self.pacemaker,
            **self.config_overrides,
        )

    def _make_handler(self, identity: NodeId, store: Store) -> Handler:
        replica = Replica(self._config(identity), self.signers[identity], store.load(1_000_000))
        wrap = self.byzantine.get(identity)
        if wrap is not None:
            return wrap(replica, self.signers[identity])
        return _Honest(replica)

    def _add_node(self, name: str, identity: NodeId, honest: bool = True) -> None:
        store = self.store_factory(name)
        node = SimNode(name, identity, self._make_handler(identity, store), store)
        node.honest = honest and identity not in self.byzantine
        self.nodes.append(node)

    def node(self, name: str) -> SimNode:
        """The node called ``name`` (``n3``, or ``n3'`` for a twin)."""
        return next(x for x in self.nodes if x.name == name)

    @property
    def honest(self) -> list[SimNode]:
        """Honest nodes (not byzantine, not twinned)."""
        return [x for x in self.nodes if x.honest]

    # ---- scheduling ----------------------------------------------------------------------

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``when``."""
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn))

    def start(self) -> None:
        """Deliver ``Start`` to every node."""
        for node in self.nodes:
            self._feed(node, Start())

    def submit(self, payload: bytes, to: Iterable[SimNode] | None = None) -> None:
        """A client submits ``payload`` to ``to`` (default: every node, like gossip)."""
        if payload not in self.submitted:
            self.submitted.append(payload)
        for node in list(to) if to is not None else self.nodes:
            if node.up:
                self._feed(node, PayloadSubmitted((payload,)))

    def client_retries(self, interval: float = 2.0) -> None:
        """Model honest clients: every ``interval`` seconds, resubmit to every node each
        submitted payload not yet committed. Mempools are volatile (a crash empties them),
        so without retries a payload every recipient crashed on is legitimately lost."""

        def tick() -> None:
            done = self.committed_payloads()
            for p in [p for p in self.submitted if p not in done]:
                for node in self.nodes:
                    if node.up:
                        self._feed(node, PayloadSubmitted((p,)))
            self.at(self.now + interval, tick)

        self.at(self.now + interval, tick)

    def partition(self, groups: list[set[str]], start: float, end: float) -> None:
        """Only nodes in the same group can talk between ``start`` and ``end``."""
        self.partitions.append((start, end, groups))

    def crash(self, node: SimNode) -> None:
        """Stop ``node``: its timers die, messages to it are lost."""
        node.up = False
        node.timer_gen += 1

    def restart(self, node: SimNode, *, amnesia: bool = False) -> None:
        """Restart ``node`` from its store (or from an empty one with ``amnesia``)."""
        if amnesia:
            node.store = self.store_factory(node.name + "-amnesia")
            node.log = []
            node.durable = SafetyData()
        node.handler = self._make_handler(node.identity, node.store)
        node.up = True
        node.timer_gen += 1
        self._feed(node, Start())

    def run_until(
        self, pred: Callable[[], bool], timeout: float, max_steps: int = 2_000_000
    ) -> bool:
        """Process events until ``pred()`` holds (True) or virtual ``timeout`` passes (False)."""
        deadline = self.now + timeout
        steps = 0
        while not pred():
            if not self._queue or self._queue[0][0] > deadline or steps >= max_steps:
                self.now = max(
                    self.now, min(deadline, self._queue[0][0] if self._queue else deadline)
                )
                return pred()
            when, _, fn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            fn()
            steps += 1
        return True

    def run_for(self, duration: float) -> None:
        """Process events for ``duration`` virtual seconds."""
        self.run_until(lambda: False, duration)

    # ---- network -------------------------------------------------------------------------

    def _connected(self, src: SimNode, dst: SimNode, msg: Message) -> bool:
        for start, end, groups in self.partitions:
            if start <= self.now < end and not any(src.name in g and dst.name in g for g in groups):
                return False
        rnd = message_round(msg)
        if rnd is not None and rnd in self.round_partitions and self.now < self.round_heal:
            groups = self.round_partitions[rnd]
            return any(src.name in g and dst.name in g for g in groups)
        return True

    def _transmit(self, src: SimNode, dst: SimNode, msg: Message) -> None:
        self.messages_sent += 1
        if not self._connected(src, dst, msg):
            return
        lossy = self.now < self.gst
        if lossy and self.drop and self.rng.random() < self.drop:
            return
        lo, hi = self.delay
        d = self.rng.uniform(lo, hi)
        if lossy and self.rng.random() < 0.05:
            d *= 10  # occasional straggler: reordering well beyond the usual spread
        payload: Any = encode_message(msg) if self.encode else msg
        sender = src.identity

        def deliver() -> None:
            if not dst.up:
                return
            try:
                m = decode_message(payload, self.chain_id) if self.encode else payload
            except DecodeError:
                dst.replica.stats.invalid_messages += 1
                return
            self._feed(dst, MessageReceived(sender, m))

        self.at(self.now + d, deliver)

    def _targets(self, src: SimNode, to: NodeId | None) -> list[SimNode]:
        return [
            x
            for x in self.nodes
            if x is not src and x.identity != src.identity and (to is None or x.identity == to)
        ]

    # ---- executing actions ---------------------------------------------------------------

    def _feed(self, node: SimNode, event: Event) -> None:
        actions = node.handler.handle(event, self.now)
        self._execute(node, actions)

    def _check_outgoing(self, node: SimNode, msg: Message) -> None:
        if not node.honest:
            return
        if isinstance(msg, Vote) and msg.voter == node.identity:
            if node.durable.last_voted_round < msg.round:
                self.safety_violations.append(
                    f"{node.name} sent vote r{msg.round} before persisting"
                )
            prior = node.votes_sent.get(msg.round)
            if prior is not None and prior != msg.block_id:
                self.safety_violations.append(f"{node.name} voted twice in round {msg.round}")
            node.votes_sent[msg.round] = msg.block_id
        if (
            isinstance(msg, TimeoutMsg)
            and msg.sender == node.identity
            and node.durable.last_voted_round < msg.round
        ):
            self.safety_violations.append(
                f"{node.name} sent timeout r{msg.round} before persisting"
            )

    def _execute(self, node: SimNode, actions: list[Action]) -> None:
        for a in coalesce(actions):
            if isinstance(a, Persist):
                node.store.persist(a)
                if a.safety is not None:
                    node.durable = a.safety
            elif isinstance(a, Send):
                self._check_outgoing(node, a.message)
                for dst in self._targets(node, a.to):
                    self._transmit(node, dst, a.message)
            elif isinstance(a, Broadcast):
                self._check_outgoing(node, a.message)
                if isinstance(a.message, Proposal):
                    key = (int(node.identity), int(a.message.block.round))
                    self.proposals.setdefault(key, set()).add(a.message.block.id)
                for dst in self._targets(node, None):
                    self._transmit(node, dst, a.message)
            elif isinstance(a, SetTimer):
                node.timer_gen += 1
                gen = node.timer_gen
                rnd = a.round

                def fire(node: SimNode = node, gen: int = gen, rnd: Round = rnd) -> None:
                    if node.up and node.timer_gen == gen:
                        self._feed(node, TimerFired(rnd))

                self.at(self.now + a.delay, fire)
            elif isinstance(a, Deliver):
                if a.block.height != len(node.log) + 1:
                    self.safety_violations.append(
                        f"{node.name} delivered height {a.block.height} after {len(node.log)}"
                    )
                node.log.append(a.block)
            elif isinstance(a, ServeSync):
                resp = serve_sync(node.store, a)
                if resp is not None:
                    for dst in self._targets(node, a.to):
                        self._transmit(node, dst, resp)

    # ---- invariants ----------------------------------------------------------------------

    def check_safety(self) -> None:
        """Raise AssertionError (with the seed) unless honest logs agree and rules held."""
        msg = f"(seed={self.seed})"
        assert not self.safety_violations, f"{self.safety_violations[:5]} {msg}"
        logs = [x.log for x in self.honest]
        longest = max(logs, key=len, default=[])
        for node in self.honest:
            assert node.replica.stats.conflicting_commits == 0, f"{node.name} conflict {msg}"
            for c, ref in zip(node.log, longest, strict=False):
                assert c.block_id == ref.block_id, (
                    f"{node.name} committed a different block at height {c.height} {msg}"
                )
        seen: set[bytes] = set()
        for c in longest:
            for p in c.payloads:
                assert p not in seen, f"payload committed twice {msg}"
                seen.add(p)

    def equivocations(self) -> int:
        """How many (identity, round) pairs saw two different proposals broadcast."""
        return sum(1 for ids in self.proposals.values() if len(ids) > 1)

    def committed_payloads(self) -> set[bytes]:
        """Payloads in the longest honest log."""
        logs = [x.log for x in self.honest]
        longest = max(logs, key=len, default=[])
        return {p for c in longest for p in c.payloads}

    def all_committed(self, payloads: Iterable[bytes] | None = None) -> bool:
        """Whether every honest node has committed every (given or submitted) payload."""
        want = set(self.submitted if payloads is None else payloads)
        return all(want <= {p for c in x.log for p in c.payloads} for x in self.honest if x.up)


@dataclass
class _Honest:
    """The identity wrapper: an honest replica."""

    replica: Replica

    def handle(self, event: Event, now: float) -> list[Action]:
        return self.replica.handle(event, now)


def with_config(sim: Simulation, **overrides: Any) -> Config:
    """A config like the simulation's with ``overrides`` (for custom nodes in tests)."""
    return replace(sim._config(NodeId(0)), **overrides)
