"""What applying a committed block asks the node to do: reply, compute a partial, run a DKG.

Effects are the only output of the replicated state machine. Every honest node derives the
same effects from the same block; the executor carries out the ones that need secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..crypto import dkg, tdh2
from ..wire.sums import SumCiphertext
from ._nonces import NonceRef


@dataclass(frozen=True)
class Reply:
    """Answer ``request_id`` with a public result (or an error); each node signs its reply."""

    request_id: bytes
    client: bytes
    height: int
    op: str
    result: dict[str, Any] | None = None
    error: str | None = None
    """Error code (``access_denied``, ``key_not_found``, ...); ``None`` on success."""
    message: str = ""


@dataclass(frozen=True)
class PartialWork:
    """What every effect answered with this node's partial carries: the request, the key
    version and share epoch to use, and the requester's reply key to seal the partial to."""

    request_id: bytes
    client: bytes
    height: int
    key_id: str
    version: int
    epoch: int
    op: ClassVar[str]
    """The request operation the partial answers."""
    reply_key: bytes = field(repr=False)
    verification_keys: Mapping[int, bytes] = field(repr=False)
    """The version's verification keys at this epoch, as the state holds them: the executor
    checks its share against its own before using it (a share of another key, group or epoch
    is refused, whatever the state machine's checks let through)."""


@dataclass(frozen=True)
class ComputePartial(PartialWork):
    """Compute this node's partial decryption and seal it to ``reply_key``."""

    op: ClassVar[str] = "decrypt"

    ciphertext: tdh2.ValidCiphertext = field(repr=False)
    """Already checked by the state machine (proof valid under this key and context)."""


@dataclass(frozen=True)
class ComputeSumPartial(PartialWork):
    """Compute this node's partial decryption of an encrypted sum (homomorphic key) and seal
    it to ``reply_key``."""

    op: ClassVar[str] = "decrypt_sum"

    ciphertext: SumCiphertext = field(repr=False)


@dataclass(frozen=True)
class ComputeSignaturePartial(PartialWork):
    """Compute this node's partial BLS signature of ``message`` and seal it to ``reply_key``."""

    op: ClassVar[str] = "sign"

    message: bytes = field(repr=False)


@dataclass(frozen=True)
class ComputeFrostShare(PartialWork):
    """FROST round two for ``message``: the log chose the signers and spent one commitment
    of each (``commitments``: ``package_entry`` lines, by signer; ``nonce_refs``: where each
    sat in its signer's pool). A chosen signer seals its signature share to ``reply_key``;
    every node answers with the commitments, so the client learns the package from f + 1."""

    op: ClassVar[str] = "sign"

    message: bytes = field(repr=False)
    public_key: bytes = b""
    """The key version's group public key (the binding factors and challenge hash it)."""
    commitments: tuple[bytes, ...] = ()
    nonce_refs: Mapping[int, NonceRef] = field(default_factory=dict)


@dataclass(frozen=True)
class StartDkg:
    """Open a DKG session: the node builds its participant and posts its deal."""

    session: dkg.Session[Any]


@dataclass(frozen=True)
class DeliverDkg:
    """Feed a committed DKG message (or, with ``message=None``, a height mark) to a session."""

    key_id: str
    version: int
    epoch: int
    height: int
    message: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class KeyActivated:
    """A key version's DKG completed: its public key and verification keys are final."""

    key_id: str
    version: int
    epoch: int


@dataclass(frozen=True)
class SharesRefreshed:
    """A refresh of a key version completed: ``epoch`` is current, shares of earlier epochs
    are useless and must not outlive it in any keystore."""

    key_id: str
    version: int
    epoch: int


@dataclass(frozen=True)
class KeyDeleted:
    """A key's scheduled deletion came due: every share of every version, at every epoch,
    must leave every keystore (nothing will ever use them again)."""

    key_id: str


@dataclass(frozen=True)
class RulesActivated:
    """From this block on the log is applied under state rules ``version``: the node records
    it (and stops, naming the version, if its software cannot apply it)."""

    version: int


Effect = (
    Reply
    | ComputePartial
    | ComputeSumPartial
    | ComputeSignaturePartial
    | ComputeFrostShare
    | StartDkg
    | DeliverDkg
    | KeyActivated
    | SharesRefreshed
    | KeyDeleted
    | RulesActivated
)
