"""Feldman verifiable secret sharing: commitments to a dealing, share checks, verification keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from .errors import InvalidParameters, InvalidShare
from .groups import Group
from .shamir import Share, validate_ids

E = TypeVar("E")


def commit(group: Group[E], coefficients: Sequence[int]) -> tuple[E, ...]:
    """``C_k = a_k * G`` for every coefficient (constant time: coefficients are secret)."""
    return tuple(group.base_mul(a) for a in coefficients)


def check_length(commitments: Sequence[object], t: int) -> None:
    """Reject a commitment vector of any length but ``t`` (a longer one raises the threshold).

    Raises:
        InvalidParameters: ``len(commitments) != t``.
    """
    if len(commitments) != t:
        raise InvalidParameters(
            f"commitment vector has {len(commitments)} entries, threshold {t} needs exactly {t}"
        )


def verification_key(group: Group[E], commitments: Sequence[E], j: int) -> E:
    """``Y_j = sum_k j^k C_k``: the public image ``f(j) * G`` of participant ``j``'s share."""
    validate_ids([j], group.order)
    # Everything here is public, so the group's lincomb may take a faster variable-time path
    # (multi-scalar multiplication in BLS12-381, where ``mul`` is a slow constant-time ladder).
    powers = [pow(j, k, group.order) for k in range(len(commitments))]
    return group.lincomb(list(commitments), powers)


def verification_keys(
    group: Group[E], commitments: Sequence[E], ids: Iterable[int]
) -> dict[int, E]:
    """``verification_key`` for every id."""
    return {j: verification_key(group, commitments, j) for j in validate_ids(ids, group.order)}


def verify_share(
    group: Group[E], commitments: Sequence[E], share: Share, t: int, dealer: int = 0
) -> None:
    """Check ``share.value * G == sum_k id^k C_k`` against a dealer's commitments.

    Raises:
        InvalidParameters: the commitment vector's length is not ``t`` or the id is invalid.
        InvalidShare: the share does not match; ``culprits`` names ``dealer`` when given.
    """
    check_length(commitments, t)
    expected = verification_key(group, commitments, share.id)
    if not group.eq(group.base_mul(share.value), expected):
        raise InvalidShare(
            "share does not match the dealer's commitments", [dealer] if dealer else []
        )


def sum_commitments(group: Group[E], vectors: Sequence[Sequence[E]]) -> tuple[E, ...]:
    """Component-wise sum of commitment vectors: the commitments of the summed sharing."""
    if not vectors:
        raise InvalidParameters("no commitment vectors to add")
    t = len(vectors[0])
    for v in vectors:
        check_length(v, t)
    return tuple(group.sum([v[k] for v in vectors]) for k in range(t))
