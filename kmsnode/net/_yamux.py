"""Receive-window credit for py-libp2p's yamux streams: batched at half the window, as go-yamux.

py-libp2p 0.8's ``YamuxStream._auto_tune_and_send_window_update`` has a "partial slack" branch
that credits the peer after almost every read (it re-credits bytes its pending counter already
holds), so each small message costs an extra WINDOW_UPDATE frame, Noise message and syscall
back, whatever ``PY_YAMUX_RELEASE_ON_READ`` says: measured, 2 updates per decrypt at the client
(4 answers of 1.5 KB). ``install`` replaces that one method with the go-yamux rule: count what
the application consumed and send one update once it reaches half the receive window. The
window stays at its 256 KiB default (no auto-tuning): our messages are small, and a bulk
transfer (catch-up) costs one round trip per 128 KiB.

It also makes the window binding. py-libp2p reads a DATA frame of any announced length into
memory and, when a peer sends past the window, only logs it and keeps buffering, so a peer
could grow a node's memory on a stream the node is not reading. Here a frame longer than the
window, or data past it, is a protocol violation that closes the connection (as go-yamux does).
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE, Yamux, YamuxStream

__all__ = ["CREDIT_THRESHOLD", "WindowViolation", "install"]

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


class WindowViolation(trio.TooSlowError):
    """A peer sent more than the receive window allows: its connection is closed.

    A ``TooSlowError`` because that is the one error py-libp2p's frame loop lets out of its
    DATA handling and answers by closing the connection (others only close the stream, and
    the connection would go on out of sync); the warning logged with it names the cause."""


_plain_read_data_body = Yamux._read_data_body


async def _read_data_body_within_window(self: Yamux, length: int) -> bytes:
    if length > DEFAULT_WINDOW_SIZE:
        _log.warning("closing a yamux connection: a DATA frame of %d bytes", length)
        raise WindowViolation(f"a DATA frame of {length} bytes exceeds the receive window")
    return await _plain_read_data_body(self, length)


def _get_recv_window(self: YamuxStream) -> int:
    return self._kms_recv_window  # type: ignore[attr-defined,no-any-return]


def _set_recv_window(self: YamuxStream, value: int) -> None:
    # The muxer subtracts what arrived before it checks: below zero, the peer overran.
    if value < 0:
        _log.warning("closing a yamux connection: data %d bytes past the window", -value)
        raise WindowViolation(f"data {-value} bytes past the receive window")
    self._kms_recv_window = value  # type: ignore[attr-defined]


def install() -> bool:
    """Use the batched credit rule for every yamux stream in this process; False (and a
    warning) if this py-libp2p does not have the method it replaces."""
    if not all(hasattr(YamuxStream, a) for a in _METHODS):
        _log.warning("py-libp2p's YamuxStream changed: keeping its own window updates")
        return False
    YamuxStream._auto_tune_and_send_window_update = _credit_at_half_window  # type: ignore[method-assign]
    if hasattr(Yamux, "_read_data_body"):
        Yamux._read_data_body = _read_data_body_within_window  # type: ignore[method-assign]
        prop: Any = property(_get_recv_window, _set_recv_window)
        YamuxStream.recv_window = prop
    else:
        _log.warning("py-libp2p's Yamux changed: its receive window is not enforced")
    return True
