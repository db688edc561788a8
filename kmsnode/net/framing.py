"""Length-prefixed msgpack frames for every libp2p stream we speak (sans-I/O).

Wire format of one frame::

    +----------------------+------------------------------------------+
    | length: u32 big-end. | body: msgpack ``[version, kind, body]``  |
    +----------------------+------------------------------------------+

* ``length`` counts the body only and is checked against the protocol's limit *before* any
  of the body is buffered, so a peer cannot make us hold more than one limit's worth of bytes.
* ``version`` is an int the receiving protocol must accept, ``kind`` a short str naming the
  message type (``"c"`` for a consensus message, ``"req"``/``"res"``/``"end"``/``"err"`` on
  the client protocol), ``body`` any msgpack value.
* Decoding is strict: exactly one msgpack object per frame, no ext types, map keys str or
  bytes only, str must be valid UTF-8 (bytes stay bytes: msgpack bin), container and string
  lengths bounded.

Frames are a transport envelope, not a signed object: map order inside ``body`` is not
canonical. Anything signed or hashed travels as canonical bytes produced by its own encoder
(``kmsnode.wire``, ``consensus.encode_message``) inside ``body``.

Nothing here does I/O: ``encode_frame`` returns bytes, ``FrameDecoder.feed`` takes bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .errors import FrameTooLarge, MalformedFrame, UnexpectedShape, UnsupportedVersion

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "HEADER_BYTES",
    "MAX_KIND_CHARS",
    "Envelope",
    "FrameDecoder",
    "FrameFormat",
    "encode_frame",
]

HEADER_BYTES = 4
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_KIND_CHARS = 64
_HEADER = struct.Struct(">I")


@dataclass(frozen=True)
class Envelope:
    """One message as carried by a frame: its type name and its msgpack-able body."""

    kind: str
    body: Any = None


@dataclass(frozen=True)
class FrameFormat:
    """What one protocol accepts: its version(s) and hard size limits.

    Args:
        version: the version this side writes.
        accepted_versions: the versions this side reads; defaults to ``{version}``.
        max_frame_bytes: the largest body (after the 4-byte prefix) sent or accepted.
        max_items: the longest array or map anywhere inside a body.

    Raises:
        ValueError: from ``__post_init__`` for limits that cannot work.
    """

    version: int = 1
    accepted_versions: frozenset[int] = field(default=frozenset())
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_items: int = 1 << 20

    def __post_init__(self) -> None:
        if not self.accepted_versions:
            object.__setattr__(self, "accepted_versions", frozenset({self.version}))
        if self.version not in self.accepted_versions:
            raise ValueError(f"version {self.version} must be among the accepted versions")
        if not 16 <= self.max_frame_bytes <= 0xFFFFFFFF:
            raise ValueError(
                f"max_frame_bytes must be in [16, 2**32 - 1], got {self.max_frame_bytes}"
            )
        if self.max_items < 1:
            raise ValueError("max_items must be at least 1")


def encode_frame(envelope: Envelope, fmt: FrameFormat) -> bytes:
    """Encode ``envelope`` as one frame (length prefix included) in ``fmt``'s version.

    Raises:
        FrameTooLarge: the encoded body exceeds ``fmt.max_frame_bytes``.
        ValueError: ``kind`` is empty or too long.
        TypeError: ``body`` holds something msgpack cannot encode.
    """
    _check_kind(envelope.kind, ValueError)
    body: bytes = msgpack.packb([fmt.version, envelope.kind, envelope.body], use_bin_type=True)
    if len(body) > fmt.max_frame_bytes:
        raise FrameTooLarge(len(body), fmt.max_frame_bytes)
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Turns a byte stream into envelopes, incrementally and strictly.

    Feed it whatever the stream yields; it returns every complete envelope so far. The first
    refused frame poisons the decoder (the stream is out of sync from there on): every later
    call raises the same error. Call ``eof()`` when the stream ends to catch a truncated frame.
    """

    def __init__(self, fmt: FrameFormat) -> None:
        self.fmt = fmt
        self._buf = bytearray()
        self._failed: Exception | None = None
        self._need: int | None = None
        self.frames = 0
        """Complete frames decoded so far (for statistics)."""

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Envelope]:
        """Add ``data`` and return the envelopes it completes, in order.

        Raises:
            FrameTooLarge: a length prefix above the limit (raised as soon as it is read).
            MalformedFrame: a zero-length frame or a body that is not one msgpack object.
            UnsupportedVersion: a version not accepted.
            UnexpectedShape: not ``[version, kind, body]`` with an int, a short str, a value.
        """
        if self._failed is not None:
            raise self._failed
        self._buf += data
        out: list[Envelope] = []
        pos = 0
        buf = self._buf
        try:
            while True:
                if self._need is None:
                    if len(buf) - pos < HEADER_BYTES:
                        break
                    (size,) = _HEADER.unpack_from(buf, pos)
                    if size > self.fmt.max_frame_bytes:
                        raise FrameTooLarge(size, self.fmt.max_frame_bytes)
                    if size == 0:
                        raise MalformedFrame("empty frame")
                    pos += HEADER_BYTES
                    self._need = size
                if len(buf) - pos < self._need:
                    break
                body = bytes(buf[pos : pos + self._need])
                pos += self._need
                self._need = None
                out.append(self._decode_body(body))
                self.frames += 1
        except Exception as exc:
            self._failed = exc
            self._buf = bytearray()
            raise
        finally:
            if self._failed is None and pos:
                del buf[:pos]
        return out

    def eof(self) -> None:
        """Declare the end of the stream.

        Raises:
            MalformedFrame: the stream ended inside a frame (truncated).
        """
        if self._failed is not None:
            raise self._failed
        if self._buf or self._need is not None:
            self._failed = MalformedFrame(
                f"stream ended inside a frame ({len(self._buf)} bytes pending)"
            )
            raise self._failed

    def _decode_body(self, body: bytes) -> Envelope:
        limit = self.fmt.max_frame_bytes
        try:
            obj = msgpack.unpackb(
                body,
                raw=False,
                use_list=True,
                strict_map_key=True,
                max_bin_len=limit,
                max_str_len=limit,
                max_array_len=self.fmt.max_items,
                max_map_len=self.fmt.max_items,
                max_ext_len=0,
            )
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            # The class name says enough; the message could echo payload bytes.
            raise MalformedFrame(f"body is not one msgpack object ({type(exc).__name__})") from None
        if type(obj) is not list or not obj:
            raise UnexpectedShape(f"expected [version, kind, body], got {type(obj).__name__}")
        version = obj[0]
        if type(version) is not int:
            raise UnexpectedShape(f"version must be an int, got {type(version).__name__}")
        if version not in self.fmt.accepted_versions:
            raise UnsupportedVersion(version, self.fmt.accepted_versions)
        if len(obj) != 3:
            raise UnexpectedShape(f"expected 3 fields, got {len(obj)}")
        kind = obj[1]
        _check_kind(kind, UnexpectedShape)
        return Envelope(kind, obj[2])


def _check_kind(kind: object, error: type[Exception]) -> None:
    if type(kind) is not str:
        raise error(f"kind must be a str, got {type(kind).__name__}")
    if not 0 < len(kind) <= MAX_KIND_CHARS:
        raise error(f"kind must have 1..{MAX_KIND_CHARS} characters, got {len(kind)}")
