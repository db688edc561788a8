"""Framing: round trips (examples and hypothesis) and every class of refused frame."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.net import (
    Envelope,
    FrameDecoder,
    FrameError,
    FrameFormat,
    FrameTooLarge,
    MalformedFrame,
    UnexpectedShape,
    UnsupportedVersion,
    encode_frame,
)

FMT = FrameFormat(max_frame_bytes=64 * 1024)


def raw_frame(body: bytes) -> bytes:
    """A length-prefixed frame around arbitrary body bytes."""
    return struct.pack(">I", len(body)) + body


def decode_all(data: bytes, fmt: FrameFormat = FMT) -> list[Envelope]:
    d = FrameDecoder(fmt)
    out = d.feed(data)
    d.eof()
    return out


# ---- round trips -----------------------------------------------------------------------------


def test_round_trip_examples() -> None:
    envs = [
        Envelope("c", b"\x00" * 10),
        Envelope("req", {"op": "decrypt", "n": [1, 2]}),
        Envelope("end"),
    ]
    data = b"".join(encode_frame(e, FMT) for e in envs)
    assert decode_all(data) == envs


def test_byte_by_byte_feed() -> None:
    env = Envelope("vote", [1, b"abc", "x", None, True])
    data = encode_frame(env, FMT) * 3
    d = FrameDecoder(FMT)
    got: list[Envelope] = []
    for i in range(len(data)):
        got += d.feed(data[i : i + 1])
    assert got == [env] * 3
    assert d.buffered == 0 and d.frames == 3


def test_wire_layout() -> None:
    data = encode_frame(Envelope("c", b"hi"), FMT)
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert msgpack.unpackb(data[4:]) == [1, "c", b"hi"]


_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=50)
    | st.binary(max_size=200)
)
_values = st.recursive(
    _leaf,
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5)
    ),
    max_leaves=30,
)
_kinds = st.text(min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(
    envs=st.lists(st.builds(Envelope, _kinds, _values), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_round_trip_property(envs: list[Envelope], cuts: list[int]) -> None:
    data = b"".join(encode_frame(e, FMT) for e in envs)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    d = FrameDecoder(FMT)
    got: list[Envelope] = []
    for a, b in itertools.pairwise(points):
        got += d.feed(data[a:b])
    d.eof()
    assert got == envs


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    d = FrameDecoder(FMT)
    try:
        d.feed(data)
        d.eof()
    except FrameError:
        pass


# ---- oversized -------------------------------------------------------------------------------


def test_oversized_length_prefix_rejected_before_body() -> None:
    d = FrameDecoder(FMT)
    with pytest.raises(FrameTooLarge) as err:
        d.feed(struct.pack(">I", FMT.max_frame_bytes + 1))  # no body bytes at all
    assert err.value.size == FMT.max_frame_bytes + 1 and err.value.limit == FMT.max_frame_bytes


def test_max_length_prefix_rejected() -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder(FrameFormat()).feed(b"\xff\xff\xff\xff")


def test_frame_at_limit_accepted() -> None:
    fmt = FrameFormat(max_frame_bytes=1000)
    body = b"x" * (1000 - len(msgpack.packb([1, "c", b"x" * 1000])) + 1000)
    data = encode_frame(Envelope("c", body), fmt)
    assert len(data) - 4 == 1000
    assert decode_all(data, fmt) == [Envelope("c", body)]


def test_encode_too_large_raises() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(Envelope("c", b"x" * FMT.max_frame_bytes), FMT)


def test_too_many_items_rejected() -> None:
    fmt = FrameFormat(max_items=10)
    with pytest.raises(MalformedFrame):
        decode_all(raw_frame(msgpack.packb([1, "c", list(range(11))])), fmt)


# ---- truncated -------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 3, 4, 5, -1])
def test_truncated_frame_detected_at_eof(keep: int) -> None:
    data = encode_frame(Envelope("c", b"payload"), FMT)
    d = FrameDecoder(FMT)
    assert d.feed(data[:keep]) == []
    with pytest.raises(MalformedFrame):
        d.eof()


# ---- bad msgpack -----------------------------------------------------------------------------

_BAD_BODIES: dict[str, bytes] = {
    "garbage": b"\xc1\xc1\xc1",  # 0xc1 is never used in msgpack
    "incomplete": b"\x93\x01\xa1c\xc4\x10ab",
    "trailing": msgpack.packb([1, "c", 1]) + b"\x00",
    "two objects": msgpack.packb([1, "c", 1]) * 2,
    "bad utf8": b"\x93\x01\xa2\xff\xfe\xc0",
    "ext type": msgpack.packb([1, "c", msgpack.ExtType(5, b"ab")]),
    "timestamp ext": b"\x93\x01\xa1c\xd6\xff\x00\x00\x00\x01",
    "int map key": msgpack.packb([1, "c", {1: 2}]),
    "deep nesting": b"\x91" * 100_000 + b"\xc0",
}


@pytest.mark.parametrize("name", sorted(_BAD_BODIES))
def test_bad_msgpack_rejected(name: str) -> None:
    with pytest.raises(MalformedFrame):
        decode_all(raw_frame(_BAD_BODIES[name]), FrameFormat())


def test_empty_frame_rejected() -> None:
    with pytest.raises(MalformedFrame):
        FrameDecoder(FMT).feed(b"\x00\x00\x00\x00")


# ---- versions --------------------------------------------------------------------------------


def test_unknown_version_rejected() -> None:
    with pytest.raises(UnsupportedVersion) as err:
        decode_all(raw_frame(msgpack.packb([2, "c", b""])))
    assert err.value.version == 2


def test_future_version_with_other_shape_is_a_version_error() -> None:
    with pytest.raises(UnsupportedVersion):
        decode_all(raw_frame(msgpack.packb([9, "c", b"", "extra", {"x": 1}])))


def test_several_accepted_versions() -> None:
    fmt = FrameFormat(version=2, accepted_versions=frozenset({1, 2}))
    old = raw_frame(msgpack.packb([1, "c", b"a"]))
    assert decode_all(old + encode_frame(Envelope("c", b"b"), fmt), fmt) == [
        Envelope("c", b"a"),
        Envelope("c", b"b"),
    ]


# ---- wrong shape -----------------------------------------------------------------------------

_BAD_SHAPES: dict[str, Any] = {
    "map": {"v": 1, "kind": "c"},
    "int": 5,
    "bytes": b"abc",
    "empty list": [],
    "two fields": [1, "c"],
    "four fields": [1, "c", b"", b""],
    "version str": ["1", "c", b""],
    "version bool": [True, "c", b""],
    "kind int": [1, 7, b""],
    "kind bytes": [1, b"c", b""],
    "kind empty": [1, "", b""],
    "kind too long": [1, "k" * 65, b""],
}


@pytest.mark.parametrize("name", sorted(_BAD_SHAPES))
def test_wrong_shape_rejected(name: str) -> None:
    with pytest.raises(UnexpectedShape):
        decode_all(raw_frame(msgpack.packb(_BAD_SHAPES[name], use_bin_type=True)))


# ---- decoder state ---------------------------------------------------------------------------


def test_decoder_poisoned_after_error() -> None:
    d = FrameDecoder(FMT)
    good = encode_frame(Envelope("c", b"ok"), FMT)
    with pytest.raises(UnsupportedVersion):
        d.feed(good + raw_frame(msgpack.packb([7, "c", b""])))
    with pytest.raises(UnsupportedVersion):
        d.feed(good)  # the stream is out of sync for good
    with pytest.raises(UnsupportedVersion):
        d.eof()


def test_good_frames_before_a_bad_one_are_not_returned_on_error() -> None:
    # The stream is reset on error; what came before in the same read is dropped with it.
    d = FrameDecoder(FMT)
    with pytest.raises(MalformedFrame):
        d.feed(encode_frame(Envelope("c", b"ok"), FMT) + raw_frame(b"\xc1"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_frame_bytes": 0},
        {"max_frame_bytes": 2**32},
        {"max_items": 0},
        {"version": 2, "accepted_versions": frozenset({1})},
    ],
)
def test_format_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FrameFormat(**kwargs)


@pytest.mark.parametrize("kind", ["", "k" * 65])
def test_encode_refuses_bad_kind(kind: str) -> None:
    with pytest.raises(ValueError):
        encode_frame(Envelope(kind), FMT)
