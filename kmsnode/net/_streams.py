"""Reading a libp2p stream the way every protocol here does."""

from __future__ import annotations

from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamEOF


async def read_some(stream: INetStream, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``stream``; ``b""`` once it has ended (EOF or an empty read)."""
    try:
        return await stream.read(limit)
    except StreamEOF:
        return b""
