"""Ask every node at once outside the log (audit pages, genesis digests), each answer as it
comes, within one timeout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

import trio

from .. import net
from ..genesis_check import parse_answer


async def ask_all(
    sessions: Mapping[int, net.Session],
    nodes: Iterable[int],
    envelope: net.Envelope,
    timeout: float,
) -> dict[int, list[net.Envelope]]:
    """Send ``envelope`` to each of ``nodes`` that has a session; the frames each answered
    within ``timeout`` (a node that failed, or was slower, is missing)."""
    answers: dict[int, list[net.Envelope]] = {}

    async def ask(node_id: int) -> None:
        with contextlib.suppress(net.RequestFailed):
            answers[node_id] = await sessions[node_id].request(envelope, timeout=timeout)

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            for node_id in nodes:
                if node_id in sessions:
                    nursery.start_soon(ask, node_id)
    return answers


async def ask_genesis(
    sessions: Mapping[int, net.Session], nodes: Iterable[int], mine: bytes, timeout: float
) -> dict[int, str]:
    """Per node of ``nodes`` that has a session: ``same`` (its digest is ``mine``),
    ``differs``, ``unsupported`` (older software) or ``unreachable`` (no answer within
    ``timeout``; a ``busy`` answer counts so too)."""
    nodes = [i for i in nodes if i in sessions]
    report = dict.fromkeys(nodes, "unreachable")
    got = await ask_all(sessions, nodes, net.Envelope("genesis", None), timeout)
    for node_id, frames in got.items():
        try:
            digest = parse_answer((e.kind, e.body) for e in frames)
        except ValueError:
            continue
        if digest is None:
            report[node_id] = "unsupported"
        else:
            report[node_id] = "same" if digest == mine else "differs"
    return report
