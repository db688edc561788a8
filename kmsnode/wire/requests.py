"""Client requests: the operations, and the signed envelope every node checks on its own.

A request is ``[version, chain_id, client, nonce, op, reply_key, signature]``: ``client`` is the
caller's raw Ed25519 public key (its identity), ``nonce`` makes the request unique (a node
serves a (client, nonce) pair at most once), ``reply_key`` is an ephemeral hybrid sealing key
that partial results are sealed to, and ``signature`` covers everything else under a domain
tag and the chain id, so a request cannot be replayed on another network.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto.encoding import transcript
from ..crypto.sealing import PUBLIC_KEY_SIZE as SEALING_KEY_SIZE
from ..crypto.signatures import verify_ed25519
from ..errors import MalformedMessage
from ._codec import Reader, pack, unpack

VERSION = 1
_SIGN_DST = b"kmsnode/request/v1"
MAX_KEY_ID = 128
MAX_CIPHERTEXT = 1024 * 1024
MAX_DESCRIPTION = 256
MAX_SIGN_MESSAGE = 4096
"""Bytes a message to sign may take (as AWS KMS's raw-message limit; sign a digest if more)."""
MAX_AVOID = 64
"""Node ids a signing request may ask the log to pass over."""
MAX_SUM_CIPHERTEXT = 256
"""Bytes a sum ciphertext may take (``kmsnode.wire.sums``; a key id of MAX_KEY_ID fits)."""
MAX_DELETION_WAIT_S = 30 * 24 * 3600
"""The longest waiting period a key deletion may be scheduled with (as AWS KMS: 30 days)."""
DEFAULT_DELETION_WAIT_S = 30 * 24 * 3600
"""The waiting period a scheduled deletion gets when the caller names none (AWS KMS's default)."""


class KeyKind(enum.Enum):
    """What a key is for; fixed at creation (a key never serves two schemes)."""

    ENCRYPT = "encrypt"
    """TDH2 threshold decryption over ristretto255."""
    HOMOMORPHIC = "homomorphic"
    """Exponential ElGamal sums over ristretto255."""
    SIGN_ED25519 = "sign-ed25519"
    """FROST(Ed25519, SHA-512) threshold signatures."""
    SIGN_BLS = "sign-bls"
    """Threshold BLS12-381 signatures."""


class Permission(enum.Enum):
    """What a policy may grant a client on a key."""

    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    SIGN = "sign"
    DESCRIBE = "describe"
    ADMIN = "admin"


def is_key_id(value: str) -> bool:
    """Whether ``value`` can be a key id: 1 to MAX_KEY_ID letters, digits, '-', '_', '.'."""
    return 0 < len(value) <= MAX_KEY_ID and all(c.isalnum() or c in "-_." for c in value)


def _key_id(r: Reader, i: int) -> str:
    v = r.text(i, "key_id", MAX_KEY_ID)
    if not is_key_id(v):
        raise MalformedMessage("key_id may contain only letters, digits, '-', '_' and '.'")
    return v


@dataclass(frozen=True)
class CreateKey:
    """Open a DKG for a new key of ``kind``; the key id is derived from the request id."""

    kind: KeyKind
    description: str = ""
    name: ClassVar[str] = "create_key"

    def fields(self) -> list[Any]:
        return [self.kind.value, self.description]

    @classmethod
    def parse(cls, r: Reader) -> CreateKey:
        kind = r.text(1, "kind", 32)
        try:
            k = KeyKind(kind)
        except ValueError as exc:
            raise MalformedMessage(f"create_key.kind: unknown key kind {kind!r}") from exc
        return cls(k, r.text(2, "description", MAX_DESCRIPTION, empty=True))


@dataclass(frozen=True)
class _OnKey:
    """An operation whose only field is the key it acts on."""

    key_id: str

    def fields(self) -> list[Any]:
        return [self.key_id]

    @classmethod
    def parse(cls, r: Reader) -> Self:
        return cls(_key_id(r, 1))


@dataclass(frozen=True)
class DescribeKey(_OnKey):
    """Metadata of one key: kind, state, versions and their public keys."""

    name: ClassVar[str] = "describe_key"


@dataclass(frozen=True)
class ListKeys:
    """The ids of the keys the caller may describe."""

    name: ClassVar[str] = "list_keys"

    def fields(self) -> list[Any]:
        return []

    @classmethod
    def parse(cls, r: Reader) -> ListKeys:
        return cls()


@dataclass(frozen=True)
class Encrypt(_OnKey):
    """Authorise an encryption: returns the key's current version and public key, signed."""

    name: ClassVar[str] = "encrypt"


@dataclass(frozen=True)
class Decrypt:
    """Ask every node for its partial decryption of ``ciphertext`` under ``context``."""

    ciphertext: bytes
    context: dict[str, str] = field(default_factory=dict)
    name: ClassVar[str] = "decrypt"

    def fields(self) -> list[Any]:
        return [self.ciphertext, self.context]

    @classmethod
    def parse(cls, r: Reader) -> Decrypt:
        return cls(r.blob(1, "ciphertext", max_len=MAX_CIPHERTEXT), r.str_map(2, "context"))


@dataclass(frozen=True)
class DecryptSum:
    """Ask every node for its partial decryption of an encrypted integer (or sum of them)
    under a homomorphic key: ``ciphertext`` is a ``kmsnode.wire.sums.SumCiphertext``."""

    ciphertext: bytes
    name: ClassVar[str] = "decrypt_sum"

    def fields(self) -> list[Any]:
        return [self.ciphertext]

    @classmethod
    def parse(cls, r: Reader) -> DecryptSum:
        return cls(r.blob(1, "ciphertext", max_len=MAX_SUM_CIPHERTEXT))


@dataclass(frozen=True)
class Sign:
    """Ask the nodes for partial signatures of ``message`` under a signing key.

    ``avoid`` (FROST keys only) names nodes the client saw fail to sign lately: the log picks
    the signers among the others while at least ``t`` of them can sign.
    """

    key_id: str
    message: bytes
    avoid: tuple[int, ...] = ()
    name: ClassVar[str] = "sign"

    def __post_init__(self) -> None:
        object.__setattr__(self, "avoid", tuple(sorted(set(self.avoid))))

    def fields(self) -> list[Any]:
        return [self.key_id, self.message, list(self.avoid)]

    @classmethod
    def parse(cls, r: Reader) -> Sign:
        avoid = r.raw(3)
        if (
            not isinstance(avoid, list)
            or len(avoid) > MAX_AVOID
            or not all(type(i) is int and 1 <= i <= 2**16 for i in avoid)
            or avoid != sorted(set(avoid))
        ):
            raise MalformedMessage(
                f"sign.avoid: expected at most {MAX_AVOID} distinct node ids, sorted"
            )
        return cls(_key_id(r, 1), r.blob(2, "message", max_len=MAX_SIGN_MESSAGE), tuple(avoid))


@dataclass(frozen=True)
class SetPolicy:
    """Grant ``client`` exactly ``permissions`` on ``key_id`` (an empty list revokes)."""

    key_id: str
    client: bytes
    permissions: tuple[Permission, ...]
    name: ClassVar[str] = "set_policy"

    def __post_init__(self) -> None:
        ordered = tuple(sorted(set(self.permissions), key=lambda p: p.value))
        object.__setattr__(self, "permissions", ordered)

    def fields(self) -> list[Any]:
        return [self.key_id, self.client, sorted(p.value for p in self.permissions)]

    @classmethod
    def parse(cls, r: Reader) -> SetPolicy:
        names = r.str_list(3, "permissions", 8)
        if names != sorted(set(names)):
            raise MalformedMessage("set_policy.permissions must be sorted and distinct")
        try:
            perms = tuple(Permission(p) for p in names)
        except ValueError as exc:
            raise MalformedMessage(
                f"set_policy.permissions: unknown permission in {names}"
            ) from exc
        return cls(_key_id(r, 1), r.blob(2, "client", 32), perms)


@dataclass(frozen=True)
class GetPolicy(_OnKey):
    """Who may do what on ``key_id`` (the key's admins only, as its grants are theirs)."""

    name: ClassVar[str] = "get_policy"


@dataclass(frozen=True)
class DisableKey(_OnKey):
    """Stop every use of ``key_id`` (encrypt, decrypt) until it is enabled again."""

    name: ClassVar[str] = "disable_key"


@dataclass(frozen=True)
class EnableKey(_OnKey):
    """Allow a disabled key's use again."""

    name: ClassVar[str] = "enable_key"


@dataclass(frozen=True)
class RotateKey(_OnKey):
    """A new version of ``key_id`` by a fresh DKG; once active, new encryptions use it and
    older versions still decrypt."""

    name: ClassVar[str] = "rotate_key"


@dataclass(frozen=True)
class RefreshKey(_OnKey):
    """New shares for every active version of ``key_id`` (proactive refresh, run as a reshare
    to the same committee): the public key and every ciphertext stay valid while the shares
    held before are useless from then on; each node erases its old share once its new one is
    final, and a node that had lost its share gets a new one."""

    name: ClassVar[str] = "refresh_key"


@dataclass(frozen=True)
class ScheduleKeyDeletion:
    """Destroy ``key_id`` after ``wait_seconds`` of log time: it is unusable at once, and when
    the wait is over every node erases its shares of every version (crypto-shredding: what
    was encrypted under the key can never be decrypted again). ``cancel_key_deletion`` undoes
    it until then. The genesis sets the shortest wait a network accepts."""

    key_id: str
    wait_seconds: int = DEFAULT_DELETION_WAIT_S
    name: ClassVar[str] = "schedule_key_deletion"

    def fields(self) -> list[Any]:
        return [self.key_id, self.wait_seconds]

    @classmethod
    def parse(cls, r: Reader) -> ScheduleKeyDeletion:
        return cls(_key_id(r, 1), r.integer(2, "wait_seconds", 0, MAX_DELETION_WAIT_S))


@dataclass(frozen=True)
class CancelKeyDeletion(_OnKey):
    """Stop a scheduled deletion; the key comes back disabled (``enable_key`` to use it)."""

    name: ClassVar[str] = "cancel_key_deletion"


MAX_SUM_LIMIT = 1000
"""The most ``decrypt_sum`` requests a sum limit may allow each client per window."""
MAX_SUM_WINDOW_S = 30 * 24 * 3600
"""The longest window a sum limit may count over (30 days)."""


@dataclass(frozen=True)
class SetSumLimit:
    """Allow each client at most ``max_sums`` served ``decrypt_sum`` requests on the
    homomorphic key ``key_id`` per ``window_s`` seconds of log time (the key's admins; rules
    v4). Whoever may decrypt a sum may decrypt a single contribution too: the limit bounds
    how many decryptions such a client has, e.g. one tally a day (not how many values: a
    sum of contributions scaled by 1, 2, 4, ... reveals several small ones at once).
    ``max_sums`` 0 (with ``window_s`` 0) lifts the limit."""

    key_id: str
    max_sums: int
    window_s: int
    name: ClassVar[str] = "set_sum_limit"

    def __post_init__(self) -> None:
        lifted = self.max_sums == 0 and self.window_s == 0
        if not lifted and not (
            0 < self.max_sums <= MAX_SUM_LIMIT and 0 < self.window_s <= MAX_SUM_WINDOW_S
        ):
            raise ValueError(
                f"a sum limit is 1 to {MAX_SUM_LIMIT} sums per 1 to {MAX_SUM_WINDOW_S} s, or 0 "
                "and 0 to lift it"
            )

    def fields(self) -> list[Any]:
        return [self.key_id, self.max_sums, self.window_s]

    @classmethod
    def parse(cls, r: Reader) -> SetSumLimit:
        key_id = _key_id(r, 1)
        max_sums = r.integer(2, "max_sums", 0, MAX_SUM_LIMIT)
        window_s = r.integer(3, "window_s", 0, MAX_SUM_WINDOW_S)
        if (max_sums == 0) != (window_s == 0):
            raise MalformedMessage(
                "set_sum_limit: max_sums and window_s are both positive (a limit) or both 0 "
                "(no limit)"
            )
        return cls(key_id, max_sums, window_s)


MAX_ACTIVATION_DELAY = 1_000_000
"""Blocks ahead an activation of new state rules may be scheduled."""


@dataclass(frozen=True)
class ActivateRules:
    """Move the network's log to state rules ``version`` at ``after_blocks`` blocks after the
    one that commits this (genesis admins only; every node must first have said in the log
    that its software applies ``version``). Blocks before that height keep their rules, so a
    replay from the start derives the same state.

    ``leave_behind`` (rules v4 and later; at most f node ids) names nodes the upgrade may go
    ahead without: down, or not upgraded yet. A node among them whose software cannot apply
    the new rules stops at their height (it never applies them wrongly); the others go on.
    """

    version: int
    after_blocks: int
    leave_behind: tuple[int, ...] = ()
    name: ClassVar[str] = "activate_rules"

    def __post_init__(self) -> None:
        object.__setattr__(self, "leave_behind", tuple(sorted(set(self.leave_behind))))

    def fields(self) -> list[Any]:
        # Without nodes to leave behind, the bytes of v3 software (its logs replay alike).
        if not self.leave_behind:
            return [self.version, self.after_blocks]
        return [self.version, self.after_blocks, list(self.leave_behind)]

    @classmethod
    def parse(cls, r: Reader) -> ActivateRules:
        leave: tuple[int, ...] = ()
        if len(r) == 4:
            ids = r.raw(3)
            if (
                not isinstance(ids, list)
                or not 0 < len(ids) <= MAX_AVOID
                or not all(type(i) is int and 1 <= i <= 2**16 for i in ids)
                or ids != sorted(set(ids))
            ):
                raise MalformedMessage(
                    f"activate_rules.leave_behind: expected 1 to {MAX_AVOID} distinct node "
                    "ids, sorted"
                )
            leave = tuple(ids)
        return cls(
            r.integer(1, "version", 1, 2**16),
            r.integer(2, "after_blocks", 1, MAX_ACTIVATION_DELAY),
            leave,
        )


Operation = (
    CreateKey
    | DescribeKey
    | ListKeys
    | Encrypt
    | Decrypt
    | DecryptSum
    | Sign
    | SetPolicy
    | GetPolicy
    | DisableKey
    | EnableKey
    | RotateKey
    | RefreshKey
    | ScheduleKeyDeletion
    | CancelKeyDeletion
    | ActivateRules
    | SetSumLimit
)
OPERATIONS: dict[str, tuple[type[Any], int | tuple[int, ...]]] = {
    CreateKey.name: (CreateKey, 3),
    DescribeKey.name: (DescribeKey, 2),
    ListKeys.name: (ListKeys, 1),
    Encrypt.name: (Encrypt, 2),
    Decrypt.name: (Decrypt, 3),
    DecryptSum.name: (DecryptSum, 2),
    Sign.name: (Sign, 4),
    SetPolicy.name: (SetPolicy, 4),
    GetPolicy.name: (GetPolicy, 2),
    DisableKey.name: (DisableKey, 2),
    EnableKey.name: (EnableKey, 2),
    RotateKey.name: (RotateKey, 2),
    RefreshKey.name: (RefreshKey, 2),
    ScheduleKeyDeletion.name: (ScheduleKeyDeletion, 3),
    CancelKeyDeletion.name: (CancelKeyDeletion, 2),
    ActivateRules.name: (ActivateRules, (3, 4)),
    SetSumLimit.name: (SetSumLimit, 4),
}
RULES_3_OPERATIONS = frozenset({ScheduleKeyDeletion.name, CancelKeyDeletion.name})
"""Operations a network's log serves only under state rules v3 and later (under v2 the log
dropped them as undecodable, and a v2 log replayed today must still do so)."""
RULES_4_OPERATIONS = frozenset({SetSumLimit.name})
"""Operations served only under state rules v4 and later (as ``RULES_3_OPERATIONS``)."""


def _encode_op(op: Operation) -> list[Any]:
    return [op.name, *op.fields()]


def _decode_op(value: Any) -> Operation:
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise MalformedMessage("request.op: expected [name, ...fields]")
    entry = OPERATIONS.get(value[0])
    if entry is None:
        raise MalformedMessage(f"request.op: unknown operation {value[0][:32]!r}")
    cls, length = entry
    if isinstance(length, tuple):  # an optional trailing field
        length = len(value) if len(value) in length else length[0]
    return cls.parse(Reader(value, value[0], length))  # type: ignore[no-any-return]


_VERIFIED: dict[bytes, None] = {}
"""Requests whose signature verified (insertion-ordered; the oldest is evicted first)."""
_VERIFIED_MAX = 4_096


@dataclass(frozen=True)
class Request:
    """A client's signed request (see the module docstring for the layout)."""

    chain_id: str
    client: bytes
    nonce: int
    op: Operation
    reply_key: bytes | None
    signature: bytes = b""

    def signing_bytes(self) -> bytes:
        """What the client signs: everything but the signature, under a domain tag."""
        return self._signing_bytes

    @cached_property
    def _signing_bytes(self) -> bytes:
        body = pack(
            [VERSION, self.chain_id, self.client, self.nonce, _encode_op(self.op), self.reply_key]
        )
        return transcript(_SIGN_DST, self.chain_id.encode(), body)

    @cached_property
    def request_id(self) -> bytes:
        """32 bytes naming this request (the hash of what was signed)."""
        return hashlib.sha256(self._signing_bytes).digest()

    def encode(self) -> bytes:
        """Canonical bytes, signature included."""
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return pack(
            [
                VERSION,
                self.chain_id,
                self.client,
                self.nonce,
                _encode_op(self.op),
                self.reply_key,
                self.signature,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Request:
        """Strictly decode a request (the signature is checked by ``verify``).

        Raises:
            MalformedMessage: anything that is not a well-formed request.
        """
        # Canonical bytes are checked once, below, by re-encoding the decoded request.
        r = Reader(unpack(data, canonical=False), "request", 7)
        if r.integer(0, "version") != VERSION:
            raise MalformedMessage(f"request.version: only version {VERSION} is supported")
        reply_key = r.optional_blob(5, "reply_key", SEALING_KEY_SIZE)
        request = cls(
            chain_id=r.text(1, "chain_id", 64),
            client=r.blob(2, "client", 32),
            nonce=r.integer(3, "nonce"),
            op=_decode_op(r.raw(4)),
            reply_key=reply_key,
            signature=r.blob(6, "signature", 64),
        )
        if request.encode() != bytes(data):
            raise MalformedMessage("request is not canonically encoded")
        return request

    def signed(self, key: Ed25519PrivateKey) -> Request:
        """This request signed by ``key`` (whose public key must be ``client``)."""
        if key.public_key().public_bytes_raw() != self.client:
            raise ValueError("the signing key does not match request.client")
        return Request(
            self.chain_id,
            self.client,
            self.nonce,
            self.op,
            self.reply_key,
            key.sign(self.signing_bytes()),
        )

    def verify(self) -> None:
        """Check the client's signature.

        The reply key's length is checked by ``decode``; whether it is a usable key (not of
        small order, accepted by ML-KEM) is checked where it is used, when a node seals to it:
        doing it here would cost a key exchange per request on every node.

        Raises:
            InvalidSignature: the signature does not verify.
            MalformedMessage: the client key is not an Ed25519 public key.
        """
        if len(self.client) != 32:
            raise MalformedMessage("request.client is not an Ed25519 public key")
        # A node checks each request twice (on arrival, and when the log applies it): the
        # second time is answered from a bounded memo of signatures that verified, keyed by
        # the hash of everything signed (client key included) and the signature itself.
        memo_key = self.request_id + self.signature
        if memo_key in _VERIFIED:
            return
        verify_ed25519(self.client, self.signature, self.signing_bytes())
        _VERIFIED[memo_key] = None
        if len(_VERIFIED) > _VERIFIED_MAX:
            del _VERIFIED[next(iter(_VERIFIED))]
