"""Byte-level building blocks: length-prefixed transcripts, RFC 9380 expand_message_xmd, contexts.

Every hash that a proof or key derivation depends on is computed over a *transcript*: each part
prefixed with its length, so no two different lists of parts ever give the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from .errors import InvalidParameters


def transcript(*parts: bytes) -> bytes:
    """Concatenate ``parts``, each prefixed with its 4-byte big-endian length (injective)."""
    out = bytearray()
    for part in parts:
        out += struct.pack(">I", len(part))
        out += part
    return bytes(out)


def u16(value: int) -> bytes:
    """Encode a participant id or small count as 2 big-endian bytes."""
    return struct.pack(">H", value)


def expand_message_xmd(msg: bytes, dst: bytes, length: int, hash_name: str = "sha512") -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd, with SHA-512 by default."""
    h = hashlib.new(hash_name)
    b_in_bytes = h.digest_size
    s_in_bytes = h.block_size
    if len(dst) > 255:
        raise InvalidParameters("expand_message_xmd: domain separation tag longer than 255 bytes")
    ell = -(-length // b_in_bytes)
    if ell > 255 or length > 65535:
        raise InvalidParameters("expand_message_xmd: requested length too large")
    dst_prime = dst + bytes([len(dst)])
    z_pad = bytes(s_in_bytes)
    l_i_b = struct.pack(">H", length)
    b0 = hashlib.new(hash_name, z_pad + msg + l_i_b + b"\x00" + dst_prime).digest()
    b_i = hashlib.new(hash_name, b0 + b"\x01" + dst_prime).digest()
    out = bytearray(b_i)
    for i in range(2, ell + 1):
        b_i = hashlib.new(
            hash_name, bytes(x ^ y for x, y in zip(b0, b_i, strict=True)) + bytes([i]) + dst_prime
        ).digest()
        out += b_i
    return bytes(out[:length])


def encode_context(context: Mapping[str, str] | None) -> bytes:
    """Canonical bytes of an encryption context: pairs sorted by key, each string length-prefixed.

    Keys and values are compared exactly (case matters), as AWS KMS does.

    Raises:
        InvalidParameters: a key or value is not a string.
    """
    if context is None:
        return transcript()
    parts: list[bytes] = []
    for key in sorted(context):
        value = context[key]
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidParameters("encryption context keys and values must be strings")
        parts.append(key.encode("utf-8"))
        parts.append(value.encode("utf-8"))
    return transcript(*parts)
