"""Message codecs (round trips, strict decoding) and certificate verification (DESIGN §9)."""

from __future__ import annotations

import msgpack
import pytest

from consensus import (
    Block,
    ChainId,
    Committee,
    Height,
    Message,
    NodeId,
    Proposal,
    QuorumCert,
    Round,
    SyncRequest,
    SyncResponse,
    TimeoutCert,
    TimeoutMsg,
    Vote,
    decode_message,
    encode_message,
    genesis_block,
    genesis_qc,
    is_catch_up,
)
from consensus.errors import DecodeError, InvalidCertificate, InvalidSignature
from consensus.testing import make_committee

CHAIN = ChainId(b"test-chain")
SIGNERS, KEYS = make_committee(4)
COMMITTEE = Committee(KEYS)


def block(round: int = 1, payloads: tuple[bytes, ...] = (b"a", b"b")) -> Block:
    return Block.create(
        CHAIN,
        Round(round),
        Height(1),
        genesis_qc(CHAIN),
        1000,
        NodeId(round % 4),
        payloads,
        SIGNERS[round % 4],
    )


def qc_for(b: Block, signers: list[int], chain: ChainId = CHAIN) -> QuorumCert:
    votes = [Vote.create(chain, b.round, b.id, NodeId(i), SIGNERS[i]) for i in signers]
    return QuorumCert(b.round, b.id, tuple(sorted((v.voter, v.signature) for v in votes)))


def tc_for(round: int, hqc: QuorumCert, signers: list[int]) -> TimeoutCert:
    ts = [TimeoutMsg.create(CHAIN, Round(round), hqc, NodeId(i), SIGNERS[i], None) for i in signers]
    return TimeoutCert(Round(round), tuple((t.sender, hqc.round, t.signature) for t in ts), hqc)


def test_round_trips() -> None:
    b = block()
    qc = qc_for(b, [0, 1, 2])
    tc = tc_for(3, qc, [0, 1, 3])
    msgs: list[Message] = [
        Proposal(b),
        Proposal(b, tc),
        Vote.create(CHAIN, b.round, b.id, NodeId(2), SIGNERS[2]),
        TimeoutMsg.create(CHAIN, Round(4), qc, NodeId(1), SIGNERS[1], tc),
        SyncRequest(Height(5), Height(2)),
        SyncResponse((b,), qc),
    ]
    for m in msgs:
        data = encode_message(m)
        assert decode_message(data, CHAIN) == m
        assert encode_message(decode_message(data, CHAIN)) == data  # canonical
        # Transports route catch-up by the header alone; it must agree with the decoding.
        assert is_catch_up(data) == isinstance(m, (SyncRequest, SyncResponse))
    assert not any(is_catch_up(d) for d in (b"", b"\x93\x01", b"\x93\x02\x04xx", b"\x92\x01\x05x"))
    assert QuorumCert.decode(qc.encode()) == qc
    assert Block.decode(b.encode(), CHAIN).id == b.id


def test_block_id_binds_chain_and_content() -> None:
    b = block()
    assert Block.decode(b.encode(), ChainId(b"other")).id != b.id
    assert block(payloads=(b"a",)).id != b.id
    b.verify_signature(COMMITTEE)
    moved = Block.decode(b.encode(), ChainId(b"other"))
    with pytest.raises(InvalidSignature):
        moved.verify_signature(COMMITTEE)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xc1", "not canonical"),
        (msgpack.packb([2, 1, []]), "unsupported wire version"),
        (msgpack.packb([1, 99, []]), "unknown tag"),
        (msgpack.packb([1, 2, [1, b"x" * 32, 0]]), "expected 4 fields"),
        (msgpack.packb([1, 2, [1, b"x" * 31, 0, b"s" * 64]]), "expected 32 bytes"),
        (msgpack.packb([1, 2, [True, b"x" * 32, 0, b"s" * 64]]), "expected int"),
        (msgpack.packb([1, 2, [-1, b"x" * 32, 0, b"s" * 64]]), "outside"),
        (msgpack.packb([1, 4, [5, 1]]) + b"\x00", "not canonical"),
        (msgpack.packb({"a": 1}), "not canonical"),
        (msgpack.packb([1, 4, ["5", 1]]), "expected int"),
    ],
)
def test_strict_decoding(data: bytes, needle: str) -> None:
    with pytest.raises(DecodeError, match=needle):
        decode_message(data, CHAIN)


def test_qc_decoding_rejects_unsorted_or_duplicate_signers() -> None:
    qc = qc_for(block(), [0, 1, 2])
    wire = qc.to_wire()
    wire[2] = [wire[2][1], wire[2][0], wire[2][2]]
    with pytest.raises(DecodeError, match="strictly increasing"):
        QuorumCert.decode(msgpack.packb(wire))
    wire[2] = [wire[2][0], wire[2][0], wire[2][2]]
    with pytest.raises(DecodeError, match="strictly increasing"):
        QuorumCert.decode(msgpack.packb(wire))


