"""The node's garbage-collector policy: a frozen startup heap, and pauses counted."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from kmsnode.gc_policy import PauseMeter, freeze_startup_heap


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # give the test process its heap back


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_freezing_exempts_what_exists_and_still_collects_later_cycles(unfreeze: None) -> None:
    before = _Cycle()
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() > 1000
    assert not any(o is before for o in gc.get_objects())  # out of the collector's walk
    after = _Cycle()
    ref = weakref.ref(after)
    del after
    gc.collect()
    assert ref() is None  # garbage made after the freeze is collected as before


def test_pause_meter_counts_collections_per_generation() -> None:
    meter = PauseMeter().install()
    try:
        gc.collect(0)
        gc.collect(2)
        snap = meter.snapshot()
        assert snap["collections"][0] >= 1 and snap["collections"][2] >= 1
        assert snap["pause_seconds"][2] > 0
        assert 0 < snap["longest_pause_seconds"][2] <= snap["pause_seconds"][2]
        meter.install()  # idempotent: still one callback
        assert sum(cb == meter._observe for cb in gc.callbacks) == 1
    finally:
        meter.uninstall()
    counted = meter.snapshot()["collections"][2]
    gc.collect(2)
    assert meter.snapshot()["collections"][2] == counted  # uninstalled: no longer counting
