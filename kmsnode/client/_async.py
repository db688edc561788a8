"""The trio client: sends each request to every node and settles it through the sans-I/O core.

Familiar to users of AWS KMS and Vault transit: ``create_key``, ``describe_key``,
``list_keys``, ``encrypt``, ``decrypt``, ``generate_data_key``, ``set_policy``. Encryption is
local (TDH2 under the public key that f + 1 nodes vouch for); decryption gathers sealed,
proven partials from the nodes and combines them here, so no node ever sees the plaintext or
another node's partial.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .. import net
from ..crypto import bls, elgamal, tdh2
from ..crypto.errors import CryptoError
from ..genesis import Genesis
from ..wire import sums
from ..wire.requests import (
    DEFAULT_DELETION_WAIT_S,
    MAX_SIGN_MESSAGE,
    ActivateRules,
    CancelKeyDeletion,
    CreateKey,
    Decrypt,
    DecryptSum,
    DescribeKey,
    DisableKey,
    EnableKey,
    Encrypt,
    GetPolicy,
    KeyKind,
    ListKeys,
    Operation,
    Permission,
    RefreshKey,
    RotateKey,
    ScheduleKeyDeletion,
    SetPolicy,
    SetSumLimit,
    Sign,
    is_key_id,
)
from ..wire.vouch import sign_vouch
from ._ask import ask_all, ask_genesis
from ._audit import AuditPage, agree_on_audit
from ._config import ClientConfig
from ._core import (
    ClientCore,
    Collector,
    FrostRetry,
    KeyMaterial,
    Prepared,
    SignerAvoidance,
    material_of,
)
from ._results import KeyMetadata, KeyPolicy
from .errors import (
    GenesisMismatch,
    InvalidCiphertextError,
    KeyNotFound,
    KeyUnavailable,
    NonceReused,
    QuorumUnavailable,
    RequestRejected,
    SignersFailed,
    StaleKeyMaterial,
    SumOutOfBound,
)

STALE_RETRIES = 3
"""Times a decryption is asked again after the key was refreshed under it (each needs another
refresh to complete between fetching the key and the decryption's commit)."""
DEFAULT_TIMEOUT = 30.0
GENESIS_RECHECK = 30.0
"""Seconds a failed request reuses what the nodes last said of their genesis."""
GENESIS_CHECK_TIMEOUT = 2.0
"""Seconds connected nodes get to say their genesis digest after a request failed."""
ATTEMPT_TIMEOUT = 5.0
"""Seconds one node gets to answer one attempt before the client asks it again (a node that
went silent, e.g. restarted after taking the request, is retried instead of waited out; a
repeat is harmless: the node answers a request it already served from its cache)."""
SIGNER_WAIT = 2.0
"""Seconds a FROST signature waits for a chosen signer's share once f + 1 nodes named the
signers (they execute the same committed request at about the same time)."""
ACTIVATION_DELAY = 20
"""Blocks between an upgrade's commit and its rules taking effect, unless the caller says."""
MAX_AUDIT_PAGE = 1000
"""Entries one audit call asks each node for (a node serves at most this many per page)."""


class AsyncDistributedKMS(AbstractAsyncContextManager["AsyncDistributedKMS"]):
    """``async with AsyncDistributedKMS(genesis=..., identity=...) as kms: ...``."""

    def __init__(
        self,
        *,
        genesis: Genesis,
        identity: Ed25519PrivateKey,
        nodes: Sequence[int] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self.core = ClientCore(genesis, identity)
        self.genesis = genesis
        self.genesis_digest = genesis.digest()
        self.nodes = list(nodes) if nodes else list(genesis.ids)
        self.timeout = timeout
        self.attempt_timeout = min(attempt_timeout, timeout)
        self._host = net.Host(net.NetworkIdentity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])
        # Sent with every submit: the nodes then evict strangers' connections before ours.
        self._vouch = sign_vouch(identity, genesis.chain_id, self._host.peer_id.to_base58())
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None
        self._sessions: dict[int, net.Session] = {}
        self._key_cache: dict[tuple[str, int], KeyMaterial] = {}
        self._signing_version: dict[str, int] = {}
        """Per signing key: its current version when last seen (a rotation is noticed when
        the nodes sign under a newer one)."""
        self.avoidance = SignerAvoidance()
        """FROST signers this client passes over for now (see ``sign``)."""
        """FROST signers that failed lately -> until when (trio clock) the log is asked to
        pass them over (sooner, if one signs validly when the log needs it after all)."""
        self.signer_wait = SIGNER_WAIT
        self.last_misbehaving: tuple[int, ...] = ()
        self._genesis_seen: tuple[float, list[int], list[int]] | None = None
        """(trio time, nodes that said they run this client's genesis, nodes that said they
        run another) for failed requests."""

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str] | None = None, **kw: Any
    ) -> AsyncDistributedKMS:
        cfg = ClientConfig.load(path)
        return cls(genesis=cfg.genesis, identity=cfg.identity, **kw)

    async def __aenter__(self) -> AsyncDistributedKMS:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        await self._nursery.start(self._host.run)
        # One long-lived session stream per node, kept (and redialled) while the client lives:
        # a new stream per request costs a protocol negotiation on both sides.
        for node_id in self.nodes:
            info = self.genesis.node(node_id)
            session = net.Session(self._host, net.parse_peer_id(info.peer_id), info.addrs)
            self._sessions[node_id] = session
            await self._nursery.start(session.run)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._nursery_cm is not None
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        await self._nursery_cm.__aexit__(None, None, None)
        self._sessions.clear()

    # -- the API --------------------------------------------------------------------------------
    async def create_key(
        self, kind: str = "encrypt", description: str = "", *, wait: bool = True
    ) -> KeyMetadata:
        """Create a key by DKG; with ``wait``, return once it is enabled."""
        result = await self._call(CreateKey(KeyKind(kind), description))
        key_id = str(result["key_id"])
        if not wait:
            return await self.describe_key(key_id)
        return await self.wait_for_key(key_id)

    async def wait_for_key(self, key_id: str, timeout: float = 60.0) -> KeyMetadata:
        """Poll ``describe_key`` until the key is enabled (or failed: ``KeyUnavailable``).

        Each poll is a request through the log, so the polls back off (0.25 s growing to 1 s):
        a DKG takes about a second or two, and many clients waiting must not flood the log.
        """

        def enabled(meta: KeyMetadata) -> bool:
            if meta.state == "failed":
                failure = meta.versions[0].failure if meta.versions else ""
                raise KeyUnavailable("key_failed", f"the DKG for {key_id} failed: {failure}")
            return meta.state == "enabled"

        meta = await self._poll_describe(key_id, timeout, enabled)
        if meta is None:
            raise KeyUnavailable("key_pending", f"{key_id} was not enabled within {timeout:g} s")
        return meta

    async def _poll_describe(
        self, key_id: str, timeout: float, done: Callable[[KeyMetadata], bool]
    ) -> KeyMetadata | None:
        """``describe_key`` until ``done`` (which may raise) says so; None after ``timeout``.
        Each poll is a request through the log, so the polls back off (0.25 s growing to 1 s)."""
        delay = 0.25
        with trio.move_on_after(timeout):
            while True:
                meta = await self.describe_key(key_id)
                if done(meta):
                    return meta
                await trio.sleep(delay)
                delay = min(1.0, delay * 1.5)
        return None

    async def describe_key(self, key_id: str) -> KeyMetadata:
        """Public metadata of a key: kind, state, versions with public and verification keys."""
        return KeyMetadata.from_result(dict(await self._call(DescribeKey(key_id))))

    async def list_keys(self) -> list[str]:
        """Ids of the keys this client may use or see."""
        return list((await self._call(ListKeys()))["keys"])

    async def audit(self, start: int = 0, limit: int = 100) -> AuditPage:
        """Up to ``limit`` audit entries from ``start``: those f + 1 nodes agree on, in a
        chain that verifies (the trail is public: who asked what, and the outcome)."""
        limit = max(1, min(limit, MAX_AUDIT_PAGE))
        ask = net.Envelope("audit", {"from": start, "limit": limit})
        got = await ask_all(self._sessions, self.nodes, ask, self.attempt_timeout)
        answers = {i: e.body for i, frames in got.items() for e in frames if e.kind == "audit"}
        quorum = self.genesis.f + 1
        page = agree_on_audit(answers, start, limit, quorum)
        valid = len(answers) - len(page.misbehaving)
        if valid < quorum:
            raise QuorumUnavailable(valid, quorum, page.misbehaving)
        self.last_misbehaving = page.misbehaving
        return page

    async def encrypt(
        self, key_id: str, plaintext: bytes, context: Mapping[str, str] | None = None
    ) -> bytes:
        """Encrypt locally under the key's current public key, which f + 1 nodes vouch for."""
        result = await self._call(Encrypt(key_id))
        if result.get("kind", "encrypt") != "encrypt":
            raise KeyUnavailable(
                "wrong_key_kind", f"{key_id} is a {result['kind']} key (see encrypt_int)"
            )
        return tdh2.encrypt(
            result["public_key"],
            plaintext,
            key_id=key_id,
            key_version=result["version"],
            context=dict(context or {}),
        )

    async def decrypt(self, ciphertext: bytes, context: Mapping[str, str] | None = None) -> bytes:
        """Decrypt from t verified partials, each sealed to this request's ephemeral key."""
        try:
            ct = tdh2.parse(ciphertext)
        except CryptoError:  # malformed: the same opaque error as any other bad ciphertext
            raise InvalidCiphertextError() from None
        if not is_key_id(ct.key_id):
            raise InvalidCiphertextError()  # no key has that id: tampered
        op = Decrypt(ciphertext, dict(context or {}))
        try:
            material = await self._key_material(ct.key_id, ct.key_version)
        except KeyNotFound:
            # Key ids are never reused (a deleted key stays, as such), so a ciphertext naming a
            # key or version that does not exist (or never became active) was tampered with,
            # or made elsewhere: the same opaque error as any other.
            raise InvalidCiphertextError() from None
        return bytes(await self._call_with_material(op, ct.key_id, material))

    async def encrypt_int(self, key_id: str, value: int) -> bytes:
        """Encrypt the integer ``value`` under a homomorphic key (locally, under the current
        public key f + 1 nodes vouch for). Ciphertexts add up without decrypting: see
        ``add``; only ``decrypt_sum`` asks the nodes."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("encrypt_int takes an int")
        if not 0 <= value < elgamal.MAX_BOUND:
            # Sums are searched for in [0, bound) with bound <= 2^40: a negative or larger
            # value could never be read back.
            raise ValueError(f"encrypt_int takes 0 <= value < 2^40, got {value}")
        result = await self._call(Encrypt(key_id))
        if result.get("kind") != "homomorphic":
            raise KeyUnavailable(
                "wrong_key_kind", f"{key_id} is a {result.get('kind')} key, not homomorphic"
            )
        ct = elgamal.encrypt_int(result["public_key"], value)
        return sums.SumCiphertext(key_id, int(result["version"]), ct).encode()

    @staticmethod
    def add(*ciphertexts: bytes) -> bytes:
        """The encryption of the sum of ``encrypt_int`` ciphertexts (same key version); local,
        no node involved.

        Raises:
            InvalidCiphertextError: a ciphertext is malformed.
            ValueError: none given, or ciphertexts under different keys or versions.
        """
        return sums.add(*(_sum_ciphertext(c) for c in ciphertexts)).encode()

    @staticmethod
    def scale(ciphertext: bytes, k: int) -> bytes:
        """The encryption of ``k`` times the plaintext (``k`` a public integer >= 0); local."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ValueError(f"scale takes an integer k >= 0, got {k!r}")
        return sums.scale(_sum_ciphertext(ciphertext), k).encode()

    async def decrypt_sum(self, ciphertext: bytes, bound: int = 2**32) -> int:
        """The integer an ``encrypt_int`` ciphertext (or a sum of them) holds, from t verified
        partials sealed to this request's ephemeral key; found by search in ``[0, bound)``
        (``bound`` up to 2^40), in a worker thread. The search keeps a table of about
        2 * sqrt(bound) points for the process's life: ~20 MB and ~1 s at worst for 2^32,
        ~1 GB and ~17 s for 2^40; choose the smallest bound the totals need.

        Raises:
            SumOutOfBound: the value is not below ``bound`` (or the total is negative).
            InvalidCiphertextError: the ciphertext is malformed or names no usable key.
        """
        try:
            elgamal.check_bound(bound)
        except CryptoError as exc:
            raise ValueError(str(exc)) from None
        ct = _sum_ciphertext(ciphertext)
        try:
            material = await self._key_material(ct.key_id, ct.key_version)
        except KeyNotFound:
            raise InvalidCiphertextError() from None
        op = DecryptSum(ciphertext)
        point = await self._call_with_material(op, ct.key_id, material)
        try:
            # Variable time over public data, up to seconds: off the event loop.
            return await trio.to_thread.run_sync(elgamal.discrete_log, point, bound)
        except CryptoError:
            raise SumOutOfBound(bound) from None

    async def sign(self, key_id: str, message: bytes) -> bytes:
        """A threshold signature of ``message`` (at most 4096 bytes; sign a digest of anything
        longer) under a signing key's current version; the version it was made under is
        ``signing_version(key_id)`` right after. Both kinds verify with standard libraries and
        with ``verify``:

        - ``sign-bls``: t partials, each sealed to this request and checked by pairing,
          combined; an IETF BLS (``..._POP_``) signature.
        - ``sign-ed25519``: FROST (RFC 9591). The log picks t signers and spends one nonce
          commitment of each; their shares are sealed to this request, summed and checked: an
          ordinary Ed25519 signature (RFC 8032). A signer that refuses, stays silent or sends
          a bad share fails the attempt; the client asks again without it
          (``SIGN_ATTEMPTS`` attempts in all) and passes it over for ``AVOID_SECONDS``, or
          until it signs validly when the log needs it after all.

        FROST signatures back off and retry while the nodes' nonce pools are empty or this
        client has too many signatures in one block (``signers_unavailable``, ``throttled``).

        Raises:
            ValueError: the message is longer than 4096 bytes.
            KeyUnavailable: not a signing key, disabled, or no active version.
            SignersFailed: every FROST attempt lost a signer.
            RequestRejected: ``throttled`` or ``signers_unavailable`` still after 6 back-offs
                (about 8 s).
        """
        message = bytes(message)
        if len(message) > MAX_SIGN_MESSAGE:
            raise ValueError(f"sign takes at most {MAX_SIGN_MESSAGE} bytes: sign a digest")
        version = self._signing_version.get(key_id)
        material = None if version is None else self._key_cache.get((key_id, version))
        if material is None:
            material = material_of(await self.describe_key(key_id), key_id, None)
            self._key_cache[(key_id, material.version)] = material
        if material.kind != "sign-ed25519":
            signature = await self._call_with_material(Sign(key_id, message), key_id, material)
            return bytes(signature)
        retry = FrostRetry(self.avoidance)
        while True:
            avoid = retry.avoid(trio.current_time())
            try:
                signature = await self._call_with_material(
                    Sign(key_id, message, avoid), key_id, material
                )
                return bytes(signature)
            except (SignersFailed, RequestRejected) as error:
                delay = retry.after(error, trio.current_time())
                if delay is None:
                    raise
                await trio.sleep(delay)

    def signing_version(self, key_id: str) -> int | None:
        """The key version this client's last signature under ``key_id`` was made with."""
        return self._signing_version.get(key_id)

    async def verify(
        self, key_id: str, message: bytes, signature: bytes, version: int | None = None
    ) -> bool:
        """Whether ``signature`` is the key's signature of ``message`` under ``version``
        (default: the current one), checked here against the public key f + 1 nodes vouch
        for: BLS for a ``sign-bls`` key, Ed25519 (by OpenSSL) for a ``sign-ed25519`` one. A
        rotation retires the older versions from ``verify`` unless named.

        Raises:
            KeyUnavailable: not a signing key, disabled, or no such active version.
        """
        meta = await self.describe_key(key_id)
        if meta.kind not in ("sign-bls", "sign-ed25519"):
            raise KeyUnavailable("wrong_key_kind", f"{key_id} is a {meta.kind} key")
        if meta.state != "enabled":
            raise KeyUnavailable("key_unavailable", f"{key_id} is {meta.state}")
        public_key = material_of(meta, key_id, version).public_key
        if meta.kind == "sign-ed25519":
            # OpenSSL's RFC 8032 verification: no code of ours between key and verdict.
            try:
                Ed25519PublicKey.from_public_bytes(public_key).verify(
                    bytes(signature), bytes(message)
                )
            except (InvalidSignature, ValueError):
                return False
            return True
        try:
            bls.verify(public_key, bytes(message), bytes(signature))
        except CryptoError:
            return False
        return True

    async def generate_data_key(
        self, key_id: str, context: Mapping[str, str] | None = None, size: int = 32
    ) -> tuple[bytes, bytes]:
        """A fresh data key and its encryption under ``key_id`` (envelope encryption)."""
        data_key = secrets.token_bytes(size)
        return data_key, await self.encrypt(key_id, data_key, context)

    async def set_policy(self, key_id: str, client: bytes, permissions: Sequence[str]) -> None:
        """Grant ``client`` exactly ``permissions`` on ``key_id`` (empty revokes)."""
        perms = tuple(Permission(p) for p in permissions)
        await self._call(SetPolicy(key_id, client, perms))

    async def rotate_key(self, key_id: str, timeout: float = 60.0) -> KeyMetadata:
        """A new version by a fresh DKG (the key's admins); returns once it is active, after
        which encryptions use it while older versions still decrypt.

        Raises:
            KeyUnavailable: the new version's DKG failed, or did not finish within ``timeout``
                (the previous version stays current either way).
        """
        number = int((await self._call(RotateKey(key_id)))["version"])

        def active(meta: KeyMetadata) -> bool:
            v = meta.version(number)
            if v is not None and v.state == "failed":
                raise KeyUnavailable(
                    "rotation_failed", f"the DKG for {key_id} version {number} failed: {v.failure}"
                )
            return v is not None and v.state == "active"

        meta = await self._poll_describe(key_id, timeout, active)
        if meta is None:
            raise KeyUnavailable(
                "key_pending", f"{key_id} version {number} not active in {timeout:g} s"
            )
        return meta

    async def refresh_key(self, key_id: str, timeout: float = 60.0) -> KeyMetadata:
        """New shares for every active version of ``key_id`` (the key's admins): the public
        key, and so every ciphertext, stays valid, while the shares any node held before are
        useless from then on. Returns once every version reached its new share epoch.

        Raises:
            KeyUnavailable: a version's refresh failed, or did not finish within ``timeout``
                (a version whose refresh failed keeps its previous shares and still serves).
        """
        result = await self._call(RefreshKey(key_id))
        targets = {int(v): int(e) for v, e in dict(result["epochs"]).items()}

        def refreshed(meta: KeyMetadata) -> bool:
            for number, epoch in targets.items():
                v = meta.version(number)
                if v is None or v.epoch >= epoch:
                    continue
                if not v.refreshing:
                    raise KeyUnavailable(
                        "refresh_failed",
                        f"the refresh of {key_id} version {number} failed: {v.refresh_failure}",
                    )
                return False
            return True

        meta = await self._poll_describe(key_id, timeout, refreshed)
        if meta is None:
            raise KeyUnavailable("refresh_pending", f"{key_id} not refreshed in {timeout:g} s")
        for number in targets:
            self._key_cache.pop((key_id, number), None)
        return meta

    async def disable_key(self, key_id: str) -> None:
        """Stop every use of ``key_id`` until ``enable_key`` (the key's admins)."""
        await self._call(DisableKey(key_id))

    async def enable_key(self, key_id: str) -> None:
        """Allow a disabled key's use again (the key's admins)."""
        await self._call(EnableKey(key_id))

    async def schedule_key_deletion(
        self, key_id: str, wait_seconds: int = DEFAULT_DELETION_WAIT_S
    ) -> int:
        """Schedule ``key_id`` for deletion after ``wait_seconds`` (the key's admins): it is
        unusable at once, and at the due time every node erases its shares, so nothing
        encrypted under it can be decrypted again. Returns the due time (Unix ms, log time).

        Raises:
            RequestRejected: ``wait_too_short`` (below the network's minimum, see the genesis),
                ``rotation_in_progress`` or ``refresh_in_progress``, or ``not_supported`` on a
                network whose rules (v2) predate deletion.
            KeyUnavailable: the key is already pending deletion or deleted.
        """
        result = await self._call(ScheduleKeyDeletion(key_id, wait_seconds))
        self._forget_key(key_id)
        return int(result["deletion_due_ms"])

    async def set_sum_limit(self, key_id: str, max_sums: int, window_s: int) -> None:
        """Allow each client at most ``max_sums`` served ``decrypt_sum`` requests on the
        homomorphic key ``key_id`` per ``window_s`` seconds (the key's admins; a log on rules
        v4). Whoever may decrypt a sum may decrypt one contribution too: this bounds how many
        values such a client learns. ``max_sums=0`` lifts the limit.

        Raises:
            RequestRejected: ``wrong_key_kind``, ``key_unavailable``, ``not_supported``
                (rules older than v4) or ``access_denied``.
            ValueError: out of range (1 to 1000 sums, 1 s to 30 days; or 0 to lift).
        """
        op = SetSumLimit(key_id, max_sums, window_s if max_sums else 0)  # checks the range
        await self._call(op)
        self._forget_key(key_id)

    async def cancel_key_deletion(self, key_id: str) -> str:
        """Stop a scheduled deletion before it is due (the key's admins). Returns the key's
        state: ``disabled`` (``enable_key`` to use it again), or ``failed`` for a key whose
        DKG had failed.

        Raises:
            RequestRejected: ``not_pending_deletion``.
        """
        result = await self._call(CancelKeyDeletion(key_id))
        return str(result["state"])

    async def activate_rules(
        self,
        version: int,
        after_blocks: int = ACTIVATION_DELAY,
        leave_behind: Sequence[int] = (),
    ) -> int:
        """Move the network to state rules ``version`` (genesis admins), ``after_blocks``
        blocks after the one that commits the request. Every node must first have said in the
        log that its software applies ``version`` (upgrade them all, then call this), and
        confirm again before that height, which the nodes do by themselves. Returns the height
        the rules take effect at if they do (the audit trail says ``rules_activated``, or
        ``rules_unsupported`` naming a node that did not confirm).

        ``leave_behind`` (a log on rules v4 or later) names at most f nodes the upgrade may go
        ahead without (down, or not upgraded yet); one of them whose software cannot apply
        the new rules stops at their height until it is upgraded.

        Raises:
            RequestRejected: ``rules_unsupported`` (names the nodes to upgrade first),
                ``rules_not_newer``, ``activation_pending``, ``activation_too_soon`` (fewer
                than 10 blocks), ``not_supported`` (leave_behind on a log older than v4)
                or ``access_denied``.
            ValueError: ``leave_behind`` names more than f nodes, or non-members.
        """
        leave_behind = tuple(leave_behind)
        strangers = sorted(set(leave_behind) - set(self.genesis.ids))
        if strangers:
            raise ValueError(f"leave_behind: nodes {strangers} are not committee members")
        if len(set(leave_behind)) > self.genesis.f:
            raise ValueError(f"leave_behind: at most f = {self.genesis.f} nodes")
        result = await self._call(ActivateRules(version, after_blocks, leave_behind))
        return int(result["height"])

    def _forget_key(self, key_id: str) -> None:
        """Drop cached public material of ``key_id`` (its state changed)."""
        for cached in [k for k in self._key_cache if k[0] == key_id]:
            del self._key_cache[cached]

    async def get_policy(self, key_id: str) -> KeyPolicy:
        """Every client's grants on ``key_id`` (for the key's admins)."""
        return KeyPolicy.from_result(dict(await self._call(GetPolicy(key_id))))

    # -- plumbing -------------------------------------------------------------------------------
    async def _key_material(self, key_id: str, version: int) -> KeyMaterial:
        cached = self._key_cache.get((key_id, version))
        if cached is not None:
            return cached
        try:
            material = material_of(await self.describe_key(key_id), key_id, version)
        except KeyUnavailable:
            # No ciphertext can exist under a version that never became active: see decrypt.
            raise KeyNotFound(
                "key_not_found", f"{key_id} has no usable version {version}"
            ) from None
        self._key_cache[(key_id, version)] = material
        return material

    async def _call_with_material(
        self,
        op: Decrypt | DecryptSum | Sign,
        key_id: str,
        material: KeyMaterial,
    ) -> Any:
        """A threshold operation, its partials checked against ``material``; when the nodes
        answer under a newer share epoch or key version (the key was refreshed or rotated
        since it was fetched), fetch the key again and check the same request's answers with
        it (asked for again: the log serves the request once)."""
        prepared: Prepared | None = None
        for _ in range(STALE_RETRIES):
            try:
                return await self._call(op, material, prepared)
            except StaleKeyMaterial as stale:
                self._key_cache.pop((key_id, material.version), None)
                self._key_cache.pop((key_id, stale.version), None)
                material = await self._key_material(key_id, stale.version)
                # The nodes keep their answers to this very request (by its id), made under
                # the keys just fetched: ask for them again rather than send a new request,
                # which the log would serve (and count against a sum limit) once more.
                prepared = stale.prepared
            except QuorumUnavailable:
                if prepared is None:
                    raise
                prepared = None  # the key changed again meanwhile: a new request, then
            finally:
                if isinstance(op, Sign):  # the version signatures are made under, as known
                    self._signing_version[key_id] = material.version
        return await self._call(op, material)

    async def _call(
        self,
        op: Operation,
        key_material: KeyMaterial | None = None,
        prepared: Prepared | None = None,
    ) -> Any:
        if prepared is not None:  # asked again for its answers: its nonce is its own
            return await self._call_once(op, key_material, prepared)
        try:
            return await self._call_once(op, key_material)
        except NonceReused:
            # Another process with this identity took the nonce first (the log served the
            # other request, not this one): sign again with a fresh nonce, once.
            return await self._call_once(op, key_material)

    async def _call_once(
        self, op: Operation, key_material: KeyMaterial | None, prepared: Prepared | None = None
    ) -> Any:
        prepared = prepared or self.core.prepare(op)
        collector = self.core.collector(prepared, key_material)
        errors: list[BaseException] = []
        # Asking every node reaches every mempool, so whichever node leads next proposes the
        # request. A client configured with fewer nodes, or missing a connection, asks the
        # nodes it does reach to relay the request to the rest.
        relay = len(self.nodes) < len(self.genesis.ids) or not all(
            s.stats.connected for s in self._sessions.values()
        )
        body = {"request": prepared.payload, "relay": relay, "vouch": self._vouch}
        signers_named = trio.Event()
        with trio.move_on_after(self.timeout):
            async with trio.open_nursery() as nursery:
                if collector.frost:
                    nursery.start_soon(
                        self._wait_for_signers,
                        collector,
                        signers_named,
                        nursery.cancel_scope,
                        errors,
                    )
                async with trio.open_nursery() as asks:
                    for node_id in self.nodes:
                        asks.start_soon(
                            self._ask,
                            node_id,
                            body,
                            collector,
                            nursery.cancel_scope,
                            errors,
                            signers_named,
                        )
                if not signers_named.is_set():
                    nursery.cancel_scope.cancel()  # every node answered: nothing to wait for
        self.last_misbehaving = tuple(sorted(collector.misbehaving))
        self.avoidance.signed(collector.signers)  # passed-over signers that signed are back
        if errors:
            if isinstance(errors[0], StaleKeyMaterial):
                errors[0].prepared = prepared  # its answers can be checked with newer keys
            raise errors[0]
        if not collector.done:
            error = collector.unavailable()
            # No answer from the log: say so if it is because nodes run another genesis.
            try:
                same, differs = await self._genesis_report()
            except Exception:  # only there to explain the error: never to replace it
                same, differs = [], []
            if len(differs) > self.genesis.f and len(same) <= self.genesis.f:
                # The client's genesis is the odd one out, not a few misconfigured nodes.
                raise GenesisMismatch(differs, error) from error
            if differs and isinstance(error, QuorumUnavailable):
                error = QuorumUnavailable(error.answered, error.needed, error.misbehaving, differs)
            raise error
        return collector.result

    async def _genesis_report(self) -> tuple[list[int], list[int]]:
        """(nodes that run this client's genesis, nodes that run another), for a failed
        request's error: asked of the nodes connected now, briefly, at most every
        ``GENESIS_RECHECK`` seconds (a failing request must not wait for nodes that are
        down, nor every failure ask again). A failing call may take up to
        ``GENESIS_CHECK_TIMEOUT`` longer for it."""
        now = trio.current_time()
        if self._genesis_seen is None or now - self._genesis_seen[0] >= GENESIS_RECHECK:
            connected = [i for i in self.nodes if self._sessions[i].stats.connected]
            if not connected:
                return [], []  # nobody to ask (and nothing learnt to keep)
            report = await self.check_genesis(connected, timeout=GENESIS_CHECK_TIMEOUT)
            self._genesis_seen = (
                now,
                [i for i, v in report.items() if v == "same"],
                [i for i, v in report.items() if v == "differs"],
            )
        return self._genesis_seen[1], self._genesis_seen[2]

    async def check_genesis(
        self, nodes: Sequence[int] | None = None, timeout: float | None = None
    ) -> dict[int, str]:
        """Ask every node (or ``nodes``) whether it runs this client's genesis (by digest,
        addresses aside): per node ``same``, ``differs``, ``unsupported`` (older software) or
        ``unreachable`` (no answer within ``timeout``, by default the attempt timeout)."""
        return await ask_genesis(
            self._sessions,
            self.nodes if nodes is None else nodes,
            self.genesis_digest,
            self.attempt_timeout if timeout is None else timeout,
        )

    async def _wait_for_signers(
        self,
        collector: Collector,
        signers_named: trio.Event,
        done: trio.CancelScope,
        errors: list[BaseException],
    ) -> None:
        """FROST: once the signers are known, give the missing ones ``signer_wait`` seconds,
        then fail the attempt naming them (the next one goes without them)."""
        await signers_named.wait()
        await trio.sleep(self.signer_wait)
        missing = collector.waiting_for_signers()
        if not collector.done and missing:
            collector.done = True
            errors.append(SignersFailed(missing))
            done.cancel()

    async def _ask(
        self,
        node_id: int,
        payload: Any,
        collector: Collector,
        done: trio.CancelScope,
        errors: list[BaseException],
        signers_named: trio.Event,
    ) -> None:
        session = self._sessions[node_id]
        delay = 0.2
        while True:
            answers: list[net.Envelope] | None = None
            with trio.move_on_after(self.attempt_timeout):
                with contextlib.suppress(net.RequestFailed):
                    answers = await session.request(
                        net.Envelope("submit", payload), timeout=self.attempt_timeout
                    )
            if answers is None:
                await trio.sleep(delay)  # silent or unreachable: try again until the deadline
                delay = min(delay * 2, 2.0)
                continue
            for env in answers:
                if env.kind == "resp" and isinstance(env.body, bytes):
                    try:
                        if collector.add(node_id, env.body):
                            done.cancel()
                        elif collector.frost and collector.waiting_for_signers():
                            signers_named.set()
                    except Exception as exc:  # a typed rejection the nodes agree on
                        errors.append(exc)
                        done.cancel()
                    return
                if env.kind == "err":
                    reason = env.body.get("reason") if isinstance(env.body, dict) else None
                    if reason in ("busy", "timeout"):
                        break
                    if isinstance(reason, str):
                        collector.refused_before_log(node_id, reason)
            else:
                return  # a refusal before the log (bad request): other nodes will say so too
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _sum_ciphertext(data: bytes) -> sums.SumCiphertext:
    try:
        return sums.SumCiphertext.decode(data)
    except CryptoError:
        raise InvalidCiphertextError() from None


__all__ = ["AsyncDistributedKMS", "ClientConfig", "QuorumUnavailable"]
