"""The sans-I/O replica: 2-chain HotStuff (DiemBFT v4 / Jolteon) as ``handle(event) -> actions``.

No clocks, sockets or files here: the driver passes ``now`` with every event and executes
the returned actions in order (see ``_events``). Peer input never raises: invalid messages
are counted in ``ReplicaStats`` and dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ._config import Config
from ._crypto import Committee, Signer, vote_signing_message
from ._events import (
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
)
from ._mempool import CommittedWindow, Mempool, MempoolStats
from ._messages import (
    Block,
    Message,
    Proposal,
    QuorumCert,
    SyncRequest,
    SyncResponse,
    TimeoutCert,
    TimeoutMsg,
    Vote,
    genesis_block,
    genesis_qc,
)
from ._ratelimit import TokenBucket
from ._rules import CommitRule, ProposeRule, SafetyData, TimeoutRule, VoteRule
from ._storage import StoredState
from ._sync import check_sync_chain
from ._types import BlockId, Height, NodeId, Round
from .errors import InvalidMessage

__all__ = ["PeerStatus", "Replica", "ReplicaStats", "Status"]

MAX_WAITING_PROPOSALS = 64
"""Verified proposals held for a missing parent, at most (one per round; oldest go first)."""


@dataclass
class ReplicaStats:
    """Counters exposed for tests, benchmarks and the operator console."""

    proposals_sent: int = 0
    votes_sent: int = 0
    timeouts_sent: int = 0
    qcs_formed: int = 0
    tcs_formed: int = 0
    blocks_committed: int = 0
    payloads_committed: int = 0
    duplicates_dropped: int = 0
    rejected_payloads: int = 0
    """Submitted payloads refused by the mempool (full, or too large)."""
    invalid_messages: int = 0
    equivocations_seen: int = 0
    sync_requests_sent: int = 0
    sync_blocks_received: int = 0
    """Blocks received in ``SyncResponse``s, commit announcements included."""
    sync_requests_throttled: int = 0
    """Peers' ``SyncRequest``s dropped for exceeding ``Config.sync_serve_rate``."""
    commits_announced: int = 0
    """Idle leaders' commit announcements sent (the 2-chain witness, instead of an empty
    block)."""
    conflicting_commits: int = 0
    """Must stay 0: a commit that does not extend the committed root (a safety failure)."""


@dataclass(frozen=True)
class PeerStatus:
    """What this replica knows about a peer's liveness."""

    node: NodeId
    last_heard: float | None
    """``now`` of the last valid message from the peer, None if never."""


@dataclass(frozen=True)
class Status:
    """A snapshot of the replica for status pages."""

    node: NodeId
    round: Round
    height: Height
    leader: NodeId
    high_qc_round: Round
    high_qc_block: BlockId
    high_tc_round: Round | None
    last_voted_round: Round
    last_commit_time: float | None
    peers: tuple[PeerStatus, ...]
    mempool: MempoolStats
    stats: ReplicaStats = field(repr=False)


