"""Exponential ElGamal: homomorphic sums, threshold decryption of the aggregate, BSGS."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto import elgamal, feldman, shamir
from kmsnode.crypto.elgamal import ElGamalCiphertext, ElGamalPartial
from kmsnode.crypto.errors import InvalidEncoding, InvalidParameters, NotEnoughPartials
from kmsnode.crypto.groups import RISTRETTO255 as G


@pytest.fixture(scope="module")
def key() -> tuple[list[shamir.Share], bytes, dict[int, bytes]]:
    shares, coeffs = shamir.split(G, G.random_scalar(), 4, 3)
    c = feldman.commit(G, coeffs)
    return shares, c[0], feldman.verification_keys(G, c, range(1, 5))


@settings(max_examples=10, deadline=None)
@given(values=st.lists(st.integers(0, 2**20), min_size=1, max_size=6), k=st.integers(0, 50))
def test_sum_and_scale(key, values: list[int], k: int) -> None:  # type: ignore[no-untyped-def]
    shares, y, vks = key
    total = elgamal.scale(elgamal.add(*[elgamal.encrypt_int(y, v) for v in values]), k)
    partials = [elgamal.partial_decrypt(s, total, key_context=b"k1") for s in shares[1:]]
    m, culprits = elgamal.decrypt_sum(total, partials, vks, 3, bound=2**28, key_context=b"k1")
    assert m == k * sum(values)
    assert culprits == ()


def test_bad_partial_named(key) -> None:  # type: ignore[no-untyped-def]
    shares, y, vks = key
    ct = elgamal.encrypt_int(y, 7)
    ps = [elgamal.partial_decrypt(s, ct) for s in shares]
    bad = replace(ps[0], value=G.base_mul(3))
    assert elgamal.decrypt_sum(ct, [bad, *ps[1:]], vks, 3, bound=100) == (7, (1,))
    with pytest.raises(NotEnoughPartials):
        elgamal.decrypt_sum(ct, [bad, ps[1], ps[1], ps[2]], vks, 3, bound=100)


def test_partial_bound_to_its_ciphertext_and_key_context(key) -> None:  # type: ignore[no-untyped-def]
    shares, y, vks = key
    ct = elgamal.encrypt_int(y, 7)
    other = elgamal.encrypt_int(y, 8)
    ps = [elgamal.partial_decrypt(s, ct, key_context=b"k1") for s in shares]
    with pytest.raises(NotEnoughPartials):
        elgamal.decrypt_sum(other, ps, vks, 3, bound=100, key_context=b"k1")
    with pytest.raises(NotEnoughPartials):
        elgamal.decrypt_sum(ct, ps, vks, 3, bound=100, key_context=b"k2")


def test_value_out_of_bound(key) -> None:  # type: ignore[no-untyped-def]
    shares, y, vks = key
    ct = elgamal.encrypt_int(y, 1000)
    ps = [elgamal.partial_decrypt(s, ct) for s in shares]
    with pytest.raises(InvalidParameters):
        elgamal.decrypt_sum(ct, ps, vks, 3, bound=1000)
    with pytest.raises(InvalidParameters):
        elgamal.decrypt_sum(ct, ps, vks, 3, bound=2**41)


@pytest.mark.parametrize("m", [0, 1, 2, 255, 65535, 65536, 2**32 - 1])
def test_discrete_log_edges(m: int) -> None:
    assert elgamal.discrete_log(G.base_mul(m), 2**32) == m


def test_encodings_strict(key) -> None:  # type: ignore[no-untyped-def]
    shares, y, _ = key
    ct = elgamal.encrypt_int(y, 5)
    assert ElGamalCiphertext.decode(ct.encode()) == ct
    p = elgamal.partial_decrypt(shares[0], ct)
    assert ElGamalPartial.decode(p.encode()) == p
    for bad in (ct.encode()[:-1], b"\x02" + ct.encode()[1:], b"\x01" + b"\xff" * 64):
        with pytest.raises(InvalidEncoding):
            ElGamalCiphertext.decode(bad)
    with pytest.raises(InvalidEncoding):
        ElGamalPartial.decode(b"\x00\x00" + p.encode()[2:])


def test_concurrent_searches_share_one_table_and_stay_correct() -> None:
    import threading

    from kmsnode.crypto import elgamal as eg

    results: dict[int, int] = {}

    def search(bound: int, value: int) -> None:
        results[bound] = eg.discrete_log(eg._GROUP.base_mul(value), bound)

    threads = [threading.Thread(target=search, args=(b, b - 1)) for b in (2**10, 2**14, 2**12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {2**10: 2**10 - 1, 2**14: 2**14 - 1, 2**12: 2**12 - 1}
    assert len(eg._table) >= 2 * 2**7  # the largest needed table survives
