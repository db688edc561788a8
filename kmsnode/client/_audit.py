"""Reading the audit trail from several nodes without trusting any one of them (sans-I/O).

Every honest node holds the same hash-chained trail (the log decides it), though a node that
lags holds a shorter one. A page is accepted entry by entry: an entry counts once ``quorum``
nodes (f + 1: at least one honest) answered it with the same hash, inside a page whose chain
verifies. A node whose page is malformed or does not chain is named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..state import AuditEntry, entry_from_json, verify_chain

__all__ = ["AuditPage", "agree_on_audit"]


@dataclass(frozen=True)
class AuditPage:
    """Consecutive audit entries from ``start`` that ``quorum`` nodes agree on."""

    start: int
    entries: tuple[AuditEntry, ...]
    total: int
    """Entries in the trail: the largest count ``quorum`` nodes reported at least."""
    misbehaving: tuple[int, ...]
    """Nodes whose page was malformed or did not chain."""


def _parse(answer: Any, start: int, limit: int) -> tuple[list[AuditEntry], int]:
    """A node's answer as (entries, total); raises on anything malformed, unchained, longer
    than ``limit`` or not starting at ``start``."""
    if not isinstance(answer, Mapping):
        raise ValueError("not a mapping")
    total = answer["total"]
    raw = answer["entries"]
    if type(total) is not int or not 0 <= total < 2**63 or not isinstance(raw, list):
        raise ValueError("bad total or entries")
    if len(raw) > limit:
        raise ValueError("more entries than asked for")
    entries = [entry_from_json(e) for e in raw]
    if entries and entries[0].index != start:
        raise ValueError("the page does not start where asked")
    verify_chain(entries)
    return entries, total


def agree_on_audit(answers: Mapping[int, Any], start: int, limit: int, quorum: int) -> AuditPage:
    """The longest run of entries from ``start`` (at most ``limit``) on which ``quorum``
    nodes' pages agree."""
    pages: dict[int, list[AuditEntry]] = {}
    totals: list[int] = []
    bad: list[int] = []
    for node, answer in answers.items():
        try:
            pages[node], total = _parse(answer, start, limit)
            totals.append(total)
        except Exception:  # whatever a node made up (floats, huge ints, odd types): named
            bad.append(node)
    agreed: list[AuditEntry] = []
    for offset in range(max((len(p) for p in pages.values()), default=0)):
        votes = Counter(p[offset].hash for p in pages.values() if len(p) > offset)
        best, count = votes.most_common(1)[0]
        if count < quorum:
            break
        entry = next(
            p[offset] for p in pages.values() if len(p) > offset and p[offset].hash == best
        )
        if agreed and entry.prev_hash != agreed[-1].hash:
            break
        agreed.append(entry)
    totals.sort(reverse=True)
    total = totals[quorum - 1] if len(totals) >= quorum else 0
    return AuditPage(start, tuple(agreed), total, tuple(sorted(bad)))
