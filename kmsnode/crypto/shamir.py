"""Shamir secret sharing over a group's scalar field, and the one place identifiers are checked.

Participant identifiers are the x-coordinates of the shares: integers in ``1..n``, distinct,
never 0 modulo the group order (a share at x = 0 *is* the secret).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParameters
from .groups import Group, Rng, default_rng


@dataclass(frozen=True)
class Share:
    """One participant's share ``(id, f(id))`` of a secret; the value is secret."""

    id: int
    value: int

    def __repr__(self) -> str:
        return f"Share(id={self.id}, value=<redacted>)"


def validate_threshold(n: int, t: int) -> None:
    """Check ``1 <= t <= n``.

    Raises:
        InvalidParameters: the threshold or committee size is out of range.
    """
    if not isinstance(n, int) or not isinstance(t, int) or isinstance(n, bool):
        raise InvalidParameters("n and t must be integers")
    if not 1 <= t <= n:
        raise InvalidParameters(f"threshold t={t} must satisfy 1 <= t <= n={n}")


def validate_ids(ids: Iterable[int], order: int, n: int | None = None) -> tuple[int, ...]:
    """Return ``ids`` as a tuple after checking every identifier rule.

    Raises:
        InvalidParameters: an id is not an int, is 0 (or congruent to 0) modulo ``order``, is
            outside ``1..n`` when ``n`` is given, or two ids are congruent modulo ``order``.
    """
    out = tuple(ids)
    seen: set[int] = set()
    for i in out:
        if not isinstance(i, int) or isinstance(i, bool):
            raise InvalidParameters(f"participant id {i!r} is not an integer")
        if i % order == 0:
            raise InvalidParameters(f"participant id {i} is 0 modulo the group order")
        if n is not None and not 1 <= i <= n:
            raise InvalidParameters(f"participant id {i} is outside 1..{n}")
        if not 1 <= i < order:
            raise InvalidParameters(f"participant id {i} is outside 1..order-1")
        if i % order in seen:
            raise InvalidParameters(f"participant id {i} appears twice")
        seen.add(i % order)
    return out


def evaluate(coefficients: Sequence[int], x: int, order: int) -> int:
    """``f(x)`` for ``f = sum(coefficients[k] * x^k)`` mod ``order`` (Horner)."""
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % order
    return acc


def random_polynomial(
    group: Group[Any], constant: int, t: int, rng: Rng = default_rng
) -> list[int]:
    """A random polynomial of degree ``t - 1`` with the given constant term."""
    return [constant % group.order] + [group.random_scalar(rng) for _ in range(t - 1)]


def split(
    group: Group[Any], secret: int, n: int, t: int, rng: Rng = default_rng
) -> tuple[list[Share], list[int]]:
    """Deal ``secret`` to participants ``1..n`` so that any ``t`` recover it.

    Returns the shares and the polynomial's coefficients (for Feldman commitments).
    """
    validate_threshold(n, t)
    coefficients = random_polynomial(group, secret, t, rng)
    shares = [Share(i, evaluate(coefficients, i, group.order)) for i in range(1, n + 1)]
    return shares, coefficients


def lagrange_coefficient(i: int, ids: Sequence[int], order: int, x: int = 0) -> int:
    """The Lagrange basis polynomial of ``i`` over ``ids``, evaluated at ``x``.

    Raises:
        InvalidParameters: ``i`` not in ``ids`` or the ids break the identifier rules.
    """
    validate_ids(ids, order)
    if i not in ids:
        raise InvalidParameters(f"participant {i} is not among {list(ids)}")
    num, den = 1, 1
    for j in ids:
        if j == i:
            continue
        num = num * (x - j) % order
        den = den * (i - j) % order
    return num * pow(den, -1, order) % order


def lagrange_coefficients(ids: Sequence[int], order: int, x: int = 0) -> dict[int, int]:
    """Every Lagrange coefficient over ``ids`` at ``x``, computed with one shared product."""
    validate_ids(ids, order)
    out: dict[int, int] = {}
    for i in ids:
        num, den = 1, 1
        for j in ids:
            if j != i:
                num = num * (x - j) % order
                den = den * (i - j) % order
        out[i] = num * pow(den, -1, order) % order
    return out


def interpolate(points: Mapping[int, int], order: int, x: int = 0) -> int:
    """The value at ``x`` of the polynomial through ``points`` (id -> value)."""
    ids = list(points)
    coefficients = lagrange_coefficients(ids, order, x)
    return sum(coefficients[i] * points[i] for i in ids) % order


def recover(group: Group[Any], shares: Sequence[Share], t: int) -> int:
    """Recover a secret from ``t`` shares. Test-only: production never rebuilds a secret.

    Raises:
        InvalidParameters: fewer than ``t`` shares, or invalid identifiers.
    """
    if len(shares) < t:
        raise InvalidParameters(f"{len(shares)} shares given, {t} needed")
    chosen = shares[:t]
    return interpolate({s.id: s.value for s in chosen}, group.order)
