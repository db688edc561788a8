"""Mempool: de-duplication, bounds, back-pressure and batching."""

from __future__ import annotations

import pytest

from consensus import Mempool
from consensus._mempool import ENTRY_OVERHEAD, CommittedWindow
from consensus.errors import MempoolFull, PayloadTooLarge


def add(m: Mempool, p: bytes) -> bool:
    return m.add(p)


def test_dedup_and_bounds() -> None:
    m = Mempool(max_payloads=3, max_bytes=1000, max_payload_bytes=10)
    assert add(m, b"a") and not add(m, b"a")
    assert add(m, b"b") and add(m, b"c")
    with pytest.raises(MempoolFull) as exc:
        add(m, b"d")
    assert exc.value.limit == 3
    with pytest.raises(PayloadTooLarge):
        add(m, b"x" * 11)
    st = m.stats()
    assert (st.pending, st.duplicates, st.rejected_full) == (3, 1, 1)


def test_byte_bound() -> None:
    m = Mempool(max_payloads=100, max_bytes=20, max_payload_bytes=10)
    assert add(m, b"x" * 10) and add(m, b"y" * 10)
    with pytest.raises(MempoolFull):
        add(m, b"z")


def test_batch_limits_and_exclusion() -> None:
    m = Mempool(max_payloads=100, max_bytes=10_000, max_payload_bytes=100)
    ps = [bytes([i]) * 10 for i in range(10)]
    for p in ps:
        add(m, p)
    assert m.batch(3, 1000, set()) == ps[:3]
    assert m.batch(100, 25, set()) == ps[:2]
    assert m.batch(3, 1000, {ps[0]}) == ps[1:4]
    m.remove(ps[:5])
    assert m.batch(100, 10_000, set()) == ps[5:]
    assert m.stats().pending_bytes == 50
    assert m.has_work(set()) and not m.has_work(set(ps))


def test_committed_window_filters_duplicates_and_evicts_whole_blocks() -> None:
    w = CommittedWindow(3)
    assert w.filter([b"a", b"b", b"a"]) == ((b"a", b"b"), (2,))
    w.add_block((b"a", b"b"))
    assert w.filter([b"c", b"a"]) == ((b"c",), (1,))
    w.add_block((b"c",))
    w.add_block((b"d", b"e"))  # 5 > 3: the oldest block goes
    assert b"a" not in w and b"c" in w and len(w) == 3
    w.add_block((b"f", b"g", b"h", b"i"))  # larger than the window: only it stays
    assert len(w) == 4 and b"d" not in w
    rebuilt = CommittedWindow(3)
    rebuilt.restore([(b"f", b"g", b"h", b"i")])
    assert len(rebuilt) == 4 and b"f" in rebuilt


def test_committed_window_is_bounded_in_bytes_too() -> None:
    o = ENTRY_OVERHEAD  # what each payload costs beyond its length
    w = CommittedWindow(1_000, max_bytes=100 + 2 * o)
    w.add_block((b"a" * 60,))
    w.add_block((b"b" * 30,))
    assert b"a" * 60 in w and len(w) == 2  # 90 bytes + 2 entries: both stay
    w.add_block((b"c" * 30,))  # 120 bytes + 3 entries > the bound: the oldest block goes
    assert b"a" * 60 not in w and b"b" * 30 in w and b"c" * 30 in w
    w.add_block((b"d" * 500,))  # one block over the bound: only it stays
    assert len(w) == 1 and b"d" * 500 in w
    rebuilt = CommittedWindow(1_000, max_bytes=100 + 2 * o)
    rebuilt.restore([(b"a" * 60,), (b"b" * 30,), (b"c" * 30,)])
    assert b"a" * 60 not in rebuilt and len(rebuilt) == 2


def test_committed_window_bounds_many_tiny_payloads_by_their_overhead() -> None:
    w = CommittedWindow(1_000_000, max_bytes=1_000 * (ENTRY_OVERHEAD + 1))
    for i in range(5_000):
        w.add_block((bytes([i % 256]) + i.to_bytes(3, "big"),))
    assert len(w) <= 1_000 * (ENTRY_OVERHEAD + 1) // (ENTRY_OVERHEAD + 4)
    assert w.payload_bytes <= 1_000 * (ENTRY_OVERHEAD + 1)
