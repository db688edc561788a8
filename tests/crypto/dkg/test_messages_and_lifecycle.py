"""Strict message decoding, the proof of knowledge, the session id and the lifecycle table."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from kmsnode.crypto import pok
from kmsnode.crypto.dkg import (
    TRANSITIONS,
    Committed,
    Complaint,
    Deal,
    HeightReached,
    Justification,
    Participant,
    Post,
    Rejected,
    SessionStateError,
    Start,
    Status,
    decode_message,
)
from kmsnode.crypto.dkg.testing import identities
from kmsnode.crypto.errors import InvalidEncoding, InvalidParameters, InvalidProof
from kmsnode.crypto.groups import ED25519, RISTRETTO255, Group

from ._sim import dkg_session, forge_deal

G = RISTRETTO255


@pytest.fixture
def setup() -> Any:
    ids = identities(4)
    return ids, dkg_session(G, ids, 3)


def test_round_trip_of_every_message(setup: Any) -> None:
    ids, s = setup
    deal, _ = forge_deal(s, ids[1], 1)
    c = Complaint.create(G, s.session_id, 2, 1, ids[2].signing_key)
    j = Justification.create(G, s.session_id, 1, 2, 42, ids[1].signing_key)
    for msg, cls in ((deal, Deal), (c, Complaint), (j, Justification)):
        data = msg.encode()
        back = cls.decode(G, data)
        assert back == msg and back.encode() == data
        back.verify_signature(ids[msg.sender].member.signing_key)
    assert "42" not in repr(j)  # the revealed share stays out of logs


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda f: f.__setitem__(0, 2), id="format version"),
        pytest.param(lambda f: f.__setitem__(1, 9), id="unknown type"),
        pytest.param(lambda f: f.__setitem__(2, "ed25519"), id="other group"),
        pytest.param(lambda f: f.__setitem__(3, b"x" * 31), id="short session id"),
        pytest.param(lambda f: f.__setitem__(4, 0), id="sender 0"),
        pytest.param(lambda f: f.__setitem__(4, True), id="sender bool"),
        pytest.param(lambda f: f.__setitem__(5, [b"\xff" * 32] * 3), id="non-canonical point"),
        pytest.param(lambda f: f.__setitem__(6, b"\xff" * 64), id="non-canonical proof scalar"),
        pytest.param(lambda f: f[7].reverse(), id="shares out of order"),
        pytest.param(lambda f: f[7].append(f[7][0]), id="duplicate recipient"),
        pytest.param(lambda f: f.__setitem__(-1, b"s" * 63), id="short signature"),
        pytest.param(lambda f: f.pop(5), id="missing field"),
    ],
)
def test_strict_decoding_rejects(setup: Any, mutate: Any) -> None:
    ids, s = setup
    deal, _ = forge_deal(s, ids[1], 1)
    fields = msgpack.unpackb(deal.encode(), raw=False)
    mutate(fields)
    with pytest.raises(InvalidEncoding):
        decode_message(G, msgpack.packb(fields, use_bin_type=True))


def test_non_canonical_msgpack_is_rejected(setup: Any) -> None:
    ids, s = setup
    c = Complaint.create(G, s.session_id, 2, 1, ids[2].signing_key)
    fields = msgpack.unpackb(c.encode(), raw=False)
    # The same array, but the dealer id as a 2-byte uint where 1 byte suffices.
    data = bytearray(c.encode())
    idx = data.index(bytes([fields[5]]), 40)
    noncanon = bytes(data[:idx]) + b"\xcd\x00" + bytes([fields[5]]) + bytes(data[idx + 1 :])
    with pytest.raises(InvalidEncoding):
        decode_message(G, noncanon)
    for junk in (b"", b"\xc1", b"\x93\x01\x02", b"x" * 100):
        with pytest.raises(InvalidEncoding):
            decode_message(G, junk)


@pytest.mark.parametrize("group", [RISTRETTO255, ED25519], ids=lambda g: g.name)
def test_proof_of_knowledge_is_bound_to_prover_and_context(group: Group[Any]) -> None:
    x = group.random_scalar()
    y = group.base_mul(x)
    proof = pok.prove(group, x, y, prover=3, context=b"session-a")
    pok.verify(group, proof, y, prover=3, context=b"session-a")
    for prover, context in ((4, b"session-a"), (3, b"session-b")):
        with pytest.raises(InvalidProof):
            pok.verify(group, proof, y, prover=prover, context=context)
    with pytest.raises(InvalidProof):
        pok.verify(group, proof, group.base_mul(x + 1), prover=3, context=b"session-a")
    assert pok.SchnorrProof.decode(group, proof.encode(group)) == proof


def test_session_id_binds_every_parameter(setup: Any) -> None:
    ids, s = setup
    assert dkg_session(G, ids, 3).session_id == s.session_id
    assert dkg_session(G, ids, 2).session_id != s.session_id
    assert dkg_session(G, ids, 3, version=2).session_id != s.session_id
    assert dkg_session(G, ids, 3, deal_deadline=1).session_id != s.session_id
    with pytest.raises(InvalidParameters):
        dkg_session(G, ids, 5)
    with pytest.raises(InvalidParameters):
        dkg_session(G, ids, 3, deal_deadline=4, complaint_deadline=4)


def test_transition_table_is_the_lifecycle() -> None:
    assert TRANSITIONS[Status.CREATED] == {Status.DEALING}
    assert TRANSITIONS[Status.JUSTIFYING] == {Status.COMPLETED, Status.FAILED}
    assert not TRANSITIONS[Status.COMPLETED] and not TRANSITIONS[Status.FAILED]
    assert set(TRANSITIONS) == set(Status)


def test_driver_misuse_gets_operator_readable_errors(setup: Any) -> None:
    ids, s = setup
    p = Participant(s, signing_key=ids[1].signing_key, sealing_key=ids[1].sealing_key, id=1)
    with pytest.raises(SessionStateError, match=r"handle\(Start\(\)\) before"):
        p.handle(HeightReached(1))
    actions = p.handle(Start())
    assert isinstance(actions[0], Post) and isinstance(actions[0].message, Deal)
    with pytest.raises(SessionStateError, match="cannot start the session while dealing"):
        p.handle(Start())
    p.handle(HeightReached(3))
    with pytest.raises(SessionStateError, match="height went back"):
        p.handle(HeightReached(2))
    with pytest.raises(InvalidParameters, match="signing key is not the one"):
        Participant(s, signing_key=ids[2].signing_key, sealing_key=ids[1].sealing_key, id=1)
    with pytest.raises(InvalidParameters, match="not in the session's committee"):
        Participant(s, signing_key=ids[1].signing_key, sealing_key=ids[1].sealing_key, id=9)


def test_garbage_and_foreign_session_messages_are_rejected(setup: Any) -> None:
    ids, s = setup
    other = dkg_session(G, ids, 3, version=7)
    p = Participant(s, signing_key=ids[1].signing_key, sealing_key=ids[1].sealing_key, id=1)
    p.handle(Start())
    (r1,) = p.handle(Committed(1, b"garbage"))
    assert isinstance(r1, Rejected) and "undecodable" in r1.reason
    foreign = Complaint.create(G, other.session_id, 2, 1, ids[2].signing_key).encode()
    (r2,) = p.handle(Committed(1, foreign))
    assert isinstance(r2, Rejected) and "another session" in r2.reason
    (r3,) = p.handle(
        Committed(1, Complaint.create(G, s.session_id, 2, 3, ids[2].signing_key).encode())
    )
    assert isinstance(r3, Rejected) and "has no deal" in r3.reason


def test_unsettled_posts_are_what_the_log_has_not_taken_while_it_still_counts() -> None:
    """A restarted driver posts these again: a deal, a complaint and a justification each
    stay unsettled until committed, and none outlives its phase's deadline."""
    from kmsnode.crypto.dkg import Committed, Complaint, Deal, HeightReached, Justification
    from kmsnode.crypto.dkg import Participant as P
    from kmsnode.crypto.dkg import Start as S
    from kmsnode.crypto.dkg.testing import identities

    from ._sim import dkg_session

    g = RISTRETTO255
    ids = identities(4)
    session = dkg_session(
        g, ids, 3, deal_deadline=4, complaint_deadline=8, justification_deadline=12
    )
    nodes = {
        i: P(session, signing_key=k.signing_key, sealing_key=k.sealing_key, id=i)
        for i, k in ids.items()
    }
    deals = {i: p.handle(S())[0].message for i, p in nodes.items()}  # type: ignore[union-attr]
    assert [type(p.message) for p in nodes[1].unsettled_posts()] == [Deal]
    # Dealer 2's share for node 1 is garbled: node 1 will complain about it.
    d2 = deals[2]
    garbled = tuple((j, b"\x01" + bytes(60) if j == 1 else s) for j, s in d2.sealed_shares)  # type: ignore[union-attr]
    bad = Deal.create(g, d2.session_id, 2, d2.commitments, d2.proof, garbled, ids[2].signing_key)  # type: ignore[union-attr]
    posts: dict[int, list[object]] = {i: [] for i in nodes}
    for h, msg in enumerate([deals[1], bad, deals[3], deals[4]], start=1):
        for i, p in nodes.items():
            posts[i] += [
                a.message for a in p.handle(Committed(h, msg.encode())) if hasattr(a, "message")
            ]  # type: ignore[union-attr]
    complaint = next(m for m in posts[1] if isinstance(m, Complaint))
    assert [p.message for p in nodes[1].unsettled_posts()] == [complaint]  # its deal landed
    for p in nodes.values():
        posts_now = p.handle(Committed(5, complaint.encode()))
        if p is nodes[2]:
            justification = next(
                a.message for a in posts_now if isinstance(a.message, Justification)
            )  # type: ignore[union-attr]
    assert nodes[1].unsettled_posts() == []  # the complaint landed
    assert [p.message for p in nodes[2].unsettled_posts()] == [justification]
    nodes[2].handle(HeightReached(12))  # the justification deadline passed: too late to post
    assert nodes[2].unsettled_posts() == []
