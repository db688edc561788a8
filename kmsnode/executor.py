"""Carries out the effects that need this node's secrets, and signs what leaves the node.

The replicated state decides *what* to do; the executor does this node's part: signs replies,
computes partial decryptions (checking the ciphertext first, sealing the result to the
requester), runs this node's DKG participants and stores their shares in the keystore. It is
synchronous and does no network I/O: it returns responses to deliver and payloads to post.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from .crypto import bls, dkg, elgamal, frost, tdh2
from .crypto.errors import CryptoError
from .crypto.groups import Group, Rng
from .crypto.sealing import SealingPublicKey, seal
from .crypto.shamir import Share
from .errors import KeystoreRecordMissing, LogRulesMismatch
from .frost_nonces import NonceSupply
from .genesis import SUPPORTED_RULES, Genesis
from .identity import NodeIdentity
from .keystore import Keystore, RecordName
from .receiving_keys import ReceivingKeys
from .state import (
    GROUPS,
    ComputeFrostShare,
    ComputePartial,
    ComputeSignaturePartial,
    ComputeSumPartial,
    DeliverDkg,
    Effect,
    KeyActivated,
    KeyDeleted,
    PartialWork,
    Reply,
    RulesActivated,
    SharesRefreshed,
    StartDkg,
    entry_signer,
    logged_commitments,
)
from .wire.payload import DkgPayload
from .wire.requests import KeyKind
from .wire.responses import Response, sealed_aad

log = logging.getLogger(__name__)


def share_record(key_id: str, version: int, epoch: int) -> RecordName:
    """Where a key version's share lives in the keystore."""
    return RecordName("share", key_id, version, epoch)


def seed_record(key_id: str, version: int, epoch: int) -> RecordName:
    """Where an open DKG session's randomness seed lives (erased when the session ends)."""
    return RecordName("dkg-seed", key_id, version, epoch)


def seeded_rng(seed: bytes) -> Rng:
    """A deterministic byte stream from a 32-byte secret seed (SHAKE-256 in counter mode).

    Security: the DKG participant's polynomial, proof nonces and batch-check weights come from
    it; the seed is as secret as the polynomial and lives only in the keystore.
    """
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        counter += 1
        return hashlib.shake_256(seed + counter.to_bytes(8, "big")).digest(n)

    return rng


@dataclass
class Output:
    """What executing effects produced: responses for clients, payloads for the log."""

    responses: list[Response] = field(default_factory=list)
    posts: list[bytes] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.responses.extend(other.responses)
        self.posts.extend(other.posts)


@dataclass
class ExecutorStats:
    """Counters for the console and metrics (nothing secret)."""

    replies: int = 0
    partials: int = 0
    partials_refused: int = 0
    dkg_started: int = 0
    dkg_completed: int = 0
    dkg_failed: int = 0
    dkg_rejected_messages: int = 0
    shares_missing: int = 0
    """Refreshes that completed without a new share for this node (it cannot serve them)."""
    keys_erased: int = 0
    """Deleted keys whose secrets this node erased."""
    scrubs_deferred: int = 0
    """Scrubs of the keystore file put off because another reader held it."""


