"""Fixtures shared by the in-process node tests (tests/state has its own, state-only ``net``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kmsnode.testing import LocalNetwork


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNetwork]:
    """Four in-process nodes (state, executor, keystore) on one log, closed after the test."""
    network = LocalNetwork(tmp_path)
    yield network
    network.close()