class Replica:
    """One consensus participant's protocol state machine.

    Args:
        config: committee, identity, limits and timing.
        signer: this replica's private key (must match ``config.public_keys[config.me]``).
        stored: state reloaded from a ``Store`` after a restart (None: fresh start).
    """

    vote_rule = VoteRule()
    timeout_rule = TimeoutRule()
    commit_rule = CommitRule()
    propose_rule = ProposeRule()

    def __init__(self, config: Config, signer: Signer, stored: StoredState | None = None) -> None:
        self.config = config
        self.me = config.me
        self.chain_id = config.chain_id
        self.signer = signer
        self.committee = Committee(config.public_keys, config.signature_verifier)
        self.leaders = config.leaders
        self.stats = ReplicaStats()
        self.mempool = Mempool(
            config.mempool_max_payloads, config.mempool_max_bytes, config.max_payload_bytes
        )
        self.window = CommittedWindow(config.dedup_window, config.dedup_window_bytes)
        st = stored or StoredState()
        if st.root is None:
            self.root, self.root_qc = genesis_block(self.chain_id), genesis_qc(self.chain_id)
        else:
            self.root, self.root_qc = st.root
        self.witness: tuple[Block, QuorumCert] | None = st.witness
        self._announced: BlockId | None = None
        self.blocks: dict[BlockId, Block] = {self.root.id: self.root}
        for b in sorted(st.blocks, key=lambda b: b.height):
            if b.height > self.root.height:
                self.blocks[b.id] = b
        self.safety: SafetyData = st.safety
        self.high_qc: QuorumCert = self.root_qc
        for qc in [st.high_qc, *(b.qc for b in st.blocks)]:
            if qc is not None and qc.round > self.high_qc.round:
                self.high_qc = qc
        self.high_tc: TimeoutCert | None = st.high_tc
        self.window.restore(st.recent_delivered)
        self.round: Round = self._entitled_round()
        # A leader votes for (and persists) its own block right after proposing it, so
        # after a restart this keeps it from proposing a second block for the same round.
        self.proposed_round = self.safety.last_voted_round
        self.timed_out_round = Round(0)
        self.last_commit_qc_round = self.root_qc.round
        self.last_commit_time: float | None = None
        self.votes: dict[Round, dict[NodeId, Vote]] = {}
        self.timeouts: dict[Round, dict[NodeId, TimeoutMsg]] = {}
        self.waiting: dict[Round, tuple[NodeId, Proposal]] = {}
        self.qcs: dict[BlockId, QuorumCert] = {}
        """QCs whose block we do not have yet."""
        self.last_heard: dict[NodeId, float] = {}
        self._sync_until = -1.0
        self._sync_from_root = False
        self._sync_tokens: dict[NodeId, TokenBucket] = {}
        """Per peer: its sync-serving token bucket (in replica time)."""
        self._sync_peer = int(self.me)
        self._hqc_dirty = False
        self._now = 0.0
        self._out: list[Action] = []
        self._deliveries: list[Action] = []
        self._inbox: deque[Message] = deque()

    # ---- public API ----------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process one event at time ``now`` (seconds) and return the actions to execute.

        Peer input never raises: invalid messages are counted and dropped.
        """
        self._now = now
        self._out = []
        if isinstance(event, MessageReceived):
            if event.sender != self.me and self.committee.is_member(event.sender):
                self._on_message(event.sender, event.message)
        elif isinstance(event, TimerFired):
            self._on_timer(event.round)
        elif isinstance(event, PayloadSubmitted):
            self._on_payloads(event.payloads)
        elif isinstance(event, Start):
            self._arm_timer()
            self._try_propose()
        else:  # pragma: no cover - exhaustive
            raise TypeError(f"unknown event {event!r}")
        while self._inbox:
            self._on_message(self.me, self._inbox.popleft())
        # Deliveries go last so the commit's Persist can share a transaction with the
        # vote's (see ``coalesce``); they still follow it.
        out, self._out = self._out + self._deliveries, []
        self._deliveries = []
        return out

    @property
    def committed_height(self) -> Height:
        """Height of the last committed block."""
        return self.root.height

    def leader(self, round: Round) -> NodeId:
        """The leader of ``round``."""
        return self.leaders.leader(round)

    def status(self) -> Status:
        """A snapshot for status pages."""
        return Status(
            node=self.me,
            round=self.round,
            height=self.root.height,
            leader=self.leader(self.round),
            high_qc_round=self.high_qc.round,
            high_qc_block=self.high_qc.block_id,
            high_tc_round=None if self.high_tc is None else self.high_tc.round,
            last_voted_round=self.safety.last_voted_round,
            last_commit_time=self.last_commit_time,
            peers=tuple(
                PeerStatus(NodeId(i), self.last_heard.get(NodeId(i)))
                for i in self.committee.members()
                if i != self.me
            ),
            mempool=self.mempool.stats(),
            stats=self.stats,
        )

    # ---- plumbing ------------------------------------------------------------------------

    def _send(self, to: NodeId, msg: Message) -> None:
        if to == self.me:
            self._inbox.append(msg)
        else:
            self._out.append(Send(to, msg))

    def _broadcast(self, msg: Message) -> None:
        self._out.append(Broadcast(msg))
        self._inbox.append(msg)

    def _persist(self, *, blocks: tuple[Block, ...] = (), safety: SafetyData | None = None) -> None:
        hqc = self.high_qc if self._hqc_dirty else None
        self._hqc_dirty = False
        self._out.append(Persist(blocks=blocks, safety=safety, high_qc=hqc, high_tc=self.high_tc))

    def _entitled_round(self) -> Round:
        tc_round = 0 if self.high_tc is None else self.high_tc.round
        return Round(max(self.high_qc.round, tc_round) + 1)

    def _arm_timer(self) -> None:
        delay = self.config.pacemaker.timeout(self.round, self.last_commit_qc_round)
        self._out.append(SetTimer(self.round, delay))

    def _on_message(self, sender: NodeId, msg: Message) -> None:
        try:
            if isinstance(msg, Proposal):
                self._on_proposal(sender, msg)
            elif isinstance(msg, Vote):
                self._on_vote(sender, msg)
            elif isinstance(msg, TimeoutMsg):
                self._on_timeout(sender, msg)
            elif isinstance(msg, SyncRequest):
                self._on_sync_request(sender, msg)
            elif isinstance(msg, SyncResponse):
                self._on_sync_response(sender, msg)
            else:
                raise InvalidMessage(f"unexpected message type {type(msg).__name__}")
        except InvalidMessage:
            self.stats.invalid_messages += 1
            return
        if sender != self.me:
            self.last_heard[sender] = self._now

    # ---- certificates and rounds ---------------------------------------------------------

    def _process_qc(self, qc: QuorumCert, source: NodeId | None) -> None:
        """Adopt a verified QC: maybe a new high QC, maybe a commit, maybe a new round."""
        if qc.round > self.high_qc.round:
            self.high_qc = qc
            self._hqc_dirty = True
        block = self.blocks.get(qc.block_id)
        if block is None:
            if qc.round > self.root.round:
                # Remember it: the block may still arrive (late proposal, sync).
                self.qcs[qc.block_id] = qc
                if source is not None and source != self.me:
                    self._request_sync(source)
        else:
            self._check_commit(block, qc)
        self._advance_round()

    def _process_tc(self, tc: TimeoutCert, source: NodeId | None) -> None:
        """Adopt a verified TC (and the high QC it carries)."""
        if self.high_tc is None or tc.round > self.high_tc.round:
            self.high_tc = tc
        self._process_qc(tc.high_qc, source)
        self._advance_round()

    def _advance_round(self) -> None:
        new = self._entitled_round()
        if new <= self.round:
            return
        self.round = new
        for table in (self.votes, self.timeouts):
            for r in [r for r in table if r < new - 1]:
                del table[r]
        self._arm_timer()
        self._try_propose()

    # ---- proposing -----------------------------------------------------------------------

    def _in_flight(self, tip: Block) -> set[bytes]:
        """Payloads in uncommitted blocks from ``tip`` back to the root (not to re-propose)."""
        out: set[bytes] = set()
        b: Block | None = tip
        while b is not None and b.height > self.root.height:
            out.update(b.payloads)
            b = self.blocks.get(b.parent_id)
        return out

    def _chain_has_payloads(self, tip: Block) -> bool:
        """Whether an uncommitted block from ``tip`` back to the root carries payloads: then
        the chain must grow until they commit."""
        b: Block | None = tip
        while b is not None and b.height > self.root.height:
            if b.payloads:
                return True
            b = self.blocks.get(b.parent_id)
        return False

    def _announce_commit(self) -> None:
        """Send the others the witness of the root's commit, once, if it carries payloads.

        When this leader's QC has just committed a block, only this replica knows it; the
        others would learn it from the next proposal, so an idle leader used to propose an
        empty block for that alone (a whole round: signatures, an fsync per replica, votes).
        The 2-chain witness (the certified child and its QC) proves the commit by itself, and
        every replica already accepts it as a ``SyncResponse``.
        """
        w = self.witness
        if w is None or not self.root.payloads or self._announced == self.root.id:
            return
        self._announced = self.root.id
        self.stats.commits_announced += 1
        self._out.append(Broadcast(SyncResponse((w[0],), w[1])))

    def _try_propose(self) -> None:
        rnd = self.round
        if self.leader(rnd) != self.me or self.proposed_round >= rnd:
            return
        parent = self.blocks.get(self.high_qc.block_id)
        if parent is None:
            return
        in_flight = self._in_flight(parent)
        has_work = self.mempool.has_work(in_flight) or self._chain_has_payloads(parent)
        if not has_work:
            self._announce_commit()
        if not self.propose_rule.should_propose(True, rnd, self.proposed_round, has_work):
            return
        tc = None
        if self.propose_rule.needs_tc(rnd, self.high_qc.round):
            if self.high_tc is None or self.high_tc.round != rnd - 1:
                return
            tc = self.high_tc
        cfg = self.config
        payloads = self.mempool.batch(cfg.max_block_payloads, cfg.max_block_bytes, in_flight)
        ts = max(int(self._now * 1000), parent.timestamp_ms)
        block = Block.create(
            self.chain_id,
            rnd,
            Height(parent.height + 1),
            self.high_qc,
            ts,
            self.me,
            tuple(payloads),
            self.signer,
        )
        self.proposed_round = rnd
        self.stats.proposals_sent += 1
        self._broadcast(Proposal(block, tc))

    def _on_payloads(self, payloads: tuple[bytes, ...]) -> None:
        before = self.mempool.stats()
        added = self.mempool.add_many(payloads, skip=self.window)
        after = self.mempool.stats()
        self.stats.rejected_payloads += after.rejected_full - before.rejected_full
        self.stats.duplicates_dropped += (
            len(payloads) - added - (after.rejected_full - before.rejected_full)
        )
        if added:
            self._try_propose()

    def mempool_room(self) -> int:
        """How many more payloads the mempool accepts now (for back-pressure in drivers)."""
        return max(0, self.mempool.max_payloads - len(self.mempool))

    # ---- proposals and votes -------------------------------------------------------------

    def _valid_child(self, b: Block, parent: Block) -> bool:
        cfg = self.config
        return (
            b.height == parent.height + 1
            and b.qc.round == parent.round
            and b.round > parent.round
            and b.timestamp_ms >= parent.timestamp_ms
            and b.timestamp_ms <= int(self._now * 1000) + cfg.max_clock_skew_ms
            and len(b.payloads) <= cfg.max_block_payloads
            and b.size <= cfg.max_block_bytes
            and max(map(len, b.payloads), default=0) <= cfg.max_payload_bytes
        )

    def _on_proposal(self, sender: NodeId, p: Proposal) -> None:
        b = p.block
        if b.proposer != sender or self.leader(b.round) != sender:
            raise InvalidMessage("proposal not from the round's leader")
        if b.id in self.blocks:
            # Already have it (a resend, or it came by sync): at most (re)send our vote.
            if p.tc is not None:
                p.tc.verify(self.committee, self.chain_id)
                self._process_tc(p.tc, sender)
            if b.round == self.round:
                self._vote_on(b, p.tc)
            return
        b.verify_signature(self.committee)
        b.qc.verify(self.committee, self.chain_id)
        if p.tc is not None:
            p.tc.verify(self.committee, self.chain_id)
            self._process_tc(p.tc, sender)
        self._process_qc(b.qc, sender)
        if b.round > self.round:
            raise InvalidMessage("proposal for a round its certificates do not justify")
        parent = self.blocks.get(b.parent_id)
        if parent is None:
            self._wait_for_parent(sender, p)
            return
        if not self._valid_child(b, parent):
            raise InvalidMessage("block does not validly extend its parent")
        self._insert(b)
        if b.round == self.round:
            self._vote_on(b, p.tc)

    def _wait_for_parent(self, sender: NodeId, p: Proposal) -> None:
        """Hold a verified proposal until its parent arrives (by proposal or sync), whatever
        its round: a leader that formed a QC from votes before the certified block and its
        parent reached it needs that block to propose, and dropping it (as "not this
        round") left the log waiting for a round timeout."""
        if p.block.round <= self.root.round:
            return
        self.waiting[p.block.round] = (sender, p)
        while len(self.waiting) > MAX_WAITING_PROPOSALS:
            del self.waiting[min(self.waiting)]

    def _resume_waiting(self, parent_id: BlockId | None = None) -> None:
        """Handle the held proposals whose parent is here now (only ``parent_id``'s children
        if given), oldest first; each may complete the chain for the next, and a cascade
        may take entries this loop has not reached yet."""
        for r in sorted(self.waiting):
            entry = self.waiting.get(r)
            if entry is None or entry[1].block.parent_id not in self.blocks:
                continue
            if parent_id is not None and entry[1].block.parent_id != parent_id:
                continue
            del self.waiting[r]
            src, p = entry
            if src == self.me:
                self._inbox.append(p)
                continue
            try:
                self._on_proposal(src, p)
            except InvalidMessage:
                self.stats.invalid_messages += 1

    def _insert(self, b: Block) -> None:
        """Add a validated block; it may complete a chain a QC was waiting for."""
        self.blocks[b.id] = b
        parent = self.blocks.get(b.parent_id)
        if parent is not None:
            self._check_commit(parent, b.qc)  # b.qc certifies its parent
        qc = self.qcs.pop(b.id, None)
        if qc is not None:
            self._check_commit(b, qc)
        if b.id == self.high_qc.block_id:
            self._try_propose()
        self._resume_waiting(b.id)

    def _vote_on(self, b: Block, tc: TimeoutCert | None) -> None:
        s = self.safety
        next_leader = self.leader(Round(b.round + 1))
        if s.last_vote is not None and s.last_vote.round == b.round:
            if s.last_vote.block_id == b.id:
                self._send_vote(next_leader, s.last_vote)  # asked again: the identical vote
            return
        tc_round = tc.round if tc is not None else None
        tc_hqc = tc.max_hqc_round if tc is not None else None
        if not self.vote_rule.allows(s, b.round, b.qc.round, tc_round, tc_hqc):
            return
        vote = Vote.create(self.chain_id, b.round, b.id, self.me, self.signer)
        self.committee.remember(
            self.me, vote_signing_message(self.chain_id, b.round, b.id), vote.signature
        )
        self.safety = s.after_vote(vote, b.qc.round)
        self._persist(blocks=(b,), safety=self.safety)  # durable before the vote leaves
        self.stats.votes_sent += 1
        self._send_vote(next_leader, vote)

    def _send_vote(self, next_leader: NodeId, vote: Vote) -> None:
        # With ``broadcast_votes`` every replica forms the QC itself and commits one message
        # delay sooner than when it waits for the next leader's proposal to carry the QC.
        if self.config.broadcast_votes:
            self._broadcast(vote)
        else:
            self._send(next_leader, vote)

    def _on_vote(self, sender: NodeId, v: Vote) -> None:
        if v.voter != sender:
            raise InvalidMessage("vote signed by another node than its sender")
        if not self.config.broadcast_votes and self.leader(Round(v.round + 1)) != self.me:
            return
        if v.round <= self.high_qc.round or v.round > self.round + self.config.max_future_rounds:
            return
        votes = self.votes.setdefault(v.round, {})
        prior = votes.get(v.voter)
        if prior is not None:
            if prior.block_id != v.block_id:
                self.stats.equivocations_seen += 1
            return
        v.verify(self.committee, self.chain_id)
        votes[v.voter] = v
        same = sorted((x.voter, x.signature) for x in votes.values() if x.block_id == v.block_id)
        if len(same) >= self.committee.quorum:
            qc = QuorumCert(v.round, v.block_id, tuple(same))
            del self.votes[v.round]
            self.stats.qcs_formed += 1
            self._process_qc(qc, None)

    # ---- timeouts ------------------------------------------------------------------------

    def _on_timer(self, round: Round) -> None:
        if round != self.round:
            return
        if self.qcs or self.waiting or self.high_qc.block_id not in self.blocks:
            # Something we saw is still missing: ask the next peer in turn.
            self._sync_peer = (self._sync_peer + 1) % self.committee.n
            if self._sync_peer == self.me:
                self._sync_peer = (self._sync_peer + 1) % self.committee.n
            self._sync_until = -1.0
            self._request_sync(NodeId(self._sync_peer))
        self._local_timeout()
        self._arm_timer()  # re-broadcast later if the round is still stuck

    def _local_timeout(self) -> None:
        rnd = self.round
        tc_round = None if self.high_tc is None else self.high_tc.round
        if not self.timeout_rule.allows(self.safety, rnd, self.high_qc.round, tc_round):
            return
        last_tc = self.high_tc if tc_round == rnd - 1 else None
        t = TimeoutMsg.create(self.chain_id, rnd, self.high_qc, self.me, self.signer, last_tc)
        self.safety = self.safety.after_timeout(rnd)
        self._persist(safety=self.safety)  # durable before the timeout leaves
        self.timed_out_round = rnd
        self.stats.timeouts_sent += 1
        self._broadcast(t)

    def _on_timeout(self, sender: NodeId, t: TimeoutMsg) -> None:
        if t.sender != sender:
            raise InvalidMessage("timeout signed by another node than its sender")
        if t.round > self.round + self.config.max_future_rounds:
            return
        known = self.timeouts.get(t.round, {})
        if sender in known:
            return
        t.verify(self.committee, self.chain_id)
        if t.last_tc is not None:
            self._process_tc(t.last_tc, sender)
        self._process_qc(t.high_qc, sender)
        if t.round < self.round:
            return
        known = self.timeouts.setdefault(t.round, {})
        known[sender] = t
        if (
            t.round == self.round
            and len(known) > self.committee.f
            and self.timed_out_round < self.round
        ):
            self._local_timeout()  # f+1 timed out: at least one honest did, so join
        if len(known) >= self.committee.quorum:
            entries = sorted((x.sender, x.high_qc.round, x.signature) for x in known.values())
            best = max(known.values(), key=lambda x: x.high_qc.round).high_qc
            tc = TimeoutCert(t.round, tuple(entries), best)
            del self.timeouts[t.round]
            self.stats.tcs_formed += 1
            self._process_tc(tc, None)

    # ---- commit --------------------------------------------------------------------------

    def _check_commit(self, certified: Block, qc: QuorumCert) -> None:
        """``qc`` certifies ``certified``; commit its parent if the rounds are consecutive."""
        parent = self.blocks.get(certified.parent_id)
        if parent is None or parent.height <= self.root.height:
            return
        if not self.commit_rule.commits(parent.round, certified.round):
            return
        self._commit(parent, certified.qc, (certified, qc))

    def _commit(
        self, target: Block, target_qc: QuorumCert, witness: tuple[Block, QuorumCert]
    ) -> None:
        chain: list[Block] = []
        b: Block | None = target
        while b is not None and b.height > self.root.height:
            chain.append(b)
            b = self.blocks.get(b.parent_id)
        if b is None or b.id != self.root.id:
            self.stats.conflicting_commits += 1
            return
        chain.reverse()
        commits: list[CommittedBlock] = []
        for i, blk in enumerate(chain):
            cert = chain[i + 1].qc if i + 1 < len(chain) else target_qc
            delivered, dropped = self.window.filter(blk.payloads)
            self.window.add_block(delivered)
            self.mempool.remove(blk.payloads)
            commits.append(
                CommittedBlock(
                    blk.height, blk.round, blk.id, delivered, cert, blk.timestamp_ms, blk, dropped
                )
            )
            self.stats.payloads_committed += len(delivered)
            self.stats.duplicates_dropped += len(dropped)
        self.stats.blocks_committed += len(commits)
        self._out.append(Persist(commits=tuple(commits), witness=witness))
        self._deliveries.extend(Deliver(c) for c in commits)
        self.root, self.root_qc = target, target_qc
        self.witness = witness
        self.last_commit_qc_round = max(self.last_commit_qc_round, witness[1].round)
        self.last_commit_time = self._now
        root_h = target.height
        self.blocks = {k: v for k, v in self.blocks.items() if v.height > root_h or k == target.id}
        self.waiting = {r: w for r, w in self.waiting.items() if r > target.round}

    # ---- catch-up ------------------------------------------------------------------------

    def _request_sync(self, peer: NodeId) -> None:
        if self._now < self._sync_until:
            return
        self._sync_until = self._now + self.config.sync_retry
        self.stats.sync_requests_sent += 1
        # Ask from the tip of what we hold (blocks we hold may be certified but not yet
        # committed); after a response that did not connect, fall back to the root.
        if self._sync_from_root:
            start = self.root.height
        else:
            start = max(b.height for b in self.blocks.values())
        self._send(peer, SyncRequest(Height(start + 1), self.root.height))

    def _sync_allowed(self, sender: NodeId) -> bool:
        """Take a token from ``sender``'s bucket (refilled at ``sync_serve_rate`` per second
        of replica time, holding at most ``sync_serve_burst``); False if it is empty."""
        bucket = self._sync_tokens.get(sender)
        if bucket is None:
            cfg = self.config
            bucket = TokenBucket(cfg.sync_serve_rate, cfg.sync_serve_burst, self._now)
            self._sync_tokens[sender] = bucket
        return bucket.take(self._now)

    def _on_sync_request(self, sender: NodeId, req: SyncRequest) -> None:
        if not self._sync_allowed(sender):
            self.stats.sync_requests_throttled += 1
            return
        h = req.from_height
        if h <= self.root.height:
            limit = min(self.config.sync_batch, self.root.height - h + 1)
            self._out.append(ServeSync(sender, h, limit, self.witness))
            return
        if req.committed_height < self.root.height and self.witness is not None:
            # The requester holds our blocks but not the proof that the root is committed.
            self._send(sender, SyncResponse((self.witness[0],), self.witness[1]))
        chain: list[Block] = []
        b = self.blocks.get(self.high_qc.block_id)
        while b is not None and b.height >= h:
            chain.append(b)
            b = self.blocks.get(b.parent_id)
        if chain and b is not None:
            chain.reverse()
            qc = self.high_qc
            limit = self.config.sync_batch
            if len(chain) > limit:
                qc = chain[limit].qc  # certifies chain[limit - 1]
                chain = chain[:limit]
            self._send(sender, SyncResponse(tuple(chain), qc))

    def _on_sync_response(self, sender: NodeId, resp: SyncResponse) -> None:
        if not resp.blocks:
            return
        first = resp.blocks[0]
        if first.height <= self.root.height and resp.blocks[-1].height <= self.root.height:
            return
        parent = self.blocks.get(first.parent_id)
        if parent is None:
            self._sync_from_root = True
            raise InvalidMessage("sync chain does not extend a block we have")
        check_sync_chain(parent, resp, self.committee, self.chain_id)
        self._sync_until = -1.0
        self._sync_from_root = False
        self.stats.sync_blocks_received += len(resp.blocks)
        new = [b for b in resp.blocks if b.id not in self.blocks]
        if new:
            self._out.append(Persist(blocks=tuple(new)))
        for b in new:
            self.blocks[b.id] = b
            self.qcs.pop(b.id, None)
        certs = [b.qc for b in resp.blocks[1:]] + [resp.qc]
        for blk, qc in zip(resp.blocks, certs, strict=True):
            self._check_commit(blk, qc)
            if qc.round > self.high_qc.round:
                self.high_qc = qc
                self._hqc_dirty = True
        self._advance_round()
        self._try_propose()
        self._resume_waiting()
        if self.high_qc.block_id not in self.blocks:
            self._request_sync(sender)
