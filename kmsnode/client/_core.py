"""The client's sans-I/O core: builds signed requests and turns node answers into results.

One core serves the async client and the sync facade (the httpx pattern): transports only move
bytes. A ``Collector`` takes each node's response as it arrives and says when the request is
settled: ``f + 1`` identical public answers (at least one honest node vouches for it), or, for
a decryption, ``t`` partials that combine and open the ciphertext. Nodes whose answers are
malformed, wrongly signed or carry an invalid partial are named.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto import bls, elgamal, frost, tdh2
from ..crypto.errors import CryptoError, InvalidCiphertext, InvalidPartial, NotEnoughPartials
from ..crypto.groups import RISTRETTO255
from ..crypto.sealing import SealingPrivateKey, open_sealed
from ..crypto.tdh2 import PartialDecryption
from ..errors import MalformedMessage
from ..genesis import Genesis
from ..state import PACKAGE_ENTRY_SIZE, entry_signer, logged_commitments
from ..wire.requests import Decrypt, DecryptSum, Operation, Request, Sign
from ..wire.responses import Response, sealed_aad
from ..wire.sums import SumCiphertext
from ._results import KeyMetadata
from .errors import (
    InvalidCiphertextError,
    KeyUnavailable,
    QuorumUnavailable,
    RequestRejected,
    SignersFailed,
    StaleKeyMaterial,
    error_for,
)


class KeyMaterial(NamedTuple):
    """What partial decryptions are checked against: a key version's public key and, for one
    share epoch, each node's verification key (from ``describe_key``, agreed by f + 1)."""

    public_key: bytes
    verification_keys: Mapping[int, bytes]
    epoch: int
    version: int
    """The key version these belong to (a signature is made under the current one)."""
    kind: str
    """The key's kind (``sign-ed25519`` keys sign with FROST: shares, not partials)."""


def material_of(meta: KeyMetadata, key_id: str, version: int | None) -> KeyMaterial:
    """A described key's version (default: the current one): its public key and verification
    keys.

    Raises:
        KeyUnavailable: the key is deleted, or has no such active version.
    """
    if meta.state == "deleted":
        raise KeyUnavailable("key_unavailable", f"key {key_id} is deleted")
    v = meta.current if version is None else meta.version(version)
    if v is None or v.state != "active" or v.public_key is None:
        raise KeyUnavailable("key_unavailable", f"{key_id} has no active version {version or ''}")
    return KeyMaterial(v.public_key, dict(v.verification_keys), v.epoch, v.version, meta.kind)


_DECRYPTIONS = (Decrypt, DecryptSum, Sign)
"""Operations answered with partials sealed to the request's reply key."""
_NODE_LOCAL_ERRORS = frozenset({"share_unavailable", "nonce_unavailable", "invalid_package"})
"""Errors about the answering node itself, not the request: never agreed on."""
_FROST = frost.FROST_ED25519_SHA512


class NonceSource:
    """Nonces that never repeat within one client: the log serves a (client, nonce) pair once
    and drops a repeat silently, so two requests with one nonce would lose the second. The
    low 16 bits count from a random start, and the ms part moves on when a ms's 65,536 are
    spent (or the clock steps back); only separate processes sharing one identity can still
    collide, one pair in 65,536 when they send in the same ms."""

    def __init__(self) -> None:
        self._counter = secrets.randbits(16)
        self._last = -1

    def next(self, now_ms: int | None = None) -> int:
        """The next nonce: creation time in ms (the log's replay window) in the high bits."""
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        nonce = (ms << 16) | self._counter
        self._counter = (self._counter + 1) & 0xFFFF
        if nonce <= self._last:
            nonce = self._last + 1
        self._last = nonce
        return nonce


@dataclass
class Prepared:
    """A signed request and what is needed to read its answers."""

    request: Request
    reply_key: SealingPrivateKey | None
    payload: bytes

    @property
    def request_id(self) -> bytes:
        return self.request.request_id


class ClientCore:
    """Builds requests for one client identity on one network."""

    def __init__(self, genesis: Genesis, identity: Ed25519PrivateKey) -> None:
        self.genesis = genesis
        self.identity = identity
        self.client_id = identity.public_key().public_bytes_raw()
        self.nonces = NonceSource()

    def prepare(self, op: Operation, *, now_ms: int | None = None) -> Prepared:
        """Sign ``op`` as a request; decryptions get a fresh ephemeral reply key."""
        reply = SealingPrivateKey.generate() if isinstance(op, _DECRYPTIONS) else None
        request = Request(
            self.genesis.chain_id,
            self.client_id,
            self.nonces.next(now_ms),
            op,
            reply.public_key.encode() if reply else None,
        ).signed(self.identity)
        return Prepared(request, reply, request.encode())

    def collector(
        self,
        prepared: Prepared,
        key_material: KeyMaterial | None = None,
    ) -> Collector:
        """A fresh collector for the answers to ``prepared``."""
        return Collector(self.genesis, prepared, key_material=key_material)


