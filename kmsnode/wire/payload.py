"""What the BFT log carries for the KMS: client requests and nodes' DKG messages.

A log payload is ``[tag, body]``: ``"req"`` with a client ``Request``'s bytes; ``"dkg"`` with
``[key_id, version, epoch, message]`` where ``message`` is a signed DKG message (its signature
names the node that posted it; the DKG machine checks it); or ``"tick"`` with ``[node, seq]``:
an empty entry nodes post while a DKG waits for a deadline height, because the log only makes
blocks when there is something to order; or ``"nonces"`` with
``[node, seq, replace, [commitment, ...], signature]``: a batch of a node's FROST nonce
commitments for its pool in the log (``kmsnode.state``), signed by the node; or ``"rules"``
with ``[node, seq, [version, ...], signature]``: the state-rules versions the node's software
can apply, signed by the node (a rules upgrade activates only once every node said so); or
``"recvkey"`` with ``[node, seq, public_key, signature]``: the node's next receiving key, the
hybrid key DKG shares are sealed to in sessions opened from then on (rules v3), signed by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto.encoding import transcript
from ..crypto.sealing import PUBLIC_KEY_SIZE as SEALING_KEY_SIZE
from ..crypto.signatures import verify_ed25519
from ..errors import MalformedMessage
from ._codec import Reader, pack, unpack
from .requests import MAX_KEY_ID, Request

MAX_DKG_MESSAGE = 2 * 1024 * 1024
MAX_NONCE_BATCH = 64
"""Commitments one nonce batch may carry."""
NONCE_COMMITMENT_SIZE = 64
"""A FROST Ed25519 commitment pair ``D || E`` (two encoded points)."""
_NONCES_DST = b"kmsnode/frost-nonces/v1"
_RULES_DST = b"kmsnode/rules-support/v1"
_RECEIVING_DST = b"kmsnode/receiving-key/v1"
MAX_RULES_VERSIONS = 16
"""Versions one rules-support statement may list."""


@dataclass(frozen=True)
class ClientPayload:
    """A client request as committed to the log (decoded, signature not yet checked)."""

    request: Request
    raw: bytes

    def encode(self) -> bytes:
        return pack(["req", self.raw])


@dataclass(frozen=True)
class DkgPayload:
    """A node's DKG message for the session of ``key_id`` / ``version`` / ``epoch``."""

    key_id: str
    version: int
    epoch: int
    message: bytes

    def encode(self) -> bytes:
        return pack(["dkg", [self.key_id, self.version, self.epoch, self.message]])


@dataclass(frozen=True)
class TickPayload:
    """An empty entry that only advances the log's height (``seq`` keeps ticks distinct)."""

    node: int
    seq: int

    def encode(self) -> bytes:
        return pack(["tick", [self.node, self.seq]])


@dataclass(frozen=True)
class NoncePayload:
    """A batch of node ``node``'s FROST nonce commitments ``D || E``, its ``seq``-th (the log
    takes a node's batches in order, each once); ``replace`` drops the node's unused ones
    first (its keystore lost their nonces, e.g. after a restore from backup)."""

    node: int
    seq: int
    replace: bool
    commitments: tuple[bytes, ...]
    signature: bytes = b""

    def signing_bytes(self, chain_id: str) -> bytes:
        """What the node signs: the batch, bound to the chain."""
        body = pack([self.node, self.seq, self.replace, list(self.commitments)])
        return transcript(_NONCES_DST, chain_id.encode(), body)

    def signed(self, chain_id: str, key: Ed25519PrivateKey) -> NoncePayload:
        return NoncePayload(
            self.node,
            self.seq,
            self.replace,
            self.commitments,
            key.sign(self.signing_bytes(chain_id)),
        )

    def verify(self, chain_id: str, public_key: bytes) -> None:
        """Raises: CryptoError: the signature is not the node's."""
        verify_ed25519(public_key, self.signature, self.signing_bytes(chain_id))

    def encode(self) -> bytes:
        return pack(
            [
                "nonces",
                [self.node, self.seq, self.replace, list(self.commitments), self.signature],
            ]
        )


@dataclass(frozen=True)
class RulesPayload:
    """Node ``node`` says its software can apply state rules ``versions`` (its ``seq``-th such
    statement: the log keeps each node's latest, so an old one cannot be replayed over it)."""

    node: int
    seq: int
    versions: tuple[int, ...]
    signature: bytes = b""

    def signing_bytes(self, chain_id: str) -> bytes:
        """What the node signs: the statement, bound to the chain."""
        return transcript(
            _RULES_DST, chain_id.encode(), pack([self.node, self.seq, list(self.versions)])
        )

    def signed(self, chain_id: str, key: Ed25519PrivateKey) -> RulesPayload:
        return RulesPayload(
            self.node, self.seq, self.versions, key.sign(self.signing_bytes(chain_id))
        )

    def verify(self, chain_id: str, public_key: bytes) -> None:
        """Raises: CryptoError: the signature is not the node's."""
        verify_ed25519(public_key, self.signature, self.signing_bytes(chain_id))

    def encode(self) -> bytes:
        return pack(["rules", [self.node, self.seq, list(self.versions), self.signature]])


