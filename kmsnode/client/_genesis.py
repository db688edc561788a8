"""Ask nodes which genesis they run (by digest): the client's view of ``genesis_check``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

import trio

from .. import net
from ..genesis_check import parse_answer


async def ask_genesis(
    sessions: Mapping[int, net.Session], nodes: Iterable[int], mine: bytes, timeout: float
) -> dict[int, str]:
    """Per node of ``nodes`` that has a session: ``same`` (its digest is ``mine``),
    ``differs``, ``unsupported`` (older software) or ``unreachable`` (no answer within
    ``timeout``; a ``busy`` answer counts so too)."""
    asked = [i for i in nodes if i in sessions]
    report = dict.fromkeys(asked, "unreachable")

    async def ask(node_id: int) -> None:
        with contextlib.suppress(net.RequestFailed, ValueError):
            got = await sessions[node_id].request(net.Envelope("genesis", None), timeout=timeout)
            digest = parse_answer((e.kind, e.body) for e in got)
            if digest is None:
                report[node_id] = "unsupported"
            else:
                report[node_id] = "same" if digest == mine else "differs"

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            for node_id in asked:
                nursery.start_soon(ask, node_id)
    return report
