"""What the BFT log carries for the KMS: client requests and nodes' DKG messages.

A log payload is ``[tag, body]``: ``"req"`` with a client ``Request``'s bytes; ``"dkg"`` with
``[key_id, version, epoch, message]`` where ``message`` is a signed DKG message (its signature
names the node that posted it; the DKG machine checks it); or ``"tick"`` with ``[node, seq]``:
an empty entry nodes post while a DKG waits for a deadline height, because the log only makes
blocks when there is something to order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MalformedMessage
from ._codec import Reader, pack, unpack
from .requests import MAX_KEY_ID, Request

MAX_DKG_MESSAGE = 2 * 1024 * 1024


@dataclass(frozen=True)
class ClientPayload:
    """A client request as committed to the log (decoded, signature not yet checked)."""

    request: Request
    raw: bytes

    def encode(self) -> bytes:
        return pack(["req", self.raw])


@dataclass(frozen=True)
class DkgPayload:
    """A node's DKG message for the session of ``key_id`` / ``version`` / ``epoch``."""

    key_id: str
    version: int
    epoch: int
    message: bytes

    def encode(self) -> bytes:
        return pack(["dkg", [self.key_id, self.version, self.epoch, self.message]])


@dataclass(frozen=True)
class TickPayload:
    """An empty entry that only advances the log's height (``seq`` keeps ticks distinct)."""

    node: int
    seq: int

    def encode(self) -> bytes:
        return pack(["tick", [self.node, self.seq]])


LogPayload = ClientPayload | DkgPayload | TickPayload


def client_payload(request: Request) -> bytes:
    """Log bytes for a client request."""
    return pack(["req", request.encode()])


def decode_payload(data: bytes) -> LogPayload:
    """Strictly decode one log payload.

    Raises:
        MalformedMessage: anything else (a byzantine leader may commit garbage).
    """
    r = Reader(unpack(data), "payload", 2)
    tag = r.text(0, "tag", 8)
    if tag == "req":
        raw = r.blob(1, "request")
        return ClientPayload(Request.decode(raw), raw)
    if tag == "dkg":
        d = Reader(r.raw(1), "dkg", 4)
        return DkgPayload(
            d.text(0, "key_id", MAX_KEY_ID),
            d.integer(1, "version", 0, 2**32 - 1),
            d.integer(2, "epoch", 0, 2**32 - 1),
            d.blob(3, "message", max_len=MAX_DKG_MESSAGE),
        )
    if tag == "tick":
        t = Reader(r.raw(1), "tick", 2)
        return TickPayload(t.integer(0, "node", 1, 2**16), t.integer(1, "seq"))
    raise MalformedMessage(f"payload: unknown tag {tag!r}")
