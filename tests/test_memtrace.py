"""The operator's heap trace: off unless asked, a dump on SIGUSR1 naming code sites only."""

from __future__ import annotations

import os
import signal
import time
import tracemalloc
from pathlib import Path

import pytest

from kmsnode import memtrace


def test_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memtrace.ENV, raising=False)
    assert memtrace.install(tmp_path) is False
    assert not tracemalloc.is_tracing()


def test_sigusr1_writes_a_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memtrace.ENV, "1")
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        assert memtrace.install(tmp_path)
        secret = bytes(range(256)) * 400  # an allocation the dump must attribute, not show
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not (tmp_path / "memtrace-1.txt").exists():
            assert time.monotonic() < deadline, "no dump written"
            time.sleep(0.01)
        text = (tmp_path / "memtrace-1.txt").read_text()
        assert text.startswith("traced ")
        assert "test_memtrace.py" in text  # the site of the allocation above
        assert secret.hex()[:32] not in text
        snap = tracemalloc.Snapshot.load(str(tmp_path / "memtrace-1.snap"))
        assert snap.statistics("filename")
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, previous)