@dataclass
class Collector:
    """Accumulates node answers to one request until it is settled (see module docstring)."""

    genesis: Genesis
    prepared: Prepared
    answers: dict[int, Response] = field(default_factory=dict)
    misbehaving: set[int] = field(default_factory=set)
    partials: dict[int, Any] = field(default_factory=dict, repr=False)
    """Decoded partials by node: ``PartialDecryption`` (decrypt) or
    ``ElGamalPartial`` (decrypt_sum); their proofs are checked when they combine."""
    key_material: KeyMaterial | None = None
    """For a decryption: what partials are verified against (see ``KeyMaterial``)."""
    newer_stamps: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Node -> the (key version, share epoch) it answered under, for partials newer than
    ``key_material``."""
    packages: dict[int, tuple[bytes, ...]] = field(default_factory=dict)
    """FROST: node -> the commitments it says the log spent (the signing package)."""
    refused: set[int] = field(default_factory=set)
    """Nodes that answered with an error about themselves (no share, no nonce)."""
    signers: tuple[int, ...] = ()
    """FROST, once done: the nodes whose shares made the signature."""
    refusals: dict[int, str] = field(default_factory=dict)
    """Nodes that refused to put the request into the log, with the reason they gave."""
    done: bool = False
    result: Any = field(default=None, repr=False)  # a decryption's plaintext: never in a repr
    """Once done: the public answer, the plaintext, the signature, or for a sum the element
    ``m * G`` (``elgamal.discrete_log`` finds ``m``)."""

    @property
    def quorum(self) -> int:
        """Identical public answers needed: ``f + 1``."""
        return self.genesis.f + 1

    def add(self, node_id: int, data: bytes) -> bool:
        """Take one node's raw answer; returns True once the request is settled.

        Raises:
            RequestRejected: ``f + 1`` nodes agree on an error (a typed subclass).
        """
        if self.done or node_id in self.answers:
            return self.done
        try:
            response = Response.decode(data)
            info = self.genesis.node(node_id)
            if (
                response.node_id != node_id
                or response.request_id != self.prepared.request_id
                or response.chain_id != self.genesis.chain_id
            ):
                raise MalformedMessage("answer for another node, request or chain")
            response.verify(info.signing_key)
        except Exception:  # whatever a Byzantine node sends: its answer is discarded
            self.misbehaving.add(node_id)
            return False
        self.answers[node_id] = response
        if response.error in _NODE_LOCAL_ERRORS:
            self.refused.add(node_id)
            if self.frost:
                return self._try_frost()
        if isinstance(self.prepared.request.op, _DECRYPTIONS) and response.error is None:
            if self.frost:
                return self._add_frost(node_id, response)
            return self._add_partial(node_id, response)
        return self._settle_public()

    @property
    def frost(self) -> bool:
        """Whether this is a FROST signature (its answers carry shares and the package)."""
        return (
            isinstance(self.prepared.request.op, Sign)
            and self.key_material is not None
            and self.key_material.kind == "sign-ed25519"
        )

    def _settle_public(self) -> bool:
        # A node without a share says so for itself only: f + 1 of those must not end a
        # decryption that t other nodes can still serve.
        counts = Counter(
            r.agreement_key() for r in self.answers.values() if r.error not in _NODE_LOCAL_ERRORS
        )
        for key, count in counts.items():
            if count >= self.quorum:
                winner = next(r for r in self.answers.values() if r.agreement_key() == key)
                if winner.error is not None:
                    self.done = True
                    raise error_for(winner.error, winner.message)
                if isinstance(self.prepared.request.op, _DECRYPTIONS):
                    continue  # a decryption settles only on partials
                self.done = True
                self.result = winner.result
                return True
        return False

    def _add_partial(self, node_id: int, response: Response) -> bool:
        reply_key = self.prepared.reply_key
        assert reply_key is not None
        try:
            if response.sealed is None:
                raise MalformedMessage("no sealed partial")
            raw = open_sealed(reply_key, response.sealed, sealed_aad(response.request_id, node_id))
            op = self.prepared.request.op
            partial: Any
            if isinstance(op, Decrypt):
                partial = PartialDecryption.decode(RISTRETTO255, raw)
            elif isinstance(op, DecryptSum):
                partial = elgamal.ElGamalPartial.decode(raw)
            else:
                partial = bls.PartialSignature.decode(raw)
            if (partial.signer if isinstance(op, Sign) else partial.id) != node_id:
                raise MalformedMessage("partial for another participant")
            stamp = self._stamp(response)
        except (MalformedMessage, CryptoError):
            self.misbehaving.add(node_id)
            return False
        if not self._current(node_id, stamp):
            return False
        self.partials[node_id] = partial
        return self._try_combine()

    def _stamp(self, response: Response) -> tuple[int, int]:
        """The (key version, share epoch) a partial says it was made under.

        Raises:
            MalformedMessage: another key, or no version and epoch.
        """
        result = response.result if isinstance(response.result, dict) else {}
        if result.get("key_id") != self.key_id:
            raise MalformedMessage("a partial for another key")
        version, epoch = result.get("version"), result.get("epoch")
        if type(version) is not int or type(epoch) is not int or min(version, epoch) < 0:
            raise MalformedMessage("a partial names no key version and share epoch")
        return version, epoch

    def _current(self, node_id: int, stamp: tuple[int, int]) -> bool:
        """Whether a partial's stamp is the one the key material is for.

        Raises:
            StaleKeyMaterial: f + 1 nodes answered under one newer stamp.
        """
        if self.key_material is None:
            return True
        held = (self.key_material.version, self.key_material.epoch)
        if stamp == held:
            return True
        # All honest nodes answer at one log height, so under one key version and share
        # epoch, and never an older one than the client fetched before asking: older is a
        # lie. Newer means a refresh (or, for a signature, a rotation) since the fetch; f + 1
        # nodes (at least one honest) saying so is worth fetching the key again, fewer wait
        # for the others.
        if stamp < held:
            self.misbehaving.add(node_id)
            return False
        self.newer_stamps[node_id] = stamp
        if sum(1 for s in self.newer_stamps.values() if s == stamp) >= self.quorum:
            self.done = True
            raise StaleKeyMaterial(stamp[1], stamp[0])
        return False

    # -- FROST --------------------------------------------------------------------------------
    def _add_frost(self, node_id: int, response: Response) -> bool:
        """Take a node's FROST answer: the package it says the log spent, and (a chosen
        signer) its signature share sealed to this request."""
        reply_key = self.prepared.reply_key
        assert reply_key is not None
        try:
            stamp = self._stamp(response)
            assert isinstance(response.result, dict)  # _stamp checked it
            listed = response.result.get("commitments")
            if (
                not isinstance(listed, list)
                or len(listed) != self.genesis.t
                or not all(isinstance(c, bytes) and len(c) == PACKAGE_ENTRY_SIZE for c in listed)
            ):
                raise MalformedMessage("a FROST answer without t commitments")
            package = tuple(listed)
            signers = {entry_signer(c) for c in package}
            share = None
            if response.sealed is not None:
                raw = open_sealed(
                    reply_key, response.sealed, sealed_aad(response.request_id, node_id)
                )
                share = frost.SignatureShare.decode(_FROST, raw)
                if share.identifier != node_id or node_id not in signers:
                    raise MalformedMessage("a FROST share from a signer the package does not list")
        except (MalformedMessage, CryptoError):
            self.misbehaving.add(node_id)
            return False
        if not self._current(node_id, stamp):
            return False
        self.packages[node_id] = package
        if share is not None:
            self.partials[node_id] = share
        return self._try_frost()

    def _try_frost(self) -> bool:
        """Once f + 1 nodes agree on the package (one of them honest: it is the log's), sum
        the chosen signers' shares; a signer that refused or sent a bad share fails this
        attempt at once, naming it, so the next one avoids it.

        Raises:
            SignersFailed: a chosen signer refused, or its share does not verify.
            QuorumUnavailable: every share verifies, yet the signature does not (the key
                material is not the key's): asking again would not help.
        """
        agreed = self._agreed_package()
        if agreed is None:
            return False
        self.misbehaving.update(i for i, p in self.packages.items() if p != agreed)
        signers = [entry_signer(c) for c in agreed]
        refused = [i for i in signers if i in self.refused]
        if refused:
            self.done = True
            raise SignersFailed(refused)
        # A signer that lied about the package still counts with its share: the share is
        # checked against the agreed package, and a bad one names it.
        shares = [self.partials[i] for i in signers if i in self.partials]
        if len(shares) < len(signers):
            return False
        assert self.key_material is not None and isinstance(self.prepared.request.op, Sign)
        material = self.key_material
        try:
            package = frost.SigningPackage(
                logged_commitments(agreed), self.prepared.request.op.message
            )
            public = frost.PublicKeyPackage(
                dict(material.verification_keys), material.public_key, self.genesis.t
            )
            signature = frost.aggregate(_FROST, package, shares, public)
        except InvalidPartial as exc:
            self.misbehaving.update(exc.culprits)
            self.done = True
            raise SignersFailed(exc.culprits, exc.culprits) from None
        except CryptoError:
            self.done = True
            raise QuorumUnavailable(len(self.answers), self.genesis.t, self.misbehaving) from None
        self.misbehaving.update(self.newer_stamps)
        self.done = True
        self.result = signature
        self.signers = tuple(signers)
        return True

    def _agreed_package(self) -> tuple[bytes, ...] | None:
        """FROST: the package f + 1 nodes name (so the log's), once they do."""
        counts = Counter(self.packages.values())
        return next((p for p, c in counts.items() if c >= self.quorum), None)

    def waiting_for_signers(self) -> tuple[int, ...]:
        """FROST: the chosen signers whose shares have not come (once the package is known)."""
        agreed = self._agreed_package()
        if agreed is None:
            return ()
        return tuple(entry_signer(c) for c in agreed if entry_signer(c) not in self.partials)

    @cached_property
    def key_id(self) -> str:
        """The key the request's partials must be made with (from its op or ciphertext)."""
        op = self.prepared.request.op
        if isinstance(op, Sign):
            return op.key_id
        if isinstance(op, DecryptSum):
            return SumCiphertext.decode(op.ciphertext).key_id
        assert isinstance(op, Decrypt)
        return tdh2.parse(op.ciphertext).key_id

    def _try_combine(self) -> bool:
        t = self.genesis.t
        if len(self.partials) < t:
            return False
        op = self.prepared.request.op
        if self.key_material is None:
            raise ValueError("a decryption collector needs key_material before partials")
        public_key, vks = self.key_material.public_key, self.key_material.verification_keys
        try:
            if isinstance(op, Decrypt):
                result: Any
                result, culprits = tdh2.combine(
                    public_key, op.ciphertext, list(self.partials.values()), vks, t, op.context
                )
            elif isinstance(op, Sign):
                result, culprits = self._combine_signature(op, public_key, vks), ()
            else:
                assert isinstance(op, DecryptSum)
                # The result is m * G: finding m (a search that may take seconds) is left to
                # the caller, off the event loop (``elgamal.discrete_log``).
                ct = SumCiphertext.decode(op.ciphertext)
                result, culprits = elgamal.combine_sum(
                    ct.ciphertext,
                    list(self.partials.values()),
                    vks,
                    t,
                    key_context=ct.key_context(),
                )
        except NotEnoughPartials as exc:
            self.misbehaving.update(exc.culprits)
            for bad in exc.culprits:
                self.partials.pop(bad, None)
            return False
        except InvalidCiphertext:
            self.done = True
            raise InvalidCiphertextError() from None
        # t proven partials fixed the version and epoch: whoever claimed newer ones lied.
        self.misbehaving.update(culprits, self.newer_stamps)
        self.done = True
        self.result = result
        return True

    def _combine_signature(self, op: Sign, public_key: bytes, vks: Mapping[int, bytes]) -> bytes:
        """The key's signature from t partials, checked.

        Optimistic: combine the first t and check the result with one pairing check. Only if
        that fails is each partial paired on its own (``bls.combine``), naming the bad ones.
        """
        t = self.genesis.t
        try:
            signature = bls.combine_unchecked(list(self.partials.values())[:t])
            bls.verify(public_key, op.message, signature)
            return signature
        except CryptoError:
            pass
        points: dict[int, Any] = {}
        bad: list[int] = []
        for i in self.partials:
            try:
                points[i] = bls.decode_public_key(vks[i])
            except (KeyError, CryptoError):
                bad.append(i)  # no usable verification key: nothing it sends can count
        if bad:
            raise NotEnoughPartials(len(self.partials) - len(bad), t, bad)
        partials = list(self.partials.values())
        for p in partials:
            try:
                bls.verify_partial(p, points[p.signer], op.message)
            except CryptoError:
                bad.append(p.signer)
        if bad:
            raise NotEnoughPartials(len(self.partials) - len(bad), t, bad)
        signature = bls.combine(partials, op.message, points, t)
        bls.verify(public_key, op.message, signature)
        return signature

    def refused_before_log(self, node_id: int, reason: str) -> None:
        """Record a node's refusal to put the request into the log (``reason`` is its text)."""
        if node_id not in self.answers:
            self.refusals[node_id] = reason[:300]

    def unavailable(self) -> QuorumUnavailable | RequestRejected:
        """The error to raise when waiting ends unsettled: the reason ``f + 1`` nodes gave
        for refusing the request before the log, if they agree on one, else how many
        answered."""
        reasons = Counter(self.refusals.values())
        if reasons:
            reason, count = reasons.most_common(1)[0]
            if count >= self.quorum:
                # "refused: CODE: message" names why (e.g. the log's rules do not serve the
                # operation); "refused: SomeError" only that the request is malformed.
                text = reason.removeprefix("refused: ")
                code, sep, message = text.partition(": ")
                if sep and code.replace("_", "").isalpha() and code.islower():
                    return error_for(code, message)
                return RequestRejected("refused", text)
        valid = len(set(self.answers) - self.misbehaving)
        needed = (
            self.genesis.t if isinstance(self.prepared.request.op, _DECRYPTIONS) else self.quorum
        )
        return QuorumUnavailable(valid, needed, self.misbehaving)


SIGN_ATTEMPTS = 4
"""FROST signing sessions a ``sign`` may run (each without the signers that failed before)."""
AVOID_SECONDS = 60.0
"""How long a signer that failed is passed over (asked last) by this client's signatures."""
BUSY_RETRIES = 6
"""Back-offs a FROST ``sign`` takes while the log answers ``signers_unavailable`` or
``throttled`` (0.2, 0.4, 0.8, 1.6, 2, 2 s: about 8 s) before it gives up."""


class SignerAvoidance:
    """Which FROST signers this client asks the log to pass over, and until when (shared by
    every signature of one client; times are the caller's clock, in seconds)."""

    def __init__(self) -> None:
        self.until: dict[int, float] = {}

    def avoid(self, now: float) -> tuple[int, ...]:
        """The nodes to name in ``Sign.avoid`` now."""
        return tuple(sorted(i for i, until in self.until.items() if until > now))

    def failed(self, nodes: tuple[int, ...], now: float) -> None:
        """``nodes`` failed a signature: pass them over for ``AVOID_SECONDS``."""
        for node in nodes:
            self.until[node] = now + AVOID_SECONDS

    def signed(self, nodes: tuple[int, ...]) -> None:
        """``nodes`` made a valid signature (the log needed them after all): they are back."""
        for node in nodes:
            self.until.pop(node, None)


@dataclass
class FrostRetry:
    """One FROST ``sign`` call's retry policy: after each failed attempt, ``after`` says how
    long to wait before the next one, or that the call fails with that error."""

    avoidance: SignerAvoidance
    failures: int = 0
    busy: int = 0
    failed_here: set[int] = field(default_factory=set)
    """Signers that failed an attempt of this call."""

    def avoid(self, now: float) -> tuple[int, ...]:
        """What to ask the log to pass over in the next attempt: the client's suspects at
        first; once an attempt of this call failed, the signers that failed in it. (A failure
        among the suspects means the log needed some of them: the others get their chance,
        e.g. a node back from a restart, instead of the one that just failed again.)"""
        if self.failed_here:
            return tuple(sorted(self.failed_here))
        return self.avoidance.avoid(now)

    def after(self, error: Exception, now: float) -> float | None:
        """Seconds to wait before the next attempt after ``error`` (None: give up, raise it).

        A lost signer (``SignersFailed``) is retried at once without it, up to
        ``SIGN_ATTEMPTS`` attempts; empty nonce pools or a busy client (``signers_unavailable``,
        ``throttled``) back off exponentially, ``BUSY_RETRIES`` times; anything else is final.
        """
        if isinstance(error, SignersFailed):
            self.failures += 1
            self.failed_here.update(error.nodes)
            self.avoidance.failed(error.nodes, now)
            return None if self.failures >= SIGN_ATTEMPTS else 0.0
        if isinstance(error, RequestRejected) and error.code in (
            "signers_unavailable",
            "throttled",
        ):
            self.busy += 1
            return None if self.busy > BUSY_RETRIES else min(0.1 * 2**self.busy, 2.0)
        return None
