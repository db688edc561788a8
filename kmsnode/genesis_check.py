"""Do the committee's nodes run the same genesis? Each node asks every peer for its genesis
digest (``Genesis.digest``) and cuts itself off from any that answers another one.

Two nodes with different genesis files (another admin list, threshold or deletion wait) order
the same log but apply it differently: their keys, policies and audit trails drift apart in
silence. Cut off, a misconfigured node is one more node down (the others go on while at most
f are), and its operator sees why in its status; a node whose genesis is the odd one out
cuts itself off from everyone and stops. A peer is cut off until it answered once, so not
even a block from it is applied under a genesis nobody checked. Software without the check
(it answers ``err``) is let in, as before it. Bookkeeping and the asking loop here, with no
I/O of its own: ``KMSNode`` passes how to ask a peer, drop its connection and wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

GENESIS_CHECK_INTERVAL = 30.0
"""Seconds between checks of a peer that answered our digest; it is asked again at once when
its connection is opened anew (a peer may restart with another file)."""
GENESIS_RETRY = 0.25
"""Seconds before asking again a peer that did not answer (down, or still starting), doubled
after each miss up to ``GENESIS_RETRY_MAX``: a peer is cut off until it answers once."""
GENESIS_RETRY_MAX = 2.0


@dataclass
class GenesisCheck:
    """What each peer said its genesis digest is, and which peers to cut off for it."""

    mine: bytes
    peers: tuple[int, ...]
    said: dict[int, bytes | None] = field(default_factory=dict)
    """Per peer that answered: its digest, or None when its software has no genesis check."""
    _misses: dict[int, int] = field(default_factory=dict)

    def answered(self, peer: int, digest: bytes | None) -> tuple[bool, float]:
        """Record ``peer``'s answer (None: it has no check); returns whether it is news (its
        first answer, or another one than before: the cut may change), and the seconds until
        it is asked again."""
        news = peer not in self.said or self.said[peer] != digest
        self.said[peer] = digest
        self._misses.pop(peer, None)
        # A peer cut off for its genesis is asked often: back as soon as it is fixed.
        return news, GENESIS_RETRY_MAX if peer in self.mismatched else GENESIS_CHECK_INTERVAL

    def unanswered(self, peer: int) -> float:
        """``peer`` could not be asked (down or unreachable); what it said before stands
        until it answers. Returns the seconds until it is asked again."""
        misses = self._misses.get(peer, 0)
        self._misses[peer] = misses + 1
        return min(GENESIS_RETRY_MAX, GENESIS_RETRY * (1 << min(misses, 16)))

    @property
    def mismatched(self) -> frozenset[int]:
        """Peers that answered a digest other than ours."""
        return frozenset(p for p, d in self.said.items() if d is not None and d != self.mine)

    @property
    def unchecked(self) -> frozenset[int]:
        """Peers that have not answered yet."""
        return frozenset(self.peers) - self.said.keys()

    @property
    def cut_off(self) -> frozenset[int]:
        """The peers to exchange no consensus message with: unchecked or mismatched."""
        return self.unchecked | self.mismatched

    def report(self) -> dict[str, object]:
        """For status and the console: our digest, who differs, who was not heard yet."""
        return {
            "digest": self.mine.hex(),
            "mismatched": sorted(self.mismatched),
            "unchecked": sorted(self.unchecked),
            "unsupported": sorted(p for p, d in self.said.items() if d is None),
        }


def parse_answer(kinds_and_bodies: Iterable[tuple[str, object]]) -> bytes | None:
    """A peer's digest from its answer frames, None when it does not know the request (older
    software answers ``err`` with ``unknown kind``).

    Raises:
        ValueError: any other answer: another error (``busy``: the peer could not serve us
            now, which says nothing of its genesis) or junk; the caller asks again later.
    """
    frames = list(kinds_and_bodies)
    if frames and frames[0][0] == "err":
        body = frames[0][1]
        reason = body.get("reason") if isinstance(body, dict) else None
        if isinstance(reason, str) and reason.startswith("unknown kind"):
            return None
        raise ValueError(f"the peer did not answer: {str(reason)[:64]}")
    if len(frames) != 1 or frames[0][0] != "genesis":
        raise ValueError("unexpected answer to a genesis request")
    body = frames[0][1]
    if not isinstance(body, bytes) or len(body) != 32:
        raise ValueError("a genesis digest is 32 bytes")
    return body


class Unanswered(Exception):
    """A peer gave no usable answer to a genesis request: none at all (down, timed out,
    unreachable), or one that says nothing of its genesis (``busy``, junk: ``replied``)."""

    def __init__(self, replied: bool) -> None:
        super().__init__("replied without a digest" if replied else "no reply")
        self.replied = replied


async def follow_peer(
    check: GenesisCheck,
    peer: int,
    ask: Callable[[], Awaitable[bytes | None]],
    drop: Callable[[], Awaitable[None]],
    wait: Callable[[float], Awaitable[None]],
    on_news: Callable[[int, bytes | None], None],
) -> None:
    """Ask ``peer`` for its digest for ever: ``ask`` returns it (None: older software) or
    raises ``Unanswered``; ``on_news`` hears a first or changed answer; ``wait`` sleeps until
    the next check (it may return early, e.g. when the peer reconnects).

    A peer cut off (unchecked or mismatched) that gives no reply at all has its connection
    dropped with ``drop``: a half-open one (the peer rebooted uncleanly) would otherwise be
    asked over again until the OS gives up on it, and a cut-off peer's connection carries
    nothing else. One that replied (``busy``) is alive: its connection stays.
    """
    while True:
        try:
            digest = await ask()
        except Unanswered as exc:
            if peer in check.cut_off and not exc.replied:
                await drop()
            await wait(check.unanswered(peer))
            continue
        news, delay = check.answered(peer, digest)
        if news:
            on_news(peer, digest)
        await wait(delay)
