"""The replicated KMS state machine: ``apply(block) -> effects``, deterministic and pure.

Every honest node applies the same committed blocks in the same order and so holds the same
keys, policies, DKG sessions and audit trail, and derives the same effects. No clock, no
randomness, no I/O: time is the block's committed timestamp. Each node checks every request
on its own (signature, replay window, policy), so no node has to trust another's judgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..crypto import dkg, tdh2
from ..crypto.errors import CryptoError, InvalidCiphertext
from ..errors import MalformedMessage
from ..genesis import Genesis
from ..wire.payload import (
    ClientPayload,
    DkgPayload,
    NoncePayload,
    ReceivingKeyPayload,
    RulesPayload,
    TickPayload,
    decode_payload,
)
from ..wire.requests import (
    RULES_3_OPERATIONS,
    RULES_4_OPERATIONS,
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
    Permission,
    RefreshKey,
    Request,
    RotateKey,
    ScheduleKeyDeletion,
    SetPolicy,
    SetSumLimit,
    Sign,
)
from ..wire.sums import SumCiphertext
from . import _key_admin as admin
from ._audit import AuditTrail
from ._deletions import DeletionSchedule
from ._denied import Denied
from ._effects import (
    ComputeFrostShare,
    ComputePartial,
    ComputeSignaturePartial,
    ComputeSumPartial,
    Effect,
    KeyDeleted,
    Reply,
    RulesActivated,
    StartDkg,
)
from ._keys import KeyRecord, KeyState, KeyVersion, VersionState
from ._nonces import NoncePools, package_entry
from ._receiving import ReceivingKeyTable
from ._replay import ReplayWindow
from ._sessions import DkgSessions, build_session
from ._sum_limits import SumUses
from ._upgrades import RulesUpgrades

MAX_KEY_VERSIONS = 64
"""Versions a key may have (each rotation is a DKG on every node and a share in each
keystore, and every version is kept for decryption)."""
FROST_SIGNS_PER_BLOCK = 16
"""FROST signatures one client may have in one block: the nonce pools are shared by every
client and key, and a burst beyond what the nodes refill between blocks would starve the
others (a refused request says ``throttled``; the client library backs off and retries)."""


class CommittedBatch(Protocol):
    """What the state needs of a committed block (``consensus.CommittedBlock`` fits)."""

    @property
    def height(self) -> int: ...

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def payloads(self) -> Sequence[bytes]: ...

    @property
    def proposer(self) -> int | None:
        """The proposer's consensus index (its position in the genesis), if known: FROST
        signer choice prefers nodes that proposed lately."""
        ...


# Policies hold immutable permission sets, shared where equal (one per key for its creator).
_ALL_PERMISSIONS = frozenset(Permission)
_NO_PERMISSIONS: frozenset[Permission] = frozenset()
_ADMIN_ONLY = frozenset({Permission.ADMIN})


class KMSState:
    """The whole replicated state; see the module docstring."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.height = 0
        self.timestamp_ms = 0
        self.keys: dict[str, KeyRecord] = {}
        self.audit = AuditTrail()
        self.sessions = DkgSessions()
        self.replay = ReplayWindow()
        self._grants: dict[bytes, int] = {}
        """Per client: on how many keys its policy grants it anything (absent for none)."""
        self._genesis_members = {
            info.id: dkg.Member(info.signing_key, info.sealing_key) for info in genesis.nodes
        }
        self.receiving_keys = ReceivingKeyTable(genesis)
        """Per node, the key its DKG shares are sealed to in sessions opened now (rules v3: a
        fresh one after each use, so the log's deals cannot be opened once the node erased
        it; v2 seals to the genesis sealing keys for good)."""
        self.rejected_payloads = 0
        self.nonce_pools = NoncePools(
            genesis.chain_id, {info.id: info.signing_key for info in genesis.nodes}
        )
        self._frost_signs: dict[bytes, int] = {}
        """FROST signatures per client in the block being applied (see FROST_SIGNS_PER_BLOCK)."""
        self.rules_version = genesis.rules_version
        """The state rules the log is applied under now (the genesis's, until an upgrade)."""
        self.upgrades = RulesUpgrades(genesis)
        self.deletions = DeletionSchedule()
        self.sum_uses = SumUses()

    # -- applying blocks ----------------------------------------------------------------------
    def apply(self, block: CommittedBatch) -> list[Effect]:
        """Apply one committed block; return the effects, in order.

        Raises:
            ValueError: blocks out of order (the driver must apply heights 1, 2, 3, ...).
        """
        if block.height != self.height + 1:
            raise ValueError(f"expected block {self.height + 1}, got {block.height}")
        self.height = block.height
        self.timestamp_ms = max(self.timestamp_ms, block.timestamp_ms)
        self.replay.prune(self.timestamp_ms)
        proposer = block.proposer
        if type(proposer) is int and 0 <= proposer < len(self.genesis.nodes):
            self.nonce_pools.proposed(self.genesis.nodes[proposer].id, self.height)
        self._frost_signs.clear()
        effects: list[Effect] = self._rules_due()
        effects.extend(self._delete_due_keys())
        for raw in block.payloads:
            try:
                payload = decode_payload(raw)
            except Exception:  # a Byzantine leader chose these bytes: none may stop the node
                # (a committed block is applied again at every restart: raising here would
                # stop every honest node for good). Every node rejects the same payloads.
                self.rejected_payloads += 1
                continue
            if isinstance(payload, ClientPayload) and not self._decodable(payload.request):
                self.rejected_payloads += 1  # what older rules could not decode, as they did
                continue
            if isinstance(payload, ClientPayload):
                effects.extend(self._client(payload.request))
            elif isinstance(payload, DkgPayload):
                effects.extend(self._dkg_message(payload))
            elif isinstance(payload, NoncePayload):
                self.nonce_pools.add(payload)
            elif isinstance(payload, RulesPayload):
                if not self.upgrades.statement(payload, self.height):
                    self.rejected_payloads += 1
            elif isinstance(payload, ReceivingKeyPayload):
                self._receiving_key(payload)
            elif isinstance(payload, TickPayload):
                pass
        effects.extend(self.sessions.heights(self.keys, self.height))
        return effects

    def serves(self, op_name: str) -> bool:
        """Whether the log's current rules know the operation ``op_name``."""
        return (self.rules_version >= 3 or op_name not in RULES_3_OPERATIONS) and (
            self.rules_version >= 4 or op_name not in RULES_4_OPERATIONS
        )

    def _decodable(self, request: Request) -> bool:
        """Whether software of the log's current rules could decode ``request``: what it could
        not, it dropped, and a replay today must drop it too. Under v2 that also holds for
        ``activate_rules``, except one that activates: it can only be committed once every
        node said its software applies the new rules, i.e. no v2-only software is left."""
        if not self.serves(request.op.name):
            return False
        if isinstance(request.op, ActivateRules) and request.op.leave_behind:
            if self.rules_version < 4:
                return False  # v3 and older software could not decode the field
        elif isinstance(request.op, ActivateRules) and self.rules_version < 3:
            return self.activation_refusal(request, request.op) is None
        return True

    # -- receiving keys -----------------------------------------------------------------------
    def _receiving_key(self, payload: ReceivingKeyPayload) -> None:
        """Take a node's next receiving key (v2 software could not decode one: dropped alike)."""
        if self.rules_version < 3 or not self.receiving_keys.take(payload):
            self.rejected_payloads += 1

    def _session_members(self) -> dict[int, dkg.Member]:
        """The committee a session opened now seals shares to (``_watch`` marks the keys
        used once the session is really opened)."""
        if self.rules_version < 3:
            return self._genesis_members
        return self.receiving_keys.members()

    def receiving_keys_in_use(self, node: int) -> set[bytes]:
        """The encoded receiving keys of ``node`` that open sessions seal its shares to (the
        node keeps their private halves until then)."""
        return self.sessions.sealing_keys_in_use(node)

    # -- rules upgrades -----------------------------------------------------------------------
    @property
    def rules_support(self) -> dict[int, tuple[int, tuple[int, ...], int]]:
        """Per node: (seq, versions, height logged) of its latest statement of the rules its
        software applies."""
        return self.upgrades.support

    @property
    def pending_rules(self) -> tuple[int, int, int] | None:
        """An activated upgrade not yet in force: (version, its height, the height it was
        activated at)."""
        return self.upgrades.pending

    def nodes_lacking(self, version: int, since: int = -1) -> list[int]:
        """Committee members that have not said (in the log, after height ``since``) that
        their software applies ``version``."""
        return self.upgrades.lacking(version, since)

    def activation_refusal(self, request: Request, op: ActivateRules) -> Denied | None:
        """Why ``op`` cannot activate now (None: it can). Changes nothing."""
        if request.chain_id != self.genesis.chain_id:
            return Denied("wrong_chain", "the request is for another network (chain id)")
        try:
            request.verify()
        except (CryptoError, MalformedMessage):
            return Denied("invalid_signature", "the request's signature does not verify")
        if not self.is_admin(request.client):
            return Denied("access_denied", "only genesis admins may change the network's rules")
        return self.upgrades.refusal(op, self.rules_version)

    def _activate_rules(self, request: Request, op: ActivateRules) -> list[Effect]:
        refusal = self.activation_refusal(request, op)
        if refusal is not None:
            raise refusal
        height = self.upgrades.activate(op, self.height)
        leaving = f", may leave nodes {list(op.leave_behind)} behind" if op.leave_behind else ""
        self._audit(request, "", "ok", f"v{op.version} at height {height}{leaving}")
        return [self._reply(request, result={"version": op.version, "height": height})]

    def _rules_due(self) -> list[Effect]:
        """Put a pending upgrade in force at its height, before the block's payloads."""
        due = self.upgrades.due(self.height)
        if due is None:
            return []
        version, lacking, left_behind = due
        if lacking:
            # A node did not confirm in time (down, slow, or taken back to older software,
            # which cannot say so): switching without it could split the committee.
            self._system_audit(
                "rules_activated",
                "",
                "rules_unsupported",
                f"v{version}: nodes {lacking} did not confirm",
            )
            return []
        if self.rules_version < 3 <= version:
            # Every deal so far is sealed to the genesis keys: count them as used, so each
            # node posts a fresh key and erases its genesis one once no session needs it.
            self.receiving_keys.mark_all_used()
        self.rules_version = version
        left = f" without nodes {left_behind} (left behind)" if left_behind else ""
        self._system_audit("rules_activated", "", "ok", f"v{version}{left}")
        return [RulesActivated(version)]

    # -- key deletion -------------------------------------------------------------------------
    @property
    def next_deletion_ms(self) -> int | None:
        """When the next scheduled key deletion comes due (log time), if any: a quiet log
        needs a block after it (nodes post a tick) for the deletion to happen."""
        return self.deletions.next_due(self.keys)

    def _delete_due_keys(self) -> list[Effect]:
        """Delete every key whose scheduled deletion is due by this block's time."""
        effects: list[Effect] = []
        for record in self.deletions.pop_due(self.keys, self.timestamp_ms):
            # Its grants stay (its former users may still describe it) but allow nothing now:
            # a client known only through them meets the stranger budget again. (The policy of
            # a deleted key is frozen, so the count is not touched for it again.)
            for client in record.policy:
                self._drop_grant_count(client)
            self.sum_uses.forget_key(record.key_id)
            self._system_audit("key_deleted", record.key_id, "ok")
            effects.append(KeyDeleted(record.key_id))
        return effects

    # -- client requests ----------------------------------------------------------------------
    def _client(self, request: Request) -> list[Effect]:
        op = request.op
        key_id = getattr(op, "key_id", "")
        try:
            self._admit(request)
        except Denied as denied:
            if denied.code == "replay":
                # Served once already: record the attempt, answer nothing new.
                self._audit(request, key_id, "replay")
                return []
            self._audit(request, key_id, denied.code)
            return [self._reply(request, error=denied.code, message=denied.message)]
        try:
            if isinstance(op, CreateKey):
                return self._create_key(request, op)
            if isinstance(op, DescribeKey):
                record = self._key(op.key_id)
                self._require(request.client, record, None)
                self._audit(request, op.key_id, "ok")
                return [self._reply(request, result=record.to_json())]
            if isinstance(op, ListKeys):
                visible = sorted(
                    k.key_id for k in self.keys.values() if self._permissions(request.client, k)
                )
                self._audit(request, "", "ok")
                return [self._reply(request, result={"keys": visible})]
            if isinstance(op, Encrypt):
                return self._encrypt(request, op)
            if isinstance(op, Decrypt):
                return self._decrypt(request, op)
            if isinstance(op, DecryptSum):
                return self._decrypt_sum(request, op)
            if isinstance(op, Sign):
                return self._sign(request, op)
            if isinstance(op, SetPolicy):
                return admin.set_policy(self, request, op)
            if isinstance(op, RotateKey):
                return self._rotate_key(request, op)
            if isinstance(op, RefreshKey):
                return self._refresh_key(request, op)
            if isinstance(op, (DisableKey, EnableKey)):
                return admin.set_key_state(self, request, op)
            if isinstance(op, ScheduleKeyDeletion):
                return admin.schedule_deletion(self, request, op)
            if isinstance(op, CancelKeyDeletion):
                return admin.cancel_deletion(self, request, op)
            if isinstance(op, ActivateRules):
                return self._activate_rules(request, op)
            if isinstance(op, SetSumLimit):
                return admin.set_sum_limit(self, request, op)
            if isinstance(op, GetPolicy):
                record = self._key(op.key_id)
                self._require(request.client, record, Permission.ADMIN)
                self._audit(request, op.key_id, "ok")
                return [self._reply(request, result=record.policy_json())]
        except Denied as denied:
            self._audit(request, denied.key_id or key_id, denied.code)
            return [self._reply(request, error=denied.code, message=denied.message)]
        raise AssertionError(f"unhandled operation {type(op).__name__}")  # decode forbids it

    def _admit(self, request: Request) -> None:
        if request.chain_id != self.genesis.chain_id:
            raise Denied("wrong_chain", "the request is for another network (chain id)")
        try:
            request.verify()
        except (CryptoError, MalformedMessage) as exc:
            raise Denied("invalid_signature", "the request's signature does not verify") from exc
        self.replay.admit(request.client, request.nonce, request.request_id, self.timestamp_ms)

    @property
    def replay_window_size(self) -> int:
        """Requests remembered for replay protection (those of the last NONCE_WINDOW_MS)."""
        return len(self.replay)

    # -- policy -------------------------------------------------------------------------------
    def is_admin(self, client: bytes) -> bool:
        return client in self.genesis.admins

    def knows(self, client: bytes) -> bool:
        """Whether ``client`` is a genesis admin or granted anything on a key not deleted:
        nodes let requests from anyone else reach the log only at a small rate (the node)."""
        return client in self._grants or self.is_admin(client)

    def _grant(self, record: KeyRecord, client: bytes, perms: frozenset[Permission]) -> None:
        """Set ``client``'s permissions on ``record`` (none removes it), keeping the index of
        clients with any grant in step."""
        had = client in record.policy
        if perms:
            record.policy[client] = perms
            if not had:
                self._grants[client] = self._grants.get(client, 0) + 1
        elif had:
            del record.policy[client]
            self._drop_grant_count(client)

    def _drop_grant_count(self, client: bytes) -> None:
        """One key fewer grants ``client`` anything (none left: it is no longer known)."""
        left = self._grants[client] - 1
        if left:
            self._grants[client] = left
        else:
            del self._grants[client]

    def _permissions(self, client: bytes, record: KeyRecord) -> frozenset[Permission]:
        if self.is_admin(client):
            return _ALL_PERMISSIONS
        return record.policy.get(client, _NO_PERMISSIONS)

    def _require(self, client: bytes, record: KeyRecord, permission: Permission | None) -> None:
        perms = self._permissions(client, record)
        allowed = (
            bool(perms)
            if permission is None
            else (permission in perms or Permission.ADMIN in perms)
        )
        if not allowed:
            what = permission.value if permission else "any access"
            raise Denied("access_denied", f"the client has no {what} permission on {record.key_id}")

    def _key(self, key_id: str) -> KeyRecord:
        record = self.keys.get(key_id)
        if record is None:
            raise Denied("key_not_found", f"no key {key_id}")
        return record

    # -- operations ---------------------------------------------------------------------------
    def _create_key(self, request: Request, op: CreateKey) -> list[Effect]:
        if not self.is_admin(request.client):
            raise Denied("access_denied", "only admins may create keys")
        key_id = "key-" + request.request_id[:8].hex()
        if key_id in self.keys:  # a 64-bit collision between two admins' requests
            raise Denied("key_exists", f"key {key_id} exists")
        version = KeyVersion(1, 0, VersionState.PENDING, self.height)
        record = KeyRecord(
            key_id=key_id,
            kind=op.kind,
            description=op.description,
            creator=request.client,
            created_height=self.height,
            created_ms=self.timestamp_ms,
            state=KeyState.CREATING,
            versions=[version],
        )
        self._grant(record, request.client, _ADMIN_ONLY)
        self.keys[key_id] = record
        session = self._open_session(record, version)
        self._audit(request, key_id, "ok")
        return [
            StartDkg(session),
            self._reply(request, result={"key_id": key_id, "state": record.state.value}),
        ]

    def _rotate_key(self, request: Request, op: RotateKey) -> list[Effect]:
        record = self._key(op.key_id)
        self._require(request.client, record, Permission.ADMIN)
        if record.state is not KeyState.ENABLED:
            raise Denied("key_unavailable", f"key {record.key_id} is {record.state.value}")
        if any(v.state is VersionState.PENDING for v in record.versions):
            raise Denied("rotation_in_progress", f"a new version of {record.key_id} is pending")
        if len(record.versions) >= MAX_KEY_VERSIONS:
            raise Denied("too_many_versions", f"{record.key_id} has {MAX_KEY_VERSIONS} versions")
        version = KeyVersion(record.versions[-1].version + 1, 0, VersionState.PENDING, self.height)
        record.versions.append(version)
        session = self._open_session(record, version)
        self._audit(request, op.key_id, "ok")
        return [
            StartDkg(session),
            self._reply(
                request,
                result={"key_id": op.key_id, "version": version.version, "state": "pending"},
            ),
        ]

    def _refresh_key(self, request: Request, op: RefreshKey) -> list[Effect]:
        record = self._key(op.key_id)
        self._require(request.client, record, Permission.ADMIN)
        if record.state not in (KeyState.ENABLED, KeyState.DISABLED):
            raise Denied("key_unavailable", f"key {record.key_id} is {record.state.value}")
        if any(v.state is VersionState.PENDING for v in record.versions):
            raise Denied("rotation_in_progress", f"a new version of {record.key_id} is pending")
        if any(v.refreshing_to is not None for v in record.versions):
            raise Denied("refresh_in_progress", f"a refresh of {record.key_id} is running")
        active = [v for v in record.versions if v.state is VersionState.ACTIVE]
        try:
            # Every session is built before any is opened: a version that cannot be refreshed
            # leaves the key as it was, and committed input never raises out of ``apply``.
            opened = [(v, self._session(record, v, refresh=True)) for v in active]
        except (CryptoError, ValueError) as exc:
            raise Denied(
                "refresh_unavailable", f"{record.key_id} cannot be refreshed: {exc}"
            ) from exc
        effects: list[Effect] = []
        epochs: dict[str, int] = {}
        for version, (session, observer) in opened:
            self._watch(record, version, session, observer)
            version.refreshing_to = session.epoch
            epochs[str(version.version)] = session.epoch
            effects.append(StartDkg(session))
        self._audit(request, op.key_id, "ok")
        effects.append(self._reply(request, result={"key_id": op.key_id, "epochs": epochs}))
        return effects

    def _open_session(self, record: KeyRecord, version: KeyVersion) -> dkg.Session[Any]:
        """Open the DKG of a new version."""
        session, observer = self._session(record, version, refresh=False)
        self._watch(record, version, session, observer)
        return session

    def _session(
        self, record: KeyRecord, version: KeyVersion, *, refresh: bool
    ) -> tuple[dkg.Session[Any], dkg.Participant[Any]]:
        """A session opened now for ``version`` (see ``build_session``). Changes nothing."""
        return build_session(
            record, version, self._session_members(), self.genesis.t, self.height, refresh=refresh
        )

    def _watch(
        self,
        record: KeyRecord,
        version: KeyVersion,
        session: dkg.Session[Any],
        observer: dkg.Participant[Any],
    ) -> None:
        if self.rules_version >= 3:
            self.receiving_keys.mark_used(session.committee)  # the nodes move on to fresh keys
        self.sessions.watch(record, version, session, observer)

    def _usable_version(self, record: KeyRecord, number: int | None) -> KeyVersion:
        if record.state is not KeyState.ENABLED:
            raise Denied("key_unavailable", f"key {record.key_id} is {record.state.value}")
        version = record.current if number is None else record.version(number)
        if version is None or version.state is not VersionState.ACTIVE:
            raise Denied("key_unavailable", f"key {record.key_id} has no such active version")
        return version

    def _encrypt(self, request: Request, op: Encrypt) -> list[Effect]:
        record = self._key(op.key_id)
        self._require(request.client, record, Permission.ENCRYPT)
        if record.kind not in (KeyKind.ENCRYPT, KeyKind.HOMOMORPHIC):
            raise Denied("wrong_key_kind", f"key {record.key_id} is a {record.kind.value} key")
        version = self._usable_version(record, None)
        self._audit(request, op.key_id, "ok")
        assert version.public_key is not None
        return [
            self._reply(
                request,
                result={
                    "key_id": record.key_id,
                    "kind": record.kind.value,
                    "version": version.version,
                    "public_key": version.public_key,
                },
            )
        ]

    def _decrypt(self, request: Request, op: Decrypt) -> list[Effect]:
        try:
            parsed = tdh2.parse(op.ciphertext)
        except InvalidCiphertext as exc:
            raise Denied("invalid_ciphertext", "invalid ciphertext") from exc
        try:
            return self._decrypt_parsed(request, op, parsed)
        except Denied as denied:
            denied.key_id = denied.key_id or parsed.key_id
            raise

    def _decrypt_parsed(
        self, request: Request, op: Decrypt, parsed: tdh2.Ciphertext[bytes]
    ) -> list[Effect]:
        record, version = self._partial_request(
            request, parsed.key_id, Permission.DECRYPT, KeyKind.ENCRYPT, parsed.key_version
        )
        assert version.public_key is not None
        try:
            # Every node checks the ciphertext's proof itself before any partial exists:
            # this is what makes TDH2 chosen-ciphertext secure, and the audit says so.
            valid = tdh2.check(version.public_key, parsed, op.context)
        except InvalidCiphertext as exc:
            raise Denied("invalid_ciphertext", "invalid ciphertext") from exc
        self._audit(request, record.key_id, "ok")
        return [ComputePartial(*self._work(request, record, version), ciphertext=valid)]

    def _decrypt_sum(self, request: Request, op: DecryptSum) -> list[Effect]:
        try:
            parsed = SumCiphertext.decode(op.ciphertext)
        except InvalidCiphertext as exc:
            raise Denied("invalid_ciphertext", "invalid ciphertext") from exc
        try:
            # A homomorphic key only: its partials x_i * a for a chosen a would be TDH2
            # decryption shares if the key were also an encryption key (and vice versa).
            record, version = self._partial_request(
                request, parsed.key_id, Permission.DECRYPT, KeyKind.HOMOMORPHIC, parsed.key_version
            )
        except Denied as denied:
            denied.key_id = denied.key_id or parsed.key_id
            raise
        if record.sum_limit is not None:  # (set only under rules v4)
            wait_ms = self.sum_uses.take(
                record.key_id, request.client, self.timestamp_ms, record.sum_limit
            )
            if wait_ms:
                n, window_s = record.sum_limit
                raise Denied(
                    "sum_limit",
                    f"at most {n} sum(s) per {window_s} s per client on {record.key_id}: the next "
                    f"in {-(-wait_ms // 1000)} s",
                    record.key_id,
                )
        self._audit(request, record.key_id, "ok")
        return [ComputeSumPartial(*self._work(request, record, version), ciphertext=parsed)]

    def _sign(self, request: Request, op: Sign) -> list[Effect]:
        kind = KeyKind.SIGN_BLS
        if (record := self.keys.get(op.key_id)) is not None and record.kind is KeyKind.SIGN_ED25519:
            kind = KeyKind.SIGN_ED25519
        record, version = self._partial_request(request, op.key_id, Permission.SIGN, kind, None)
        if kind is KeyKind.SIGN_ED25519:
            return self._frost_sign(request, op, record, version)
        self._audit(request, record.key_id, "ok")
        return [ComputeSignaturePartial(*self._work(request, record, version), message=op.message)]

    def _frost_sign(
        self, request: Request, op: Sign, record: KeyRecord, version: KeyVersion
    ) -> list[Effect]:
        """FROST's coordinator: choose t signers with commitments in the log, spend one each."""
        t = self.genesis.t
        if self._frost_signs.get(request.client, 0) >= FROST_SIGNS_PER_BLOCK:
            raise Denied(
                "throttled",
                f"at most {FROST_SIGNS_PER_BLOCK} FROST signatures per client per block; "
                "retry shortly",
            )
        signers = self.nonce_pools.choose(
            request.request_id,
            version.verification_keys,
            op.avoid,
            t,
            self.height,
            avoid_first=self.rules_version >= 3,
        )
        if signers is None:
            raise Denied(
                "signers_unavailable",
                f"fewer than {t} nodes have FROST nonce commitments in the log; retry shortly",
            )
        spent = {i: self.nonce_pools.spend(i) for i in signers}
        self._frost_signs[request.client] = self._frost_signs.get(request.client, 0) + 1
        # Which nodes' nonces the log spent (from rules v3: a v2 log keeps its audit hashes).
        detail = "signers " + ",".join(map(str, signers)) if self.rules_version >= 3 else ""
        self._audit(request, record.key_id, "ok", detail)
        assert version.public_key is not None  # an active version has one
        return [
            ComputeFrostShare(
                *self._work(request, record, version),
                message=op.message,
                public_key=version.public_key,
                commitments=tuple(package_entry(i, spent[i][1]) for i in signers),
                nonce_refs={i: ref for i, (ref, _) in spent.items()},
            )
        ]

    def _partial_request(
        self,
        request: Request,
        key_id: str,
        permission: Permission,
        kind: KeyKind,
        number: int | None,
    ) -> tuple[KeyRecord, KeyVersion]:
        """The checks of every request answered with partials: the key exists, the client
        holds ``permission`` on it, it is of ``kind`` (a key serves one scheme), the request
        carries a reply key, and version ``number`` (None: the current one) is usable."""
        record = self._key(key_id)
        self._require(request.client, record, permission)
        if record.kind is not kind:
            raise Denied("wrong_key_kind", f"key {record.key_id} is a {record.kind.value} key")
        if request.reply_key is None:
            raise Denied(
                "missing_reply_key", f"{request.op.name} needs a reply key to seal partials to"
            )
        return record, self._usable_version(record, number)

    def _work(
        self, request: Request, record: KeyRecord, version: KeyVersion
    ) -> tuple[bytes, bytes, int, str, int, int, bytes, dict[int, bytes]]:
        """The ``PartialWork`` fields, in order, for ``request`` on ``version``."""
        assert request.reply_key is not None  # checked by _partial_request
        return (
            request.request_id,
            request.client,
            self.height,
            record.key_id,
            version.version,
            version.epoch,
            request.reply_key,
            version.verification_keys,  # replaced, never changed in place, by a refresh
        )

    # -- DKG ----------------------------------------------------------------------------------
    def _dkg_message(self, payload: DkgPayload) -> list[Effect]:
        effects = self.sessions.message(
            self.keys, self.height, payload.key_id, payload.version, payload.epoch, payload.message
        )
        if effects is None:
            self.rejected_payloads += 1
            return []
        return effects

    # -- helpers ------------------------------------------------------------------------------
    def _reply(
        self,
        request: Request,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        message: str = "",
    ) -> Reply:
        return Reply(
            request.request_id, request.client, self.height, request.op.name, result, error, message
        )

    def _system_audit(self, op: str, key_id: str, outcome: str, detail: str = "") -> None:
        """An audit entry for what the log did by itself (no request: a deletion coming due,
        new rules taking effect)."""
        self.audit.append(
            height=self.height,
            timestamp_ms=self.timestamp_ms,
            request_id=b"",
            client=b"",
            op=op,
            key_id=key_id,
            outcome=outcome,
            detail=detail,
        )

    def _audit(self, request: Request, key_id: str, outcome: str, detail: str = "") -> None:
        self.audit.append(
            height=self.height,
            timestamp_ms=self.timestamp_ms,
            request_id=request.request_id,
            client=request.client,
            op=request.op.name,
            key_id=key_id,
            outcome=outcome,
            detail=detail,
        )
