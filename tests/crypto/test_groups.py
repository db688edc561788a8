"""Group laws and strict decoding, for every exported group."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto.errors import InvalidEncoding
from kmsnode.crypto.groups import RISTRETTO255, Group

from .conftest import all_groups

scalars = st.integers(min_value=0, max_value=2**256)


def test_arithmetic_laws(group: Group[object]) -> None:
    q = group.order
    a, b = group.random_scalar(), group.random_scalar()
    pa, pb = group.base_mul(a), group.base_mul(b)
    assert group.eq(group.add(pa, pb), group.base_mul(a + b))
    assert group.eq(group.sub(pa, pb), group.base_mul(a - b))
    assert group.eq(group.mul(pa, b), group.base_mul(a * b))
    assert group.is_identity(group.base_mul(q))
    assert group.is_identity(group.mul(pa, 0))
    assert group.is_identity(group.sub(pa, pa))
    assert group.eq(group.add(pa, group.identity()), pa)
    assert group.eq(group.lincomb([pa, pb], [3, 5]), group.base_mul(3 * a + 5 * b))
    assert group.eq(group.mul(group.identity(), a), group.identity())


@pytest.mark.parametrize("group", all_groups(), ids=lambda g: g.name)
@settings(max_examples=15, deadline=None)
@given(k=scalars)
def test_encoding_round_trip(group: Group[object], k: int) -> None:
    element = group.base_mul(k)
    data = group.encode(element)
    assert len(data) == group.element_size
    decoded = group.decode(data, allow_identity=True)
    assert group.eq(decoded, element)
    assert group.decode_scalar(group.encode_scalar(k)) == k % group.order


def test_identity_rejected_unless_allowed(group: Group[object]) -> None:
    data = group.encode(group.identity())
    with pytest.raises(InvalidEncoding):
        group.decode(data)
    assert group.is_identity(group.decode(data, allow_identity=True))


def test_wrong_lengths_rejected(group: Group[object]) -> None:
    good = group.encode(group.generator())
    for bad in (good[:-1], good + b"\x00", b""):
        with pytest.raises(InvalidEncoding):
            group.decode(bad)
    with pytest.raises(InvalidEncoding):
        group.decode_scalar(bytes(group.scalar_size - 1))


def test_scalars_at_or_above_order_rejected(group: Group[object]) -> None:
    q = group.order
    for k in (q, q + 1, 2 ** (8 * group.scalar_size) - 1):
        enc = k.to_bytes(group.scalar_size, group.scalar_byteorder)  # type: ignore[arg-type]
        with pytest.raises(InvalidEncoding):
            group.decode_scalar(enc)


def test_hash_to_scalar_domain_separated(group: Group[object]) -> None:
    assert group.hash_to_scalar(b"A", b"m") != group.hash_to_scalar(b"B", b"m")
    assert group.hash_to_scalar(b"A", b"m") == group.hash_to_scalar(b"A", b"m")
    assert group.hash_to_scalar(b"A", b"m") < group.order


# -- ristretto255 specifics: RFC 9496 vectors and bad encodings ---------------------------

# RFC 9496 §A.1: multiples of the generator, 0*B .. 3*B.
RFC9496_MULTIPLES = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
    "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
    "94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
]

# RFC 9496 §A.2: invalid encodings (a non-canonical field element, a negative one, not square).
RFC9496_BAD = [
    "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
]


def test_ristretto255_rfc9496_multiples() -> None:
    g = RISTRETTO255
    for k, hexenc in enumerate(RFC9496_MULTIPLES):
        assert g.encode(g.base_mul(k)).hex() == hexenc


@pytest.mark.parametrize("hexenc", RFC9496_BAD)
def test_ristretto255_rfc9496_bad_encodings(hexenc: str) -> None:
    with pytest.raises(InvalidEncoding):
        RISTRETTO255.decode(bytes.fromhex(hexenc))


def test_ristretto255_hash_to_element_rfc9380_style() -> None:
    g = RISTRETTO255
    p1 = g.hash_to_element(b"dst", b"msg")
    assert g.decode(p1) == p1
    assert p1 != g.hash_to_element(b"dst2", b"msg")
