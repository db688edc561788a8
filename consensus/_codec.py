"""Canonical msgpack encoding and strict field checks used by every message type."""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import DecodeError

__all__ = ["MAX_MESSAGE_BYTES", "as_bytes", "as_int", "as_list", "pack", "unpack"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def pack(obj: Any) -> bytes:
    """Encode ``obj`` (ints, bytes, str, lists, None) canonically.

    msgpack always picks the shortest integer and length encodings and we never encode maps,
    so equal values give equal bytes: safe to hash and sign.
    """
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes, what: str) -> Any:
    """Decode one msgpack object, rejecting trailing bytes, maps and oversized input."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"{what}: {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, max_map_len=0, max_ext_len=0
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DecodeError(f"{what}: not canonical msgpack ({exc})") from None


def as_int(v: Any, what: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    """Return ``v`` if it is an int (not bool) in ``[lo, hi]``, else raise DecodeError."""
    if type(v) is not int:
        raise DecodeError(f"{what}: expected int, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise DecodeError(f"{what}: {v} outside [{lo}, {hi}]")
    return v


def as_bytes(v: Any, what: str, size: int | None = None, max_size: int | None = None) -> bytes:
    """Return ``v`` if it is bytes of the exact ``size`` (or at most ``max_size``)."""
    if type(v) is not bytes:
        raise DecodeError(f"{what}: expected bytes, got {type(v).__name__}")
    if size is not None and len(v) != size:
        raise DecodeError(f"{what}: expected {size} bytes, got {len(v)}")
    if max_size is not None and len(v) > max_size:
        raise DecodeError(f"{what}: {len(v)} bytes exceeds {max_size}")
    return v


def as_list(
    v: Any, what: str, length: int | None = None, max_length: int | None = None
) -> list[Any]:
    """Return ``v`` if it is a list of the exact ``length`` (or at most ``max_length``)."""
    if type(v) is not list:
        raise DecodeError(f"{what}: expected list, got {type(v).__name__}")
    if length is not None and len(v) != length:
        raise DecodeError(f"{what}: expected {length} fields, got {len(v)}")
    if max_length is not None and len(v) > max_length:
        raise DecodeError(f"{what}: {len(v)} items exceeds {max_length}")
    return v
