"""Replay protection (part of the replicated state, pure): the requests served inside the
nonce window, so a request is served once and a nonce is not reused."""

from __future__ import annotations

from collections import deque

from ._denied import Denied

NONCE_WINDOW_MS = 10 * 60 * 1000
"""A request's nonce carries its creation time (``nonce >> 16`` is Unix ms); the log accepts it
within this window of the block's time, so the replay set only needs to cover the window."""


class ReplayWindow:
    """Served requests of the last NONCE_WINDOW_MS: client key + 8-byte nonce -> the first 8
    bytes of the request id served under it (the window holds every request of the last ten
    minutes, so each entry's size matters), and the order they came in. The id tells a replay
    (answered by the nodes' caches, silently here) from another request that reused the nonce
    (refused with a reply, so its client can retry)."""

    def __init__(self) -> None:
        self._served: dict[bytes, bytes] = {}
        self._order: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._served)

    def admit(self, client: bytes, nonce: int, request_id: bytes, now_ms: int) -> None:
        """Record a request to be served now.

        Raises:
            Denied: ``stale_request`` (nonce time outside the window), ``replay`` (this very
                request was served) or ``nonce_reused`` (another request used the nonce).
        """
        if abs((nonce >> 16) - now_ms) > NONCE_WINDOW_MS:
            raise Denied(
                "stale_request",
                "the request's nonce time is outside the accepted window; check the client clock",
            )
        key = client + nonce.to_bytes(8, "big")
        served = self._served.get(key)
        if served is not None:
            if served == request_id[:8]:
                raise Denied("replay", "this request was already served")
            raise Denied(
                "nonce_reused",
                "this client already used this nonce for another request: sign it again "
                "with a fresh nonce",
            )
        self._served[key] = request_id[:8]
        self._order.append(key)

    def prune(self, now_ms: int) -> None:
        """Forget requests older than the window. Arrival order is nearly nonce-time order; an
        entry stuck behind a newer one is kept a little longer, which only makes replay
        protection stricter."""
        horizon = now_ms - NONCE_WINDOW_MS
        order = self._order
        while order and int.from_bytes(order[0][32:], "big") >> 16 < horizon:
            self._served.pop(order.popleft(), None)
