"""Fewer scheduler passes per message in py-libp2p's TCP + Noise + yamux path.

A lone message through py-libp2p 0.8 costs about ten ``trio.Lock`` acquisitions (raw socket
read and write locks, yamux's stream table and write locks, the net stream's state lock) and
two socket reads per Noise message (its 2-byte length, then its body). Each uncontended
``trio.Lock.acquire`` and each socket read yields to the scheduler once, and each yield is a
whole event-loop pass. ``install`` changes three things, all invisible to the protocols:

- those objects' locks become ``QuickLock`` (and the yamux stream's writer semaphore a
  ``QuickSemaphore``): still mutual exclusion with FIFO hand-off, but an acquire that finds
  the lock free returns without yielding (only a contended one parks);
- yamux's frame writer loses its per-frame debug formatting and a checkpoint that follows the
  socket send, which is a checkpoint itself;
- ``TrioTCPStream.read`` reads up to 64 KiB per ``recv`` and serves later reads from what is
  left over, so a Noise frame (or several queued ones) costs one ``recv`` instead of two each.

``scripts/bench_net.py`` measures it against py-libp2p as shipped in the same run: a lone
round trip through the mesh took 0.56 ms instead of 1.04 ms (0.63 instead of 1.06 ms of CPU).
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from libp2p.io.trio import TrioTCPStream
from libp2p.network.stream.net_stream import NetStream
from libp2p.stream_muxer.rw_lock import ReadWriteLock
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

from consensus import QuickLock, QuickSemaphore

__all__ = ["READ_CHUNK", "QuickLock", "QuickSemaphore", "install", "installed"]

_log = logging.getLogger("kmsnode.net.fastpath")

READ_CHUNK = 65536
"""Bytes asked of the socket per ``recv`` (a whole Noise message fits)."""

_PATCHED = (TrioTCPStream, Yamux, YamuxStream, NetStream, ReadWriteLock)
_installed = False


def _swap_locks(obj: Any) -> None:
    for name, value in list(vars(obj).items()):
        if type(value) is trio.Lock and not value.locked():
            setattr(obj, name, QuickLock())
        elif type(value) is trio.Semaphore and value.max_value is None:
            setattr(obj, name, QuickSemaphore(value.value))


def _with_quick_locks(cls: type) -> None:
    original = cls.__init__  # type: ignore[misc]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _swap_locks(self)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


_plain_read = TrioTCPStream.read


async def _buffered_read(self: TrioTCPStream, n: int | None = None) -> bytes:
    """Up to ``n`` bytes: from what the last ``recv`` left over, else from one new ``recv``."""
    left: bytearray | None = getattr(self, "_kms_left", None)
    if left:
        if n is None or n >= len(left):
            self._kms_left = None  # type: ignore[attr-defined]
            return bytes(left)
        if n <= 0:
            return b""
        out = bytes(left[:n])
        del left[:n]
        return out
    if n is not None and n <= 0:
        return b""
    data = await _plain_read(self, READ_CHUNK)
    if n is None or len(data) <= n:
        return data
    self._kms_left = bytearray(data[n:])  # type: ignore[attr-defined]
    return data[:n]


async def _write_frame(self: Yamux, data: bytes) -> None:
    """Yamux's frame writer without its per-frame debug formatting and its extra checkpoint
    (the socket send that every write ends in is a checkpoint already)."""
    async with self._write_lock:
        await self.secured_conn.write(data)


def installed() -> bool:
    """Whether ``install`` has patched this process's py-libp2p."""
    return _installed


def install() -> bool:
    """Patch py-libp2p's TCP, yamux and net-stream classes (once per process); False (and a
    warning) if this py-libp2p no longer looks like the version it was written for."""
    global _installed
    if _installed:
        return True
    if "read_lock" not in TrioTCPStream.__annotations__ or not hasattr(Yamux, "_write_frame"):
        _log.warning("py-libp2p's TCP stream or yamux changed: keeping them as shipped")
        return False
    for cls in _PATCHED:
        _with_quick_locks(cls)
    TrioTCPStream.read = _buffered_read  # type: ignore[method-assign]
    Yamux._write_frame = _write_frame  # type: ignore[method-assign]
    _installed = True
    return True