def test_qc_verification() -> None:
    b = block()
    qc_for(b, [0, 1, 2]).verify(COMMITTEE, CHAIN)
    qc_for(b, [0, 1, 2, 3]).verify(COMMITTEE, CHAIN)
    genesis_qc(CHAIN).verify(COMMITTEE, CHAIN)
    good = qc_for(b, [0, 1, 2])
    cases = {
        "duplicate signers": QuorumCert(b.round, b.id, (good.signatures[0],) * 3),
        "fewer than 2f+1": qc_for(b, [0, 1]),
        "transplanted round": QuorumCert(Round(b.round + 1), b.id, good.signatures),
        "other block": QuorumCert(b.round, genesis_block(CHAIN).id, good.signatures),
        "other chain": qc_for(b, [0, 1, 2], ChainId(b"other")),
        "non-member signer": QuorumCert(b.round, b.id, ((NodeId(9), bytes(64)), *good.signatures)),
        "forged signature": QuorumCert(
            b.round, b.id, (*good.signatures[:2], (NodeId(3), bytes(64)))
        ),
        "fake genesis": QuorumCert(Round(0), b.id, ()),
    }
    for name, qc in cases.items():
        with pytest.raises(InvalidCertificate):
            qc.verify(COMMITTEE, CHAIN)
            pytest.fail(name)


def test_tc_verification() -> None:
    b = block()
    qc = qc_for(b, [0, 1, 2])
    tc_for(3, qc, [0, 1, 2]).verify(COMMITTEE, CHAIN)
    bad = [
        tc_for(3, qc, [0, 1]),  # too few
        TimeoutCert(Round(3), (tc_for(3, qc, [0]).entries[0],) * 3, qc),  # duplicates
        TimeoutCert(Round(4), tc_for(3, qc, [0, 1, 2]).entries, qc),  # transplanted round
        TimeoutCert(Round(3), tc_for(3, qc, [0, 1, 2]).entries, genesis_qc(CHAIN)),  # low hqc
    ]
    for tc in bad:
        with pytest.raises(InvalidCertificate):
            tc.verify(COMMITTEE, CHAIN)


def test_vote_and_timeout_signatures() -> None:
    b = block()
    v = Vote.create(CHAIN, b.round, b.id, NodeId(1), SIGNERS[1])
    v.verify(COMMITTEE, CHAIN)
    with pytest.raises(InvalidSignature):
        Vote(v.round, v.block_id, NodeId(2), v.signature).verify(COMMITTEE, CHAIN)
    with pytest.raises(InvalidSignature):
        v.verify(COMMITTEE, ChainId(b"other"))
    t = TimeoutMsg.create(CHAIN, Round(3), genesis_qc(CHAIN), NodeId(0), SIGNERS[0], None)
    t.verify(COMMITTEE, CHAIN)
    with pytest.raises(InvalidSignature):
        TimeoutMsg(Round(4), t.high_qc, t.sender, t.signature).verify(COMMITTEE, CHAIN)


def test_verification_cache_counts_each_signature_once() -> None:
    committee = Committee(KEYS)
    qc = qc_for(block(), [0, 1, 2])
    qc.verify(committee, CHAIN)
    qc.verify(committee, CHAIN)
    assert committee.verifications == 3


def test_plugged_verifier_decides_and_is_cached() -> None:
    """A committee with its own verifier uses it (not OpenSSL) for every signature, once."""
    calls: list[bytes] = []

    def counting(public_key: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(public_key)
        return True  # accepts anything: proves OpenSSL is not consulted

    lax = Committee(KEYS, counting)
    forged = QuorumCert(Round(1), block().id, tuple((NodeId(i), bytes(64)) for i in range(3)))
    forged.verify(lax, CHAIN)  # only the plugged verifier could accept zero signatures
    forged.verify(lax, CHAIN)
    assert calls == [KEYS[0], KEYS[1], KEYS[2]]
    with pytest.raises(InvalidCertificate):
        forged.verify(COMMITTEE, CHAIN)


def test_libsodium_verifier_agrees_with_openssl_on_votes() -> None:
    """The node's verifier (libsodium) accepts our votes and refuses what OpenSSL refuses."""
    from kmsnode.crypto.groups.ed25519 import verify_signature

    sodium = Committee(KEYS, verify_signature)
    qc = qc_for(block(), [0, 1, 2])
    qc.verify(sodium, CHAIN)
    assert sodium.verifications == 3
    v = Vote.create(CHAIN, Round(2), block().id, NodeId(1), SIGNERS[1])
    bad = Vote(v.round, v.block_id, v.voter, v.signature[:-1] + bytes([v.signature[-1] ^ 1]))
    for committee in (sodium, Committee(KEYS)):
        with pytest.raises(InvalidSignature):
            bad.verify(committee, CHAIN)
