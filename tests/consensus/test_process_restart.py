"""Real processes: a replica SIGKILLed mid-round and restarted never votes twice in a round."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
N = 4
VICTIM = 2


def free_base_port() -> int:
    for _ in range(50):
        base = random.randrange(20000, 60000)
        socks = []
        try:
            for i in range(N):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port range")


def spawn(tmp: Path, i: int, base: int) -> subprocess.Popen[bytes]:
    with open(tmp / f"stderr-{i}.log", "ab") as err:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, str(HERE / "proc_node.py"), str(tmp), str(i), str(N), str(base)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(cond: object, deadline: float, what: str) -> None:
    assert callable(cond)
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkill_restart_never_double_votes(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    base = free_base_port()
    procs = {i: spawn(tmp_path, i, base) for i in range(N)}
    votes = tmp_path / f"votes-{VICTIM}.log"
    try:
        deadline = time.monotonic() + 40
        wait_for(lambda: len(lines(votes)) >= 5, deadline, "first votes")
        for _ in range(3):
            seen = len(lines(votes))
            # Kill at a random moment of the round.
            time.sleep(rng.uniform(0.0, 0.3))
            procs[VICTIM].send_signal(signal.SIGKILL)
            procs[VICTIM].wait()
            procs[VICTIM] = spawn(tmp_path, VICTIM, base)
            wait_for(lambda s=seen: len(lines(votes)) >= s + 5, deadline, "votes after restart")
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
    by_round: dict[int, set[str]] = {}
    for line in lines(votes):
        rnd, block = line.split()
        by_round.setdefault(int(rnd), set()).add(block)
    doubles = {r: b for r, b in by_round.items() if len(b) > 1}
    assert not doubles, f"voted for two blocks in a round: {doubles} (seed={seed})"
    # The committed logs of all processes agree where they overlap.
    logs = [dict(line.split() for line in lines(tmp_path / f"commits-{i}.log")) for i in range(N)]
    for h in set().union(*logs):
        assert len({log[h] for log in logs if h in log}) == 1, f"fork at height {h} (seed={seed})"
    assert max(len(x) for x in logs) > 0