class Executor:
    """This node's hands: see the module docstring."""

    def __init__(
        self, node_id: int, genesis: Genesis, identity: NodeIdentity, keystore: Keystore
    ) -> None:
        self.node_id = node_id
        self.genesis = genesis
        self.identity = identity
        self.keystore = keystore
        self.participants: dict[tuple[str, int, int], dkg.Participant[Any]] = {}
        self.stats = ExecutorStats()
        self._checked_vks: dict[tuple[str, int, int], bytes] = {}
        """Key versions and epochs whose share here matched the state's verification key."""
        self.scrub_pending = True
        """Whether erased records may still have copies in the keystore's files (at a start:
        a crash may have come between an erase and its scrub)."""
        self.receiving = ReceivingKeys(
            node_id,
            genesis.chain_id,
            identity.signing_key,
            genesis.node(node_id).sealing_key,
            keystore,
        )
        """This node's receiving keys (the node posts the ones they ask for)."""
        self.nonce_supply = NonceSupply(node_id, genesis.chain_id, identity.signing_key, keystore)
        """This node's FROST nonces (the node posts the batches it asks for)."""

    def run(self, effect: Effect) -> Output:
        """Carry out one effect."""
        if isinstance(effect, Reply):
            return self._reply(effect)
        if isinstance(effect, ComputePartial):
            return self._partial(effect)
        if isinstance(effect, ComputeSumPartial):
            return self._sum_partial(effect)
        if isinstance(effect, ComputeSignaturePartial):
            return self._signature_partial(effect)
        if isinstance(effect, ComputeFrostShare):
            return self._frost_share(effect)
        if isinstance(effect, StartDkg):
            return self._start_dkg(effect)
        if isinstance(effect, DeliverDkg):
            return self._deliver_dkg(effect)
        if isinstance(effect, KeyActivated):
            log.info("key %s version %d is active", effect.key_id, effect.version)
            return Output()
        if isinstance(effect, SharesRefreshed):
            self._erase_older_shares(effect)
            return Output()
        if isinstance(effect, KeyDeleted):
            self._erase_key(effect)
            return Output()
        if isinstance(effect, RulesActivated):
            self._rules_activated(effect)
            return Output()
        raise AssertionError(f"unknown effect {type(effect).__name__}")

    # -- replies and partials -------------------------------------------------------------------
    def _respond(
        self,
        request_id: bytes,
        height: int,
        op: str,
        *,
        error: str | None = None,
        message: str = "",
        result: dict[str, Any] | None = None,
        sealed: bytes | None = None,
    ) -> Output:
        response = Response(
            self.genesis.chain_id,
            request_id,
            self.node_id,
            height,
            op,
            error,
            message,
            result,
            sealed,
        )
        return Output(responses=[response.signed(self.identity.signing_key)])

    def _reply(self, e: Reply) -> Output:
        self.stats.replies += 1
        return self._respond(
            e.request_id, e.height, e.op, error=e.error, message=e.message, result=e.result
        )

    def _partial(self, e: ComputePartial) -> Output:
        loaded = self._load_share(e, _RISTRETTO)
        if isinstance(loaded, Output):
            return loaded
        reply_key, share = loaded
        vk = self._checked_vks[(e.key_id, e.version, e.epoch)]
        partial = tdh2.partial_decrypt_valid(share, e.ciphertext, verification_key=vk)
        return self._sealed_partial(e, reply_key, partial.encode(_RISTRETTO))

    def _sum_partial(self, e: ComputeSumPartial) -> Output:
        loaded = self._load_share(e, _RISTRETTO)
        if isinstance(loaded, Output):
            return loaded
        reply_key, share = loaded
        ct = e.ciphertext
        partial = elgamal.partial_decrypt(share, ct.ciphertext, key_context=ct.key_context())
        return self._sealed_partial(e, reply_key, partial.encode())

    def _signature_partial(self, e: ComputeSignaturePartial) -> Output:
        loaded = self._load_share(e, GROUPS[KeyKind.SIGN_BLS])
        if isinstance(loaded, Output):
            return loaded
        reply_key, share = loaded
        try:
            partial = bls.partial_sign(share, e.message)
        except CryptoError:  # a zero share (its holder zeroed it in the DKG): nothing to sign
            return self._refuse(e, "share_unavailable", f"node {self.node_id} cannot sign")
        return self._sealed_partial(e, reply_key, partial.encode())

    def _frost_share(self, e: ComputeFrostShare) -> Output:
        """FROST round two if the log chose this node: its signature share, sealed; every
        node answers with the commitments the log spent (the client's signing package)."""
        package = {"commitments": list(e.commitments)}
        ref = e.nonce_refs.get(self.node_id)
        if ref is None:
            return self._respond(e.request_id, e.height, e.op, result={**_stamp(e), **package})
        loaded = self._load_share(e, _ED25519)
        if isinstance(loaded, Output):
            return loaded
        reply_key, share = loaded
        mine = next(c for c in e.commitments if entry_signer(c) == self.node_id)
        # Erased durably before the share exists: a crash from here on cannot reuse it.
        nonces = self.nonce_supply.take(ref, mine[2:])
        if nonces is None:
            return self._refuse(
                e, "nonce_unavailable", f"node {self.node_id} holds no nonce for its commitment"
            )
        try:
            signing_package = frost.SigningPackage(logged_commitments(e.commitments), e.message)
            key_package = frost.KeyPackage(
                self.node_id,
                share.value,
                self._checked_vks[(e.key_id, e.version, e.epoch)],
                e.public_key,
                self.genesis.t,
            )
            signature_share = frost.sign(_FROST, signing_package, nonces, key_package, e.message)
        except CryptoError as exc:
            log.error("node %d: FROST signing package refused: %s", self.node_id, exc)
            return self._refuse(e, "invalid_package", "the signing package is not usable")
        return self._sealed_partial(e, reply_key, signature_share.encode(_FROST), package)

    def _load_share(
        self, e: PartialWork, group: Group[Any]
    ) -> tuple[SealingPublicKey, Share] | Output:
        """The request's reply key and this node's share of the key version; or the refusal."""
        try:
            reply_key = SealingPublicKey.decode(e.reply_key)
        except CryptoError:
            return self._refuse(e, "invalid_reply_key", "the request's reply key is not usable")
        share = self._held_share(e.key_id, e.version, e.epoch, group)
        if share is None:
            return self._refuse(
                e, "share_unavailable", f"node {self.node_id} holds no share of this key"
            )
        cache_key = (e.key_id, e.version, e.epoch)
        if cache_key not in self._checked_vks:
            # Once per key version and epoch: the share must be the one the state's
            # verification key names, in the group the state says (else it is not used).
            vk = group.encode(group.base_mul(share.value))
            if vk != e.verification_keys.get(self.node_id):
                log.error(
                    "node %d's share of %s v%d epoch %d does not match its verification key",
                    self.node_id,
                    e.key_id,
                    e.version,
                    e.epoch,
                )
                return self._refuse(
                    e, "share_unavailable", f"node {self.node_id} holds no usable share"
                )
            self._checked_vks[cache_key] = vk
        return reply_key, share

    def _refuse(self, e: PartialWork, code: str, message: str) -> Output:
        self.stats.partials_refused += 1
        return self._respond(e.request_id, e.height, e.op, error=code, message=message)

    def _sealed_partial(
        self,
        e: PartialWork,
        reply_key: SealingPublicKey,
        partial: bytes,
        extra: dict[str, Any] | None = None,
    ) -> Output:
        sealed = seal(reply_key, partial, sealed_aad(e.request_id, self.node_id))
        self.stats.partials += 1
        return self._respond(
            e.request_id, e.height, e.op, result={**_stamp(e), **(extra or {})}, sealed=sealed
        )

    # -- DKG ------------------------------------------------------------------------------------
    def _start_dkg(self, e: StartDkg, *, replaying: bool = False) -> Output:
        s = e.session
        if self.node_id not in s.committee:
            return Output()
        name = seed_record(s.key_id, s.version, s.epoch)
        try:
            seed: bytes | None = self.keystore.get(name)
        except KeystoreRecordMissing:
            if replaying:
                return Output()  # finished (seed erased) or never started here
            seed = None
        member_key = s.committee[self.node_id].sealing_key
        receiving = self.receiving.private_for(member_key) if member_key is not None else None
        if receiving is None:
            # The key this session seals our shares to is gone (a restore from an older
            # backup): no share could be opened. It deals if it can (a refresh, with its
            # current share), else sits it out; a later refresh gives it a share.
            log.error(
                "node %d lacks the receiving key session %s v%d epoch %d seals its shares to: "
                "it receives nothing in it",
                self.node_id,
                s.key_id,
                s.version,
                s.epoch,
            )
            if s.previous is None:
                return Output()
        old_share = None
        if s.previous is not None:
            # A refresh (a reshare to the same committee) deals a sharing of this node's
            # current share; without one, the node only receives its new share.
            old_share = self._held_share(s.key_id, s.version, s.previous.epoch, s.group)
            expected = s.previous.verification_keys.get(self.node_id)
            if old_share is not None and (
                expected is None or not s.group.eq(s.group.base_mul(old_share.value), expected)
            ):
                # Its deal would be refused and the node named: receive only, and say why.
                log.error(
                    "node %d's share of %s v%d epoch %d does not match its verification key: "
                    "it joins the refresh to receive a new share, not to deal",
                    self.node_id,
                    s.key_id,
                    s.version,
                    s.previous.epoch,
                )
                old_share = None
            elif old_share is None:
                log.warning(
                    "node %d holds no share of %s v%d epoch %d: it joins the refresh to "
                    "receive a new share, not to deal",
                    self.node_id,
                    s.key_id,
                    s.version,
                    s.previous.epoch,
                )
        if receiving is None and old_share is None:
            return Output()  # neither receives nor deals
        if seed is None:
            seed = secrets.token_bytes(32)
            # Durable before the deal leaves: a restarted node rebuilds the same polynomial
            # from it, so it can still justify its deal against its committed commitments.
            self.keystore.put(name, seed)
        participant = dkg.Participant(
            s,
            signing_key=self.identity.signing_key,
            sealing_key=receiving,
            id=self.node_id if receiving is not None else None,
            old_id=self.node_id if old_share is not None else None,
            old_share=old_share,
            rng=seeded_rng(seed),
        )
        self.participants[(s.key_id, s.version, s.epoch)] = participant
        self.stats.dkg_started += 1
        return self._dkg_actions(s, participant.handle(dkg.Start()))

    def _held_share(self, key_id: str, version: int, epoch: int, group: Group[Any]) -> Share | None:
        """This node's share of a key version at ``epoch``, if its keystore holds it."""
        try:
            value = self.keystore.get(share_record(key_id, version, epoch))
        except KeystoreRecordMissing:
            return None
        return Share(self.node_id, group.decode_scalar(value))

    def _erase_older_shares(self, e: SharesRefreshed) -> None:
        """Erase every share of the version from before ``e.epoch``: the refresh is final.

        The refresh participant erases its old share itself once its new one is stored; this
        also covers a node that stopped in between (a replayed log runs it again) and a node
        that could not form its new share. Such a node keeps nothing: an old share no request
        will ever use again is only a liability (with t - 1 others stolen earlier it would
        rebuild the key), and it cannot serve this version until the next refresh gives it a share.
        """
        older = [
            name
            for name in self.keystore.names("share")
            if name.key_id == e.key_id and name.version == e.version and name.epoch < e.epoch
        ]
        if older:
            self.keystore.delete_many(older)
            self.scrub_pending = True
            self.retry_scrub()
        try:
            self.keystore.get(share_record(e.key_id, e.version, e.epoch))
        except KeystoreRecordMissing:
            self.stats.shares_missing += 1
            log.warning(
                "key %s v%d was refreshed to epoch %d without a new share for node %d: "
                "this node cannot serve that version",
                e.key_id,
                e.version,
                e.epoch,
                self.node_id,
            )
            return
        log.info("key %s version %d refreshed to epoch %d", e.key_id, e.version, e.epoch)

    def _erase_key(self, e: KeyDeleted) -> None:
        """Erase every secret of a deleted key (shares of all versions and epochs, DKG seeds)
        in one transaction, and scrub the keystore file of them (``Keystore.scrub``)."""
        names = [n for n in self.keystore.names() if n.key_id == e.key_id]
        self.keystore.delete_many(names)
        self.scrub_pending = True
        self.retry_scrub()
        for cache_key in [k for k in self._checked_vks if k[0] == e.key_id]:
            del self._checked_vks[cache_key]
        for session in [k for k in self.participants if k[0] == e.key_id]:
            del self.participants[session]  # none should be open (the log refuses it)
        self.stats.keys_erased += 1
        log.info("key %s deleted: %d keystore records erased", e.key_id, len(names))

    def _rules_activated(self, e: RulesActivated) -> None:
        """Record that the log now runs rules ``e.version``; stop if this software cannot.

        Raises:
            LogRulesMismatch: this software does not apply ``e.version`` (it said it did, in
                the log, before the upgrade was allowed: the node was downgraded since).
        """
        if e.version not in SUPPORTED_RULES:
            raise LogRulesMismatch(e.version, SUPPORTED_RULES, "the log")
        self.keystore.set_rules_version(e.version)
        log.info("the log runs state rules v%d from here on", e.version)

    def retry_scrub(self) -> bool:
        """Scrub the keystore file of erased records if a scrub is owed; returns whether one
        is still owed (another reader held the file: the node tries again shortly)."""
        if self.scrub_pending and self.keystore.scrub():
            self.scrub_pending = False
        elif self.scrub_pending:
            self.stats.scrubs_deferred += 1
            if self.stats.scrubs_deferred % 60 == 1:  # not every second while it lasts
                log.warning("keystore busy (another reader): erased records are scrubbed later")
        return self.scrub_pending

    def replay(self, effect: Effect) -> None:
        """Re-run what an already executed block's effect did to this node's DKG sessions.

        After a restart the node replays its log: replies and partials of executed blocks
        are not sent again, and DKG messages are not posted again, but a session that was
        still open gets its participant back (same polynomial, from the stored seed) and
        sees every committed message again, so it finishes as if the node never stopped.
        """
        if isinstance(effect, StartDkg):
            self._start_dkg(effect, replaying=True)
        elif isinstance(effect, DeliverDkg):
            self._deliver_dkg(effect)
        elif isinstance(effect, SharesRefreshed):
            self._erase_older_shares(effect)
        elif isinstance(effect, KeyDeleted):
            self._erase_key(effect)
        elif isinstance(effect, RulesActivated):
            self._rules_activated(effect)

    def unsettled_posts(self) -> list[bytes]:
        """After a replay: the DKG messages this node's open sessions decided to post that
        the log has not taken yet (lost with the mempool in a crash), to post again."""
        out: list[bytes] = []
        for participant in self.participants.values():
            s = participant.session
            out.extend(
                DkgPayload(s.key_id, s.version, s.epoch, post.message.encode()).encode()
                for post in participant.unsettled_posts()
            )
        return out

    def _deliver_dkg(self, e: DeliverDkg) -> Output:
        participant = self.participants.get((e.key_id, e.version, e.epoch))
        if participant is None:
            return Output()
        event: dkg.Event = (
            dkg.Committed(e.height, e.message)
            if e.message is not None
            else dkg.HeightReached(e.height)
        )
        return self._dkg_actions(participant.session, participant.handle(event))

    def _dkg_actions(self, s: dkg.Session[Any], actions: list[Any]) -> Output:
        out = Output()
        key = (s.key_id, s.version, s.epoch)
        for action in actions:
            if isinstance(action, dkg.Post):
                out.posts.append(
                    DkgPayload(s.key_id, s.version, s.epoch, action.message.encode()).encode()
                )
            elif isinstance(action, dkg.Completed):
                share = action.result.share
                if share is not None:
                    # Durable before anything else happens: the share exists nowhere else.
                    self.keystore.put(
                        share_record(s.key_id, s.version, s.epoch),
                        s.group.encode_scalar(share.value),
                    )
                else:
                    log.warning(
                        "DKG %s v%d completed without a share for node %d (missing from %s)",
                        s.key_id,
                        s.version,
                        self.node_id,
                        list(action.result.missing_from),
                    )
                self.stats.dkg_completed += 1
                self.participants.pop(key, None)
                self.keystore.delete(seed_record(s.key_id, s.version, s.epoch))
            elif isinstance(action, dkg.EraseShare):
                self.keystore.delete(share_record(action.key_id, action.version, action.epoch))
            elif isinstance(action, dkg.Failed):
                log.warning("DKG %s v%d failed: %s", s.key_id, s.version, action.reason)
                self.stats.dkg_failed += 1
                self.participants.pop(key, None)
                self.keystore.delete(seed_record(s.key_id, s.version, s.epoch))
            elif isinstance(action, dkg.Rejected):
                self.stats.dkg_rejected_messages += 1
                log.info("DKG %s: rejected a message: %s", s.key_id, action.reason)
        return out

    @property
    def waiting_for_height(self) -> bool:
        """Whether a DKG session of ours needs the log to move on (the node then posts ticks)."""
        return bool(self.participants)


def _stamp(e: PartialWork) -> dict[str, Any]:
    """What a partial is made under: the key, its version and the share epoch (whose
    verification keys the partial checks against; a refresh changes them, not the key)."""
    return {"key_id": e.key_id, "version": e.version, "epoch": e.epoch}


GROUPS_BY_NAME: dict[str, Group[Any]] = {g.name: g for g in GROUPS.values()}
_RISTRETTO = GROUPS_BY_NAME["ristretto255"]
"""The group of encryption and homomorphic keys (their shares and partials)."""
_ED25519 = GROUPS[KeyKind.SIGN_ED25519]
_FROST = frost.FROST_ED25519_SHA512
