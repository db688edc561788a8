"""Shamir sharing and Feldman VSS: algebra (property tests) and every bad-input class."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto import feldman, shamir
from kmsnode.crypto.errors import InvalidParameters, InvalidShare
from kmsnode.crypto.groups import RISTRETTO255, Group
from kmsnode.crypto.shamir import Share

G = RISTRETTO255
Q = G.order


@st.composite
def n_t(draw: st.DrawFn, max_n: int = 9) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=max_n))
    return n, draw(st.integers(min_value=1, max_value=n))


@settings(max_examples=40, deadline=None)
@given(params=n_t(), secret=st.integers(min_value=0, max_value=Q - 1), data=st.data())
def test_any_t_shares_recover_the_secret(
    params: tuple[int, int], secret: int, data: st.DataObject
) -> None:
    n, t = params
    shares, _ = shamir.split(G, secret, n, t)
    subset = data.draw(st.permutations(shares)).copy()[:t]
    assert shamir.recover(G, subset, t) == secret


@settings(max_examples=30, deadline=None)
@given(params=n_t(), data=st.data())
def test_fewer_than_t_shares_do_not_determine_the_secret(
    params: tuple[int, int], data: st.DataObject
) -> None:
    # With t-1 shares fixed, every candidate secret is consistent with some polynomial: the
    # interpolation through (0, s') and the t-1 shares has degree t-1 for any s'.
    n, t = params
    if t < 2:
        return
    secret = data.draw(st.integers(min_value=0, max_value=Q - 1))
    other = data.draw(st.integers(min_value=0, max_value=Q - 1))
    shares, _ = shamir.split(G, secret, n, t)
    known = {s.id: s.value for s in shares[: t - 1]}
    points = {0: other, **known}

    def through(x: int) -> int:  # Lagrange through ``points`` (x = 0 included), done by hand
        total = 0
        for i, v in points.items():
            num = den = 1
            for j in points:
                if j != i:
                    num, den = num * (x - j) % Q, den * (i - j) % Q
            total += v * num * pow(den, -1, Q)
        return total % Q

    # A degree-(t-1) polynomial with constant term "other" reproduces the t-1 known shares,
    # so they are equally consistent with any secret.
    for i, v in known.items():
        assert through(i) == v
    assert through(0) == other


@settings(max_examples=25, deadline=None)
@given(params=n_t(max_n=6), a=st.integers(0, Q - 1), b=st.integers(0, Q - 1))
def test_shares_are_linear(params: tuple[int, int], a: int, b: int) -> None:
    n, t = params
    sa, _ = shamir.split(G, a, n, t)
    sb, _ = shamir.split(G, b, n, t)
    summed = [Share(x.id, (x.value + y.value) % Q) for x, y in zip(sa, sb, strict=True)]
    assert shamir.recover(G, summed, t) == (a + b) % Q


def test_lagrange_at_arbitrary_x() -> None:
    shares, coeffs = shamir.split(G, 42, 5, 3)
    pts = {s.id: s.value for s in shares[:3]}
    for x in (0, 4, 5, 1000):
        assert shamir.interpolate(pts, Q, x) == shamir.evaluate(coeffs, x, Q)
    lam = shamir.lagrange_coefficients([1, 2, 3], Q)
    assert sum(lam.values()) % Q == 1


@pytest.mark.parametrize(
    "ids, n",
    [
        ([0, 1, 2], None),  # zero
        ([1, 2, 2], None),  # duplicate
        ([1, 1 + Q], None),  # congruent modulo the order
        ([Q, 1], None),  # zero modulo the order
        ([1, 2, 5], 4),  # outside 1..n
        ([-1, 2], None),  # negative
        ([1, True], None),  # not an int
    ],
)
def test_bad_identifiers(ids: list[int], n: int | None) -> None:
    with pytest.raises(InvalidParameters):
        shamir.validate_ids(ids, Q, n)


def test_lagrange_rejects_bad_ids() -> None:
    with pytest.raises(InvalidParameters):
        shamir.lagrange_coefficients([1, 1 + Q], Q)
    with pytest.raises(InvalidParameters):
        shamir.lagrange_coefficient(3, [1, 2], Q)


@pytest.mark.parametrize("n, t", [(3, 0), (3, 4), (0, 0)])
def test_bad_thresholds(n: int, t: int) -> None:
    with pytest.raises(InvalidParameters):
        shamir.split(G, 1, n, t)


def test_share_repr_redacted() -> None:
    s = Share(1, 123456789)
    assert "123456789" not in repr(s)


def test_feldman_verifies_every_share(group: Group[object]) -> None:
    shares, coeffs = shamir.split(group, group.random_scalar(), 5, 3)
    commitments = feldman.commit(group, coeffs)
    for s in shares:
        feldman.verify_share(group, commitments, s, 3)
    vks = feldman.verification_keys(group, commitments, range(1, 6))
    for s in shares:
        assert group.eq(vks[s.id], group.base_mul(s.value))


def test_feldman_rejects_wrong_share() -> None:
    shares, coeffs = shamir.split(G, 7, 4, 3)
    commitments = feldman.commit(G, coeffs)
    bad = Share(shares[0].id, (shares[0].value + 1) % Q)
    with pytest.raises(InvalidShare) as info:
        feldman.verify_share(G, commitments, bad, 3, dealer=2)
    assert info.value.culprits == (2,)
    swapped = Share(shares[1].id, shares[0].value)
    with pytest.raises(InvalidShare):
        feldman.verify_share(G, commitments, swapped, 3)


@pytest.mark.parametrize("length", [2, 4])  # t-1 and t+1
def test_feldman_rejects_commitment_vectors_of_wrong_length(length: int) -> None:
    shares, coeffs = shamir.split(G, 7, 4, 3)
    commitments = list(feldman.commit(G, coeffs))
    vector = commitments[:length] if length < 3 else [*commitments, G.base_mul(5)]
    with pytest.raises(InvalidParameters):
        feldman.verify_share(G, vector, shares[0], 3)


def test_feldman_share_at_zero_rejected() -> None:
    _, coeffs = shamir.split(G, 7, 4, 3)
    with pytest.raises(InvalidParameters):
        feldman.verify_share(G, feldman.commit(G, coeffs), Share(0, 7), 3)


def test_sum_commitments_matches_summed_dealing() -> None:
    sa, ca = shamir.split(G, 3, 4, 2)
    sb, cb = shamir.split(G, 4, 4, 2)
    total = feldman.sum_commitments(G, [feldman.commit(G, ca), feldman.commit(G, cb)])
    for x, y in zip(sa, sb, strict=True):
        feldman.verify_share(G, total, Share(x.id, (x.value + y.value) % Q), 2)
    with pytest.raises(InvalidParameters):
        feldman.sum_commitments(G, [feldman.commit(G, ca), feldman.commit(G, ca)[:1]])
