"""The three DKG messages, ``Deal``, ``Complaint`` and ``Justification``, and their wire format.

Every message is signed by its sender with Ed25519 and names its session and sender; the state
machine accepts it only if the signature verifies under the key the session lists for that
sender, so a message whose claimed sender is not its signer is dropped. Encoding is canonical
msgpack::

    [format=1, type, group name, session id (32), sender, *body, signature (64)]

and decoding is strict: exact types, lengths and ranges, canonical points and scalars, and the
bytes must re-encode identically (so a signed message has exactly one encoding).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..encoding import transcript
from ..errors import InvalidEncoding
from ..groups import Group
from ..pok import SchnorrProof
from ..signatures import verify_ed25519

E = TypeVar("E")
_S = TypeVar("_S", bound="_Signed[Any]")

FORMAT_VERSION = 1
_SIGN_DST = b"kmsnode/dkg/message/v1"
_SESSION_ID_SIZE = 32
_SIGNATURE_SIZE = 64
_MAX_ID = 0xFFFF
_MAX_MESSAGE = 16 * 1024 * 1024


def share_aad(session_id: bytes, dealer: int, recipient: int) -> bytes:
    """Associated data of a sealed share: binds it to its session, dealer and recipient."""
    return transcript(b"kmsnode/dkg/share/v1", session_id, u16b(dealer), u16b(recipient))


def u16b(value: int) -> bytes:
    return value.to_bytes(2, "big")


@dataclass(frozen=True)
class _Signed(ABC, Generic[E]):
    """Fields and signing shared by the three messages."""

    TYPE: ClassVar[int]
    group: Group[E] = field(repr=False, compare=False)
    session_id: bytes
    sender: int

    @abstractmethod
    def _body(self) -> list[Any]:
        """The message-specific fields, after the shared header."""

    def _payload(self) -> list[Any]:
        return [
            FORMAT_VERSION,
            self.TYPE,
            self.group.name,
            self.session_id,
            self.sender,
            *self._body(),
        ]

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers (domain-tagged canonical payload)."""
        return _SIGN_DST + _pack(self._payload())

    def verify_signature(self, public_key: bytes) -> None:
        """Check the signature under the sender's raw Ed25519 public key.

        Raises:
            InvalidSignature: it does not verify (opaque).
        """
        verify_ed25519(public_key, self.signature, self.signed_bytes())

    @property
    @abstractmethod
    def signature(self) -> bytes:
        """The sender's Ed25519 signature over ``signed_bytes``."""

    def encode(self) -> bytes:
        """The canonical wire bytes, signature included."""
        return _pack([*self._payload(), self.signature])

    @classmethod
    def decode(cls, group: Group[E], data: bytes) -> Self:
        """Strictly decode one message of this type (the state machine checks the signature).

        Raises:
            InvalidEncoding: any structural defect, named in the message, or another type.
        """
        msg = decode_message(group, data)
        if not isinstance(msg, cls):
            raise InvalidEncoding(f"not a {cls.__name__}")
        return msg


@dataclass(frozen=True)
class Deal(_Signed[E]):
    """A dealer's contribution: Feldman commitments, a proof of knowledge, sealed shares.

    ``sender`` is the dealer. ``commitments[0]`` commits to the constant term (the dealer's
    secret; zero in a refresh; its old share in a reshare). ``sealed_shares`` holds one
    ``(recipient, sealed share)`` pair per recipient, in increasing recipient order.
    """

    TYPE: ClassVar[int] = 1
    commitments: tuple[E, ...]
    proof: SchnorrProof
    sealed_shares: tuple[tuple[int, bytes], ...]
    signature_: bytes = field(repr=False)

    @property
    def dealer(self) -> int:
        """The dealer's id."""
        return self.sender

    @property
    def signature(self) -> bytes:
        return self.signature_

    def _body(self) -> list[Any]:
        g = self.group
        return [
            [g.encode(c) for c in self.commitments],
            self.proof.encode(g),
            [[i, s] for i, s in self.sealed_shares],
        ]

    @classmethod
    def create(
        cls,
        group: Group[E],
        session_id: bytes,
        dealer: int,
        commitments: Sequence[E],
        proof: SchnorrProof,
        sealed_shares: Sequence[tuple[int, bytes]],
        signing_key: Ed25519PrivateKey,
    ) -> Deal[E]:
        """Build and sign a deal."""
        unsigned = cls(
            group, session_id, dealer, tuple(commitments), proof, tuple(sorted(sealed_shares)), b""
        )
        return _sign(unsigned, signing_key)


@dataclass(frozen=True)
class Complaint(_Signed[E]):
    """A recipient's public accusation that ``dealer``'s share to it is bad or unopenable."""

    TYPE: ClassVar[int] = 2
    dealer: int
    signature_: bytes = field(repr=False)

    @property
    def complainer(self) -> int:
        """The recipient's id."""
        return self.sender

    @property
    def signature(self) -> bytes:
        return self.signature_

    def _body(self) -> list[Any]:
        return [self.dealer]

    @classmethod
    def create(
        cls,
        group: Group[E],
        session_id: bytes,
        complainer: int,
        dealer: int,
        signing_key: Ed25519PrivateKey,
    ) -> Complaint[E]:
        """Build and sign a complaint."""
        return _sign(cls(group, session_id, complainer, dealer, b""), signing_key)


