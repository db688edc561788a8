"""Choosing which partial results to combine: dedupe, verify, name the cheaters, count to ``t``.

Every threshold scheme (TDH2, ElGamal sums, BLS) combines partials the same way, so the rules
live here once: a participant counts at most once however often its partial arrives; a partial
from outside the committee or one that fails verification is named, never counted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

from .errors import CryptoError, NotEnoughPartials

P = TypeVar("P")


def select_partials(
    partials: Iterable[P],
    *,
    participant: Callable[[P], int],
    verify: Callable[[P], None],
    committee: Collection[int],
    needed: int,
) -> tuple[list[P], tuple[int, ...]]:
    """Return ``needed`` verified partials from distinct participants, and the culprits seen.

    Partials are verified in the order given until ``needed`` distinct participants have a
    valid one; a participant's later duplicates are skipped (never counted twice). A partial
    whose ``verify`` raises a ``CryptoError`` or whose participant is outside ``committee``
    makes its sender a culprit.

    Raises:
        NotEnoughPartials: fewer than ``needed`` valid ones; carries the culprits.
    """
    chosen: dict[int, P] = {}
    culprits: set[int] = set()
    for partial in partials:
        if len(chosen) >= needed:
            break
        who = participant(partial)
        if who in chosen:
            continue
        if who not in committee:
            culprits.add(who)
            continue
        try:
            verify(partial)
        except CryptoError:
            culprits.add(who)
            continue
        chosen[who] = partial
    if len(chosen) < needed:
        raise NotEnoughPartials(len(chosen), needed, culprits)
    ordered = [chosen[i] for i in sorted(chosen)]
    return ordered, tuple(sorted(culprits))