@dataclass(frozen=True)
class ReceivingKeyPayload:
    """Node ``node``'s ``seq``-th receiving key (a hybrid sealing public key): DKG sessions
    opened after it is logged seal this node's shares to it. The node erases the private half
    once no open session uses it, so the deals in the log cannot be opened again later."""

    node: int
    seq: int
    public_key: bytes
    signature: bytes = b""

    def signing_bytes(self, chain_id: str) -> bytes:
        """What the node signs: the key, bound to the chain."""
        return transcript(
            _RECEIVING_DST, chain_id.encode(), pack([self.node, self.seq, self.public_key])
        )

    def signed(self, chain_id: str, key: Ed25519PrivateKey) -> ReceivingKeyPayload:
        return ReceivingKeyPayload(
            self.node, self.seq, self.public_key, key.sign(self.signing_bytes(chain_id))
        )

    def verify(self, chain_id: str, public_key: bytes) -> None:
        """Raises: CryptoError: the signature is not the node's."""
        verify_ed25519(public_key, self.signature, self.signing_bytes(chain_id))

    def encode(self) -> bytes:
        return pack(["recvkey", [self.node, self.seq, self.public_key, self.signature]])


LogPayload = (
    ClientPayload | DkgPayload | TickPayload | NoncePayload | RulesPayload | ReceivingKeyPayload
)


def client_payload(request: Request) -> bytes:
    """Log bytes for a client request."""
    return pack(["req", request.encode()])


def decode_payload(data: bytes) -> LogPayload:
    """Strictly decode one log payload.

    Raises:
        MalformedMessage: anything else (a byzantine leader may commit garbage).
    """
    r = Reader(unpack(data), "payload", 2)
    tag = r.text(0, "tag", 8)
    if tag == "req":
        raw = r.blob(1, "request")
        return ClientPayload(Request.decode(raw), raw)
    if tag == "dkg":
        d = Reader(r.raw(1), "dkg", 4)
        return DkgPayload(
            d.text(0, "key_id", MAX_KEY_ID),
            d.integer(1, "version", 0, 2**32 - 1),
            d.integer(2, "epoch", 0, 2**32 - 1),
            d.blob(3, "message", max_len=MAX_DKG_MESSAGE),
        )
    if tag == "tick":
        t = Reader(r.raw(1), "tick", 2)
        return TickPayload(t.integer(0, "node", 1, 2**16), t.integer(1, "seq"))
    if tag == "nonces":
        n = Reader(r.raw(1), "nonces", 5)
        replace = n.raw(2)
        items = n.raw(3)
        if not isinstance(replace, bool):
            raise MalformedMessage("nonces.replace: expected a boolean")
        if (
            not isinstance(items, list)
            or not 1 <= len(items) <= MAX_NONCE_BATCH
            or not all(isinstance(c, bytes) and len(c) == NONCE_COMMITMENT_SIZE for c in items)
        ):
            raise MalformedMessage(
                f"nonces.commitments: expected 1..{MAX_NONCE_BATCH} commitments of "
                f"{NONCE_COMMITMENT_SIZE} bytes"
            )
        return NoncePayload(
            n.integer(0, "node", 1, 2**16),
            n.integer(1, "seq"),
            replace,
            tuple(items),
            n.blob(4, "signature", 64),
        )
    if tag == "rules":
        g = Reader(r.raw(1), "rules", 4)
        versions = g.raw(2)
        if (
            not isinstance(versions, list)
            or not 1 <= len(versions) <= MAX_RULES_VERSIONS
            or not all(type(v) is int and 1 <= v <= 2**16 for v in versions)
            or versions != sorted(set(versions))
        ):
            raise MalformedMessage(
                f"rules.versions: expected 1..{MAX_RULES_VERSIONS} distinct versions, sorted"
            )
        return RulesPayload(
            g.integer(0, "node", 1, 2**16),
            g.integer(1, "seq"),
            tuple(versions),
            g.blob(3, "signature", 64),
        )
    if tag == "recvkey":
        k = Reader(r.raw(1), "recvkey", 4)
        return ReceivingKeyPayload(
            k.integer(0, "node", 1, 2**16),
            k.integer(1, "seq", 1),
            k.blob(2, "public_key", SEALING_KEY_SIZE),
            k.blob(3, "signature", 64),
        )
    raise MalformedMessage(f"payload: unknown tag {tag!r}")