@dataclass(frozen=True)
class Justification(_Signed[E]):
    """A dealer's answer to a complaint: the complainer's share, revealed in the clear.

    Security: this publishes one share of the dealer's polynomial on purpose (GJKR); at most
    ``f < t`` complainers can be byzantine, so the revealed shares never reach the threshold.
    """

    TYPE: ClassVar[int] = 3
    complainer: int
    share: int = field(repr=False)
    signature_: bytes = field(repr=False)

    @property
    def dealer(self) -> int:
        """The accused dealer's id."""
        return self.sender

    @property
    def signature(self) -> bytes:
        return self.signature_

    def _body(self) -> list[Any]:
        return [self.complainer, self.group.encode_scalar(self.share)]

    @classmethod
    def create(
        cls,
        group: Group[E],
        session_id: bytes,
        dealer: int,
        complainer: int,
        share: int,
        signing_key: Ed25519PrivateKey,
    ) -> Justification[E]:
        """Build and sign a justification."""
        return _sign(cls(group, session_id, dealer, complainer, share, b""), signing_key)


Message = Deal[E] | Complaint[E] | Justification[E]


def _sign(unsigned: _S, key: Ed25519PrivateKey) -> _S:
    signature = key.sign(unsigned.signed_bytes())
    object.__setattr__(unsigned, "signature_", signature)
    return unsigned


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _bytes(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidEncoding(f"{what} must be bytes")
    if size is not None and len(value) != size:
        raise InvalidEncoding(f"{what} must be {size} bytes, got {len(value)}")
    return value


def _id(value: Any, what: str) -> int:
    if type(value) is not int or not 1 <= value <= _MAX_ID:
        raise InvalidEncoding(f"{what} must be an integer in 1..{_MAX_ID}")
    return value


def _list(value: Any, what: str, max_len: int = _MAX_ID) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_len:
        raise InvalidEncoding(f"{what} must be a list of at most {max_len} entries")
    return value


def decode_message(group: Group[E], data: bytes) -> Message[E]:
    """Strictly decode any DKG message over ``group``.

    Raises:
        InvalidEncoding: not canonical msgpack, an unknown format or type, a different group,
            a field of the wrong type, length or range, or a point or scalar that is invalid.
    """
    if not isinstance(data, (bytes, bytearray)) or len(data) > _MAX_MESSAGE:
        raise InvalidEncoding(f"a DKG message is bytes of at most {_MAX_MESSAGE}")
    data = bytes(data)
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise InvalidEncoding("DKG message is not valid msgpack") from exc
    fields = _list(obj, "a DKG message", 16)
    if len(fields) < 6:
        raise InvalidEncoding("DKG message has too few fields")
    version, mtype, gname, sid, sender, *body, signature = fields
    if type(version) is not int or version != FORMAT_VERSION:
        raise InvalidEncoding(f"unsupported DKG message format {version!r}")
    if gname != group.name:
        raise InvalidEncoding(f"DKG message is for group {gname!r}, expected {group.name!r}")
    sid = _bytes(sid, "session id", _SESSION_ID_SIZE)
    sender = _id(sender, "sender id")
    signature = _bytes(signature, "signature", _SIGNATURE_SIZE)
    msg: Message[E]
    if mtype == Deal.TYPE:
        if len(body) != 3:
            raise InvalidEncoding("a Deal has 3 body fields")
        raw_commitments = _list(body[0], "commitments")
        if not raw_commitments:
            raise InvalidEncoding("a Deal needs at least one commitment")
        commitments = tuple(
            group.decode(_bytes(c, "commitment", group.element_size), allow_identity=True)
            for c in raw_commitments
        )
        proof = SchnorrProof.decode(group, _bytes(body[1], "proof", 2 * group.scalar_size))
        shares: list[tuple[int, bytes]] = []
        for entry in _list(body[2], "sealed shares"):
            pair = _list(entry, "a sealed share entry", 2)
            if len(pair) != 2:
                raise InvalidEncoding("a sealed share entry is [recipient, sealed]")
            shares.append((_id(pair[0], "recipient id"), _bytes(pair[1], "sealed share")))
        ids = [i for i, _ in shares]
        if ids != sorted(set(ids)):
            raise InvalidEncoding("sealed shares must be in strictly increasing recipient order")
        msg = Deal(group, sid, sender, commitments, proof, tuple(shares), signature)
    elif mtype == Complaint.TYPE:
        if len(body) != 1:
            raise InvalidEncoding("a Complaint has 1 body field")
        msg = Complaint(group, sid, sender, _id(body[0], "dealer id"), signature)
    elif mtype == Justification.TYPE:
        if len(body) != 2:
            raise InvalidEncoding("a Justification has 2 body fields")
        share = group.decode_scalar(_bytes(body[1], "share", group.scalar_size))
        msg = Justification(group, sid, sender, _id(body[0], "complainer id"), share, signature)
    else:
        raise InvalidEncoding(f"unknown DKG message type {mtype!r}")
    if msg.encode() != data:
        raise InvalidEncoding("DKG message is not canonically encoded")
    return msg
