"""Unit tests of the sans-I/O replica: action ordering, sender checks, restart safety."""

from __future__ import annotations

from consensus import (
    Block,
    ChainId,
    Config,
    Height,
    MemoryStore,
    MessageReceived,
    NodeId,
    PayloadSubmitted,
    Persist,
    Proposal,
    QuorumCert,
    Replica,
    Round,
    Send,
    SetTimer,
    Start,
    TimerFired,
    Vote,
    genesis_qc,
)
from consensus._events import Action, Broadcast
from consensus._replica import MAX_WAITING_PROPOSALS
from consensus.testing import make_committee

CHAIN = ChainId(b"unit")
SIGNERS, KEYS = make_committee(4, b"unit")


def replica(me: int = 2, store: MemoryStore | None = None) -> Replica:
    cfg = Config(chain_id=CHAIN, me=NodeId(me), public_keys=KEYS)
    return Replica(cfg, SIGNERS[me], None if store is None else store.load(1000))


def proposal(round: int = 1, payloads: tuple[bytes, ...] = (b"x",)) -> Proposal:
    leader = round % 4
    b = Block.create(
        CHAIN,
        Round(round),
        Height(1),
        genesis_qc(CHAIN),
        5,
        NodeId(leader),
        payloads,
        SIGNERS[leader],
    )
    return Proposal(b)


def apply(store: MemoryStore, actions: list[Action]) -> None:
    for a in actions:
        if isinstance(a, Persist):
            store.persist(a)


def test_safety_is_persisted_before_the_vote_leaves() -> None:
    r = replica(me=3)
    r.handle(Start(), 0.0)
    actions = r.handle(MessageReceived(NodeId(1), proposal()), 0.0)
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["Persist", "Send"], kinds
    persist, send = actions
    assert isinstance(persist, Persist) and isinstance(send, Send)
    assert persist.safety is not None and persist.safety.last_voted_round == 1
    assert isinstance(send.message, Vote) and send.to == 2  # the leader of round 2
    assert persist.safety.last_vote == send.message


def test_asked_again_resends_the_identical_vote() -> None:
    r = replica(me=3)
    p = proposal()
    first = r.handle(MessageReceived(NodeId(1), p), 0.0)
    again = r.handle(MessageReceived(NodeId(1), p), 0.0)
    vote1 = [a.message for a in first if isinstance(a, Send)]
    vote2 = [a.message for a in again if isinstance(a, Send)]
    assert vote1 == vote2 and len(vote1) == 1
    assert not any(isinstance(a, Persist) for a in again)


def test_never_votes_twice_in_a_round_even_after_restart() -> None:
    store = MemoryStore()
    r = replica(me=3, store=store)
    apply(store, r.handle(MessageReceived(NodeId(1), proposal(payloads=(b"a",))), 0.0))
    # Crash, restart from disk, and receive an equivocating proposal for the same round.
    r2 = replica(me=3, store=store)
    assert r2.safety.last_voted_round == 1
    actions = r2.handle(MessageReceived(NodeId(1), proposal(payloads=(b"b",))), 0.0)
    assert not any(isinstance(a, Send) for a in actions)
    # Amnesia (no store) would vote again: that is why the write comes first.
    r3 = replica(me=3)
    actions = r3.handle(MessageReceived(NodeId(1), proposal(payloads=(b"b",))), 0.0)
    assert any(isinstance(a, Send) for a in actions)


def test_messages_whose_claimed_sender_is_not_the_peer_are_rejected() -> None:
    r = replica(me=2)
    p = proposal()
    # The proposal is signed by node 1 (round 1's leader) but arrives from node 3.
    assert r.handle(MessageReceived(NodeId(3), p), 0.0) == []
    assert r.stats.invalid_messages == 1
    v = Vote.create(CHAIN, Round(1), p.block.id, NodeId(1), SIGNERS[1])
    r.handle(MessageReceived(NodeId(0), v), 0.0)
    assert r.stats.invalid_messages == 2
    # Its own id as sender is never accepted from the network.
    assert r.handle(MessageReceived(NodeId(2), p), 0.0) == []


