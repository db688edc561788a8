"""TokenBucket: a burst, then a steady rate, in the caller's time."""

from __future__ import annotations

import pytest

from consensus import TokenBucket


def test_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=4.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.125)  # half a token
    assert bucket.take(100.25)  # one token per 0.25 s
    assert not bucket.take(100.25)
    # A long pause refills to the burst, not beyond.
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=50.0)
    assert bucket.take(50.0)
    assert not bucket.take(10.0)
    assert not bucket.take(50.5)
    assert bucket.take(51.0)


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (1.0, 0)])
def test_bad_parameters(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)
