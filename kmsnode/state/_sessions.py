"""The DKG sessions the log runs (part of the replicated state, pure): opening a key
version's DKG or a refresh, and following each session in the log to the outcome every
node agrees on (an observer participant, which holds no secret)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto import dkg
from ._effects import DeliverDkg, Effect, KeyActivated, SharesRefreshed
from ._keys import GROUPS, KeyRecord, KeyState, KeyVersion, VersionState

DEAL_WINDOW = 20
COMPLAINT_WINDOW = 20
JUSTIFICATION_WINDOW = 20
"""DKG phase lengths in log heights (nodes post ticks so the height moves while they wait)."""


@dataclass
class WatchedSession:
    """An open session and the observer that follows it in the log."""

    key_id: str
    version: int
    epoch: int
    observer: dkg.Participant[Any]


def build_session(
    record: KeyRecord,
    version: KeyVersion,
    members: dict[int, dkg.Member],
    threshold: int,
    height: int,
    *,
    refresh: bool,
) -> tuple[dkg.Session[Any], dkg.Participant[Any]]:
    """The DKG session of a new version, or (``refresh``) the refresh of an active one to a
    fresh epoch, opened at ``height`` and sealed to ``members``, with its started observer.
    Changes nothing.

    Raises:
        CryptoError, ValueError: the version's public values do not make a session.
    """
    group = GROUPS[record.kind]
    previous: dkg.Previous[Any] | None = None
    epoch = version.epoch
    if refresh:
        assert version.public_key is not None
        previous = dkg.Previous(
            committee=members,
            threshold=threshold,
            public_key=group.decode(version.public_key),
            # A dealer can make its own share zero (its key the identity): valid, if odd.
            verification_keys={
                i: group.decode(vk, allow_identity=True)
                for i, vk in version.verification_keys.items()
            },
            epoch=version.epoch,
        )
        # Never an epoch number used before: a failed refresh's seeds and sessions must not
        # be mistaken for a retry's.
        epoch = version.last_epoch + 1
    session: dkg.Session[Any] = dkg.Session(
        key_id=record.key_id,
        version=version.version,
        epoch=epoch,
        group=group,
        # A refresh is a reshare to the same committee and threshold: every holder deals a
        # sharing of its share, and every member's new share comes from t of them, so a
        # member that lost its share (or missed a refresh) gets one again.
        kind=dkg.Kind.RESHARE if refresh else dkg.Kind.DKG,
        committee=members,
        threshold=threshold,
        deal_deadline=height + DEAL_WINDOW,
        complaint_deadline=height + DEAL_WINDOW + COMPLAINT_WINDOW,
        justification_deadline=height + DEAL_WINDOW + COMPLAINT_WINDOW + JUSTIFICATION_WINDOW,
        previous=previous,
    )
    observer = dkg.Participant.observer(session)
    observer.handle(dkg.Start())
    return session, observer


class DkgSessions(dict[tuple[str, int, int], WatchedSession]):
    """(key id, version, epoch) -> the open session; a session leaves when it ends."""

    def watch(
        self,
        record: KeyRecord,
        version: KeyVersion,
        session: dkg.Session[Any],
        observer: dkg.Participant[Any],
    ) -> None:
        """Follow ``session`` (built by ``build_session``) from now on."""
        version.last_epoch = max(version.last_epoch, session.epoch)
        self[(record.key_id, version.version, session.epoch)] = WatchedSession(
            record.key_id, version.version, session.epoch, observer
        )

    def sealing_keys_in_use(self, node: int) -> set[bytes]:
        """The encoded keys that open sessions seal ``node``'s shares to."""
        out = set()
        for entry in self.values():
            member = entry.observer.session.committee.get(node)
            if member is not None and member.sealing_key is not None:
                out.add(member.sealing_key.encode())
        return out

    def message(
        self,
        keys: Mapping[str, KeyRecord],
        height: int,
        key_id: str,
        version: int,
        epoch: int,
        message: Any,
    ) -> list[Effect] | None:
        """A DKG message committed at ``height``; None if no open session takes it."""
        entry = self.get((key_id, version, epoch))
        if entry is None:
            return None
        actions = entry.observer.handle(dkg.Committed(height, message))
        effects: list[Effect] = [DeliverDkg(key_id, version, epoch, height, message)]
        effects.extend(self._outcome(keys, height, entry, actions))
        return effects

    def heights(self, keys: Mapping[str, KeyRecord], height: int) -> list[Effect]:
        """Tell every open session the log reached ``height`` (its deadlines)."""
        effects: list[Effect] = []
        for entry in list(self.values()):
            actions = entry.observer.handle(dkg.HeightReached(height))
            effects.append(DeliverDkg(entry.key_id, entry.version, entry.epoch, height))
            effects.extend(self._outcome(keys, height, entry, actions))
        return effects

    def _outcome(
        self,
        keys: Mapping[str, KeyRecord],
        height: int,
        entry: WatchedSession,
        actions: Sequence[Any],
    ) -> list[Effect]:
        record = keys[entry.key_id]
        version = record.version(entry.version)
        assert version is not None
        if entry.observer.session.kind is not dkg.Kind.DKG:
            return self._refresh_outcome(height, entry, record, version, actions)
        for action in actions:
            if isinstance(action, dkg.Completed):
                result = action.result
                group = GROUPS[record.kind]
                version.state = VersionState.ACTIVE
                version.public_key = group.encode(result.public_key)
                version.verification_keys = {
                    i: group.encode(vk) for i, vk in result.verification_keys.items()
                }
                version.qualified = tuple(result.qualified)
                version.disqualified = dict(result.disqualified)
                if record.state is KeyState.CREATING:
                    record.state = KeyState.ENABLED
                del self[(entry.key_id, entry.version, entry.epoch)]
                return [KeyActivated(entry.key_id, entry.version, entry.epoch)]
            if isinstance(action, dkg.Failed):
                version.state = VersionState.FAILED
                version.failure = action.reason
                version.disqualified = dict(action.disqualified)
                if record.state is KeyState.CREATING:
                    record.state = KeyState.FAILED
                del self[(entry.key_id, entry.version, entry.epoch)]
                return []
        return []

    def _refresh_outcome(
        self,
        height: int,
        entry: WatchedSession,
        record: KeyRecord,
        version: KeyVersion,
        actions: Sequence[Any],
    ) -> list[Effect]:
        """A refresh either moves the version to its new epoch (same public key, new
        verification keys) or fails and leaves it as it was."""
        for action in actions:
            if isinstance(action, dkg.Completed):
                result = action.result
                group = GROUPS[record.kind]
                del self[(entry.key_id, entry.version, entry.epoch)]
                version.refreshing_to = None
                if version.public_key != group.encode(result.public_key):
                    # The refresh machine keeps the public key by construction; a changed one
                    # would strand every ciphertext made under it, so it never becomes current.
                    version.refresh_failure = "the refresh changed the public key"
                    return []
                version.epoch = entry.epoch
                version.verification_keys = {
                    i: group.encode(vk) for i, vk in result.verification_keys.items()
                }
                version.qualified = tuple(result.qualified)
                version.disqualified = dict(result.disqualified)
                version.refreshed_height = height
                version.refresh_failure = ""
                return [SharesRefreshed(entry.key_id, entry.version, entry.epoch)]
            if isinstance(action, dkg.Failed):
                version.refreshing_to = None
                version.refresh_failure = action.reason
                del self[(entry.key_id, entry.version, entry.epoch)]
                return []
        return []
