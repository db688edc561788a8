"""The log's FROST nonce-commitment pools: batches in sequence, signed, bounded; a commitment
is handed out at most once, and every replica agrees on who signs with what."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto.errors import InvalidEncoding
from kmsnode.crypto.groups import ED25519
from kmsnode.state import MAX_POOL, logged_commitments
from kmsnode.state._nonces import NoncePools
from kmsnode.wire.payload import NoncePayload

CHAIN = "pool-test"
KEYS = {i: Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in (1, 2, 3, 4)}
PUBLIC = {i: k.public_key().public_bytes_raw() for i, k in KEYS.items()}


def commitment(tag: int) -> bytes:
    d = int.from_bytes(hashlib.sha256(b"d%d" % tag).digest(), "little") % ED25519.order
    e = int.from_bytes(hashlib.sha256(b"e%d" % tag).digest(), "little") % ED25519.order
    return ED25519.base_mul(d) + ED25519.base_mul(e)


COMMITMENTS = [commitment(i) for i in range(64)]


def batch(
    node: int, seq: int, count: int, *, replace: bool = False, start: int = 0
) -> NoncePayload:
    items = tuple(COMMITMENTS[(start + k) % len(COMMITMENTS)] for k in range(count))
    return NoncePayload(node, seq, replace, items).signed(CHAIN, KEYS[node])


def test_batches_are_taken_in_sequence_once_and_signed_by_their_node() -> None:
    pools = NoncePools(CHAIN, PUBLIC)
    assert pools.add(batch(1, 0, 4))
    assert not pools.add(batch(1, 0, 4))  # the same seq again (a replayed payload)
    assert not pools.add(batch(1, 2, 4))  # a gap
    assert pools.add(batch(1, 1, 4))
    forged = NoncePayload(2, 0, False, (COMMITMENTS[0],)).signed(CHAIN, KEYS[1])
    assert not pools.add(forged)
    stranger = NoncePayload(9, 0, False, (COMMITMENTS[0],)).signed(CHAIN, KEYS[1])
    assert not pools.add(stranger)
    identity = NoncePayload(3, 0, False, (bytes([1]) + bytes(31) + COMMITMENTS[0][32:],))
    assert not pools.add(identity.signed(CHAIN, KEYS[3]))
    assert pools.available(1) == 8 and pools.rejected_batches == 5


def test_a_pool_is_bounded_and_replace_starts_it_over() -> None:
    pools = NoncePools(CHAIN, PUBLIC)
    seq = 0
    while pools.available(1) + 64 <= MAX_POOL:
        assert pools.add(batch(1, seq, 64))
        seq += 1
    assert not pools.add(batch(1, seq, 64))  # would overflow
    assert pools.add(batch(1, seq, 8, replace=True, start=3))
    assert pools.available(1) == 8
    assert [ref.seq for ref, _ in pools.pool(1).entries] == [seq] * 8


def test_choose_needs_t_ready_nodes_and_puts_avoided_ones_last() -> None:
    pools = NoncePools(CHAIN, PUBLIC)
    for node in (1, 2, 3):
        pools.add(batch(node, 0, 2))
    assert pools.choose(b"r" * 32, [1, 2, 3, 4], (), 4, 1) is None  # node 4 has none
    assert pools.choose(b"r" * 32, [1, 2, 3, 4], (1,), 2, 1) == [2, 3]
    assert pools.choose(b"r" * 32, [1, 2, 3, 4], (1, 2, 3), 3, 1) == [1, 2, 3]


def test_nodes_that_proposed_nothing_lately_come_last() -> None:
    pools = NoncePools(CHAIN, PUBLIC)
    for node in (1, 2, 3, 4):
        pools.add(batch(node, 0, 2))
    assert not pools.stale(4, 100)  # no block has named a proposer yet
    for height in range(1, 40):
        pools.proposed((1, 2, 3)[height % 3], height)
    assert pools.stale(4, 39) and not pools.stale(1, 39)
    for k in range(20):
        request = bytes([k]) * 32
        assert 4 not in pools.choose(request, [1, 2, 3, 4], (), 3, 39)  # type: ignore[operator]
        # A stale node still comes before one the client asked to avoid (it saw it fail; a
        # node back from a restart is stale until it proposes again)...
        assert pools.choose(request, [1, 2, 3, 4], (1,), 3, 39) == [2, 3, 4]
        assert pools.choose(request, [1, 2, 3, 4], (1, 2), 3, 39) in ([1, 3, 4], [2, 3, 4])
        assert pools.choose(request, [1, 2, 3, 4], (1,), 4, 39) == [1, 2, 3, 4]
        # ... where rules v2 put staleness first.
        v2 = pools.choose(request, [1, 2, 3, 4], (1, 2), 3, 39, avoid_first=False)
        assert v2 == [1, 2, 3]
        assert pools.choose(request, [1, 2, 3, 4], (1,), 3, 39, avoid_first=False) == [1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("batch"), st.integers(1, 4), st.integers(1, 64), st.booleans()),
            st.tuples(
                st.just("sign"), st.binary(min_size=32, max_size=32), st.sets(st.integers(1, 4))
            ),
        ),
        max_size=40,
    )
)
def test_no_commitment_is_handed_out_twice_and_replicas_agree(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    replicas = [NoncePools(CHAIN, PUBLIC), NoncePools(CHAIN, PUBLIC)]
    spent: set[tuple[int, int, int]] = set()
    start = 0
    for op in ops:
        if op[0] == "batch":
            _, node, count, replace = op
            payload = batch(
                node, replicas[0].pool(node).next_seq, count, replace=replace, start=start
            )
            start += count
            outcomes = {r.add(payload) for r in replicas}
            assert len(outcomes) == 1
        else:
            _, request_id, avoid = op
            picks = [r.choose(request_id, [1, 2, 3, 4], avoid, 2, 1) for r in replicas]
            assert picks[0] == picks[1]
            if picks[0] is None:
                continue
            for node in picks[0]:
                taken = {r.spend(node) for r in replicas}
                assert len(taken) == 1
                ref, _ = taken.pop()
                assert (node, ref.seq, ref.position) not in spent
                spent.add((node, ref.seq, ref.position))
        for r in replicas:
            assert all(r.available(i) <= MAX_POOL for i in PUBLIC)


def test_logged_commitments_keep_the_logs_bytes_and_refuse_malformed_entries() -> None:
    entry = (3).to_bytes(2, "big") + COMMITMENTS[0]
    (c,) = logged_commitments([entry])
    assert (c.identifier, c.hiding + c.binding) == (3, COMMITMENTS[0])
    for bad in (entry[:-1], bytes(2) + COMMITMENTS[0]):
        with pytest.raises(InvalidEncoding):
            logged_commitments([bad])
