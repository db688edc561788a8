"""A token bucket driven by the caller's clock (sans-I/O): how often something may happen."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``burst`` events back to back, then ``rate`` per second (of the caller's time).

    Starts full. ``take(now)`` spends one token if one is left; times must not go backwards
    (an earlier ``now`` is treated as no time passing).
    """

    __slots__ = ("_since", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("a token bucket needs rate >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._since = now

    def take(self, now: float) -> bool:
        """Spend one token at time ``now``; False (nothing spent) if the bucket is empty."""
        if now > self._since:
            self._tokens = min(float(self.burst), self._tokens + (now - self._since) * self.rate)
            self._since = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
