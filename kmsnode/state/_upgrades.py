"""In-place upgrades of the state rules: who said which rules its software applies, and an
activated upgrade waiting for its height (part of the replicated state, pure).

An upgrade takes effect only if every committee member said, after it was activated, that
its software applies the new rules: switching without one could split the committee. From
rules v4 the admin may name up to f members to leave behind (down, or not upgraded yet): the
others must all confirm, so the log stays live without them, and a member left behind whose
software cannot apply the new rules stops at their height rather than apply them wrongly.
"""

from __future__ import annotations

from ..crypto.errors import CryptoError
from ..genesis import Genesis
from ..wire.payload import RulesPayload
from ..wire.requests import ActivateRules
from ._denied import Denied

MIN_ACTIVATION_BLOCKS = 10
"""Fewest blocks between an ``activate_rules`` and the height its rules take effect at: every
node confirms in between (a fresh statement) that its software applies them."""


class RulesUpgrades:
    """The nodes' statements of the rules they apply, and the pending activation."""

    def __init__(self, genesis: Genesis) -> None:
        self._genesis = genesis
        self.support: dict[int, tuple[int, tuple[int, ...], int]] = {}
        """Per node: (seq, versions, height logged) of its latest signed statement of the
        rules its software applies."""
        self.pending: tuple[int, int, int] | None = None
        """An activated upgrade not yet in force: (version, the height it takes effect at, the
        height it was activated at: every node must say again after it that it applies it)."""
        self.leaving: tuple[int, ...] = ()
        """The nodes the pending upgrade may take effect without (``leave_behind``)."""

    def statement(self, payload: RulesPayload, height: int) -> bool:
        """Record a node's signed statement (its latest); returns whether it was taken."""
        info = next((i for i in self._genesis.nodes if i.id == payload.node), None)
        previous = self.support.get(payload.node)
        if info is None or (previous is not None and payload.seq <= previous[0]):
            return False
        try:
            payload.verify(self._genesis.chain_id, info.signing_key)
        except CryptoError:
            return False
        self.support[payload.node] = (payload.seq, payload.versions, height)
        return True

    def lacking(self, version: int, since: int = -1) -> list[int]:
        """Committee members that have not said (in the log, after height ``since``) that
        their software applies ``version``."""
        out = []
        for info in self._genesis.nodes:
            said = self.support.get(info.id)
            if said is None or version not in said[1] or said[2] <= since:
                out.append(info.id)
        return out

    def refusal(self, op: ActivateRules, in_force: int) -> Denied | None:
        """Why ``op`` cannot activate while rules ``in_force`` apply (None: it can), the
        request's signature and admin checks aside. Changes nothing."""
        members = {i.id for i in self._genesis.nodes}
        if op.leave_behind and not set(op.leave_behind) <= members:
            outside = sorted(set(op.leave_behind) - members)
            return Denied("invalid_leave_behind", f"nodes {outside} are not committee members")
        if len(op.leave_behind) > self._genesis.f:
            return Denied(
                "invalid_leave_behind",
                f"at most f = {self._genesis.f} nodes may be left behind, not "
                f"{len(op.leave_behind)}: the others could not go on without them",
            )
        if op.version <= in_force:
            return Denied("rules_not_newer", f"the log already runs rules v{in_force}")
        if self.pending is not None:
            v, h, _ = self.pending
            return Denied("activation_pending", f"rules v{v} take effect at height {h}")
        if op.after_blocks < MIN_ACTIVATION_BLOCKS:
            return Denied(
                "activation_too_soon",
                f"new rules take effect at least {MIN_ACTIVATION_BLOCKS} blocks on (every node "
                "confirms in between)",
            )
        missing = [i for i in self.lacking(op.version) if i not in op.leave_behind]
        if missing:
            # (The words of v3 software under v3 and older: replies replay alike.)
            hint = " (or leave at most f of them behind)" if in_force >= 4 else ""
            return Denied(
                "rules_unsupported",
                f"nodes {missing} have not said their software applies rules v{op.version}: "
                f"upgrade them first{hint}",
            )
        return None

    def activate(self, op: ActivateRules, height: int) -> int:
        """Schedule ``op`` (checked by ``refusal``); returns the height it takes effect at."""
        at = height + op.after_blocks
        self.pending = (op.version, at, height)
        self.leaving = op.leave_behind
        return at

    def activating_at(self, height: int) -> int | None:
        """The version that takes effect in the block at ``height`` (before its payloads),
        if one does: a node whose software lacks it must stop before applying that block.
        Changes nothing."""
        if self.pending is None or height < self.pending[1]:
            return None
        version, _, since = self.pending
        lacking = [i for i in self.lacking(version, since) if i not in self.leaving]
        return None if lacking else version

    def due(self, height: int) -> tuple[int, list[int], list[int]] | None:
        """At a pending upgrade's height: clear it and return (its version, the nodes that did
        not confirm after the activation and were not to be left behind: any means it is
        refused, the nodes left behind without confirming). None otherwise."""
        if self.pending is None or height < self.pending[1]:
            return None
        version, _, since = self.pending
        leaving = self.leaving
        self.pending, self.leaving = None, ()
        lacking = self.lacking(version, since)
        return (
            version,
            [i for i in lacking if i not in leaving],
            [i for i in lacking if i in leaving],
        )
