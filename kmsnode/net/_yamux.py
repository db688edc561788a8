"""Receive-window credit for py-libp2p's yamux streams: batched at half the window, as go-yamux.

py-libp2p 0.8's ``YamuxStream._auto_tune_and_send_window_update`` has a "partial slack" branch
that credits the peer after almost every read (it re-credits bytes its pending counter already
holds), so each small message costs an extra WINDOW_UPDATE frame, Noise message and syscall
back, whatever ``PY_YAMUX_RELEASE_ON_READ`` says: measured, 2 updates per decrypt at the client
(4 answers of 1.5 KB). ``install`` replaces that one method with the go-yamux rule: count what
the application consumed and send one update once it reaches half the receive window. The
window stays at its 256 KiB default (no auto-tuning): our messages are small, and a bulk
transfer (catch-up) costs one round trip per 128 KiB.
"""

from __future__ import annotations

import logging

from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE, YamuxStream

__all__ = ["CREDIT_THRESHOLD", "install"]

_log = logging.getLogger("kmsnode.net.yamux")

CREDIT_THRESHOLD = DEFAULT_WINDOW_SIZE // 2
"""Consumed bytes that trigger one WINDOW_UPDATE."""

_METHODS = ("_auto_tune_and_send_window_update", "send_window_update")


async def _credit_at_half_window(self: YamuxStream, *, bytes_read: int = 0) -> None:
    # No awaits until the counters are settled, so no lock is needed: trio switches tasks only
    # at awaits, and ``handle_incoming`` only ever subtracts from ``recv_window``.
    if bytes_read <= 0:
        return
    consumed = getattr(self, "_kms_consumed", 0) + bytes_read
    if consumed < CREDIT_THRESHOLD:
        self._kms_consumed = consumed  # type: ignore[attr-defined]
        return
    self._kms_consumed = 0  # type: ignore[attr-defined]
    self.recv_window += consumed
    await self.send_window_update(consumed, skip_lock=True)


def install() -> bool:
    """Use the batched credit rule for every yamux stream in this process; False (and a
    warning) if this py-libp2p does not have the method it replaces."""
    if not all(hasattr(YamuxStream, a) for a in _METHODS):
        _log.warning("py-libp2p's YamuxStream changed: keeping its own window updates")
        return False
    YamuxStream._auto_tune_and_send_window_update = _credit_at_half_window  # type: ignore[method-assign]
    return True
