"""The crypto error tree.

::

    CryptoError
    ├── InvalidEncoding        (also ValueError) bytes that are not a canonical point/scalar/message
    ├── InvalidParameters      (also ValueError) ids, thresholds, lengths that break a precondition
    ├── InvalidProof           a zero-knowledge proof (DLEQ, proof of knowledge) does not verify
    ├── InvalidShare           a share fails its Feldman commitments; ``culprits``: the dealers
    ├── InvalidPartial         partials that fail verification; ``culprits``: the senders
    ├── NotEnoughPartials      fewer than ``needed`` distinct valid partials; ``have``, ``culprits``
    ├── InvalidCiphertext      opaque: tampered ciphertext, wrong key or wrong encryption context
    ├── InvalidSignature       opaque: a signature that does not verify
    ├── NonceReuse             a single-use nonce was used twice
    └── SessionStateError      (dkg) the driver fed a DKG session out of order; says what to do

Crypto failures that an attacker could learn from are opaque (one message, no detail); errors
that a caller must act on carry fields (who cheated, how many were missing).
"""

from __future__ import annotations

from collections.abc import Iterable


class CryptoError(Exception):
    """Base class of every error raised by ``kmsnode.crypto``."""


class InvalidEncoding(CryptoError, ValueError):
    """Bytes that are not a canonical encoding of what was expected."""


class InvalidParameters(CryptoError, ValueError):
    """A precondition on identifiers, thresholds or lengths does not hold."""


class InvalidProof(CryptoError):
    """A zero-knowledge proof does not verify."""


class _WithCulprits(CryptoError):
    """An error that names the participants responsible."""

    def __init__(self, message: str, culprits: Iterable[int]) -> None:
        self.culprits: tuple[int, ...] = tuple(sorted(set(culprits)))
        super().__init__(f"{message} (participants {list(self.culprits)})")


class InvalidShare(_WithCulprits):
    """A secret share does not match its dealer's public commitments."""


class InvalidPartial(_WithCulprits):
    """Partial results (decryption shares, signature shares) that fail verification."""


class NotEnoughPartials(_WithCulprits):
    """Fewer than the threshold of distinct valid partials; ``culprits`` are the invalid ones."""

    def __init__(self, have: int, needed: int, culprits: Iterable[int] = ()) -> None:
        self.have = have
        self.needed = needed
        _WithCulprits.__init__(
            self, f"{have} valid partials, {needed} needed; invalid ones from", culprits
        )


class InvalidCiphertext(CryptoError):
    """Opaque: the ciphertext was tampered with, or the key or encryption context is wrong."""

    def __init__(self) -> None:
        super().__init__("invalid ciphertext")


class InvalidSignature(CryptoError):
    """Opaque: a signature does not verify."""

    def __init__(self) -> None:
        super().__init__("invalid signature")


class NonceReuse(CryptoError):
    """A single-use nonce was used a second time; nothing was computed."""