def test_leader_proposes_when_payload_arrives_and_times_out_when_stuck() -> None:
    r = replica(me=1)  # leader of round 1
    start = r.handle(Start(), 0.0)
    assert [type(a) for a in start] == [SetTimer]
    actions = r.handle(PayloadSubmitted((b"hello",)), 0.0)
    proposals = [a for a in actions if isinstance(a, Broadcast)]
    assert len(proposals) == 1 and isinstance(proposals[0].message, Proposal)
    assert proposals[0].message.block.payloads == (b"hello",)
    # It voted for its own block (persist, then send to the next leader).
    assert any(isinstance(a, Persist) and a.safety for a in actions)
    fired = r.handle(TimerFired(Round(1)), 5.0)
    # Round 1 already voted: timing out round 1 is still allowed (round >= last_voted_round).
    kinds = [type(a).__name__ for a in fired]
    assert kinds[:2] == ["Persist", "Broadcast"] and kinds[-1] == "SetTimer"
    status = r.status()
    assert status.round == 1 and status.leader == 1 and status.height == 0
    assert [p.node for p in status.peers] == [0, 2, 3]


def certified_chain(length: int) -> list[Block]:
    """Blocks of rounds 1..length, each extending the previous one under its QC."""
    chain: list[Block] = []
    qc = genesis_qc(CHAIN)
    for rnd in range(1, length + 1):
        leader = rnd % 4
        b = Block.create(
            CHAIN, Round(rnd), Height(rnd), qc, 5, NodeId(leader), (b"p%d" % rnd,), SIGNERS[leader]
        )
        chain.append(b)
        votes = [Vote.create(CHAIN, b.round, b.id, NodeId(i), SIGNERS[i]) for i in (0, 1, 3)]
        qc = QuorumCert(b.round, b.id, tuple(sorted((v.voter, v.signature) for v in votes)))
    return chain


def test_proposals_arriving_newest_first_are_all_kept_and_link_up() -> None:
    # Reordered delivery (a stalled node catching up): each proposal's parent is missing
    # when it arrives, and all but the newest are for a round already passed.
    r = replica(me=0)  # rounds 1-3 are led by the others
    r.handle(Start(), 0.0)
    chain = certified_chain(3)
    for b in reversed(chain):
        r.handle(MessageReceived(NodeId(b.round % 4), Proposal(b)), 0.0)
    assert all(b.id in r.blocks for b in chain)
    assert r.root.id == chain[0].id  # B1 <- B2, certified by B3's QC: B1 commits
    assert not r.waiting and r.stats.invalid_messages == 0


def test_proposals_held_for_a_missing_parent_are_bounded() -> None:
    r = replica(me=2)
    r.handle(Start(), 0.0)
    chain = certified_chain(2 * MAX_WAITING_PROPOSALS)
    for b in reversed(chain[1:]):  # the first block never comes
        r.handle(MessageReceived(NodeId(b.round % 4), Proposal(b)), 0.0)
    assert len(r.waiting) == MAX_WAITING_PROPOSALS
    others = [b.round for b in chain if b.round % 4 != 2]  # replica 2's own are not "received"
    assert sorted(r.waiting) == others[-MAX_WAITING_PROPOSALS:]  # the newest are kept


def test_sync_requests_from_one_peer_are_served_at_a_bounded_rate() -> None:
    # Each SyncRequest costs a store read (or a chain walk and a send): a Byzantine member
    # repeating them is served a burst, then at sync_serve_rate per second; others are not
    # affected.
    from consensus import SyncRequest
    from consensus._events import ServeSync

    r = replica(me=0)
    r.handle(Start(), 0.0)
    for b in reversed(certified_chain(3)):
        r.handle(MessageReceived(NodeId(b.round % 4), Proposal(b)), 0.0)
    cfg = r.config
    ask = SyncRequest(Height(1), Height(0))

    def served(sender: int, now: float, times: int) -> int:
        sent = 0
        for _ in range(times):
            out = r.handle(MessageReceived(NodeId(sender), ask), now)
            sent += any(
                isinstance(a, ServeSync | Send) and getattr(a, "to", None) == sender for a in out
            )
        return sent

    assert served(1, 1.0, 3 * cfg.sync_serve_burst) == cfg.sync_serve_burst
    assert r.stats.sync_requests_throttled == 2 * cfg.sync_serve_burst
    assert served(2, 1.0, 1) == 1  # another peer has its own bucket
    # A tenth of a second later, sync_serve_rate / 10 more are served to the first peer.
    assert served(1, 1.1, 3 * cfg.sync_serve_burst) == int(cfg.sync_serve_rate * 0.1)
