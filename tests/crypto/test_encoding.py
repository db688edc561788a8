"""Transcripts are injective; expand_message_xmd matches RFC 9380; contexts are canonical."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmsnode.crypto.encoding import encode_context, expand_message_xmd, transcript
from kmsnode.crypto.errors import InvalidParameters

parts = st.lists(st.binary(max_size=8), max_size=4)


@given(a=parts, b=parts)
def test_transcript_injective(a: list[bytes], b: list[bytes]) -> None:
    if a != b:
        assert transcript(*a) != transcript(*b)


def test_expand_message_xmd_rfc9380_sha512_vectors() -> None:
    # RFC 9380 §K.3 (expand_message_xmd, SHA-512), DST "QUUX-V01-CS02-with-expander-SHA512-256".
    dst = b"QUUX-V01-CS02-with-expander-SHA512-256"
    assert expand_message_xmd(b"", dst, 0x20).hex() == (
        "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
    )
    assert expand_message_xmd(b"abc", dst, 0x20).hex() == (
        "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"
    )


def test_context_canonical_and_case_sensitive() -> None:
    assert encode_context({"a": "1", "b": "2"}) == encode_context({"b": "2", "a": "1"})
    assert encode_context({"app": "x"}) != encode_context({"App": "x"})
    assert encode_context({"app": "x"}) != encode_context({"app": "X"})
    assert encode_context(None) == encode_context({})
    assert encode_context({"ab": "c"}) != encode_context({"a": "bc"})


def test_context_rejects_non_strings() -> None:
    with pytest.raises(InvalidParameters):
        encode_context({"a": 1})  # type: ignore[dict-item]
