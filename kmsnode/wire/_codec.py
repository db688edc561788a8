"""Canonical msgpack: one encoding per value for anything signed or hashed, strict decoding.

Messages are msgpack arrays of primitive values (ints, str, bytes, bool, None, arrays, maps
with string keys). Encoding sorts map keys, so equal values always give equal bytes; decoding
refuses anything that would not re-encode to the same bytes (non-canonical input), oversized
input, and types the schema does not expect.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..errors import MalformedMessage

MAX_MESSAGE = 4 * 1024 * 1024


_CONTAINERS = (dict, list, tuple)


def _canonical(value: Any) -> Any:
    # Leaves are returned untouched without a call each (this runs on every message, twice
    # for a decoded one: strict decoding re-encodes to check canonicity).
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


def pack(value: Any) -> bytes:
    """Canonical msgpack bytes of ``value`` (map keys sorted, tuples as arrays)."""
    return msgpack.packb(_canonical(value), use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes, *, max_size: int = MAX_MESSAGE, canonical: bool = True) -> Any:
    """Strictly decode canonical msgpack.

    ``canonical=False`` skips the re-encoding check, for a caller that re-encodes the typed
    message it builds and compares that with ``data`` (a stronger check, paid for once).

    Raises:
        MalformedMessage: too large, not msgpack, trailing bytes, or not canonical.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedMessage("message must be bytes")
    if len(data) > max_size:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        value = msgpack.unpackb(
            bytes(data),
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedMessage(f"not a msgpack message: {type(exc).__name__}") from exc
    except Exception as exc:  # msgpack raises assorted types on garbage; none may escape
        raise MalformedMessage(f"not a msgpack message: {type(exc).__name__}") from exc
    if canonical:
        try:
            again = pack(value)
        except Exception as exc:  # e.g. map keys of mixed types, nesting deeper than packb takes
            raise MalformedMessage(f"not a canonical message: {type(exc).__name__}") from exc
        if again != bytes(data):
            raise MalformedMessage("message is not canonically encoded")
    return value


class Reader:
    """Typed access to a decoded msgpack array, with errors that name the field."""

    def __init__(self, value: Any, what: str, length: int) -> None:
        if not isinstance(value, list) or len(value) != length:
            raise MalformedMessage(f"{what}: expected an array of {length} fields")
        self._items = value
        self._what = what

    def integer(self, i: int, name: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
        v = self._items[i]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise MalformedMessage(f"{self._what}.{name}: expected an integer in [{lo}, {hi}]")
        return v

    def text(self, i: int, name: str, max_len: int = 256, *, empty: bool = False) -> str:
        v = self._items[i]
        if not isinstance(v, str) or len(v) > max_len or (not empty and not v):
            raise MalformedMessage(f"{self._what}.{name}: expected a string of 1..{max_len} chars")
        return v

    def blob(self, i: int, name: str, size: int | None = None, max_len: int = MAX_MESSAGE) -> bytes:
        v = self._items[i]
        if not isinstance(v, bytes) or len(v) > max_len or (size is not None and len(v) != size):
            want = f"{size} bytes" if size is not None else f"at most {max_len} bytes"
            raise MalformedMessage(f"{self._what}.{name}: expected {want}")
        return v

    def optional_blob(self, i: int, name: str, size: int | None = None) -> bytes | None:
        if self._items[i] is None:
            return None
        return self.blob(i, name, size)

    def str_map(self, i: int, name: str, max_items: int = 64) -> dict[str, str]:
        v = self._items[i]
        if (
            not isinstance(v, dict)
            or len(v) > max_items
            or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
        ):
            raise MalformedMessage(f"{self._what}.{name}: expected a map of strings")
        return dict(v)

    def str_list(self, i: int, name: str, max_items: int = 64) -> list[str]:
        v = self._items[i]
        if not isinstance(v, list) or len(v) > max_items or not all(isinstance(x, str) for x in v):
            raise MalformedMessage(f"{self._what}.{name}: expected a list of strings")
        return list(v)

    def __len__(self) -> int:
        return len(self._items)

    def raw(self, i: int) -> Any:
        return self._items[i]
