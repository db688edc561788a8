"""FROST round one (RFC 9591 §5.1): hedged nonces and their public commitments.

A signer makes a pair of nonces ``(d, e)`` and publishes ``(D, E) = (d*G, e*G)``. The nonces
are one-shot: ``SigningNonces`` hands its scalars out once and refuses a second time with
``NonceReuse``, because two signature shares under one nonce pair and different binding
factors reveal the signing share.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import InvalidEncoding, NonceReuse
from ..groups import Rng, default_rng
from .ciphersuite import Ciphersuite
from .keys import KeyPackage

E = TypeVar("E")


@dataclass(frozen=True)
class SigningCommitments(Generic[E]):
    """A signer's public nonce commitments ``(D_i, E_i)`` for one signing operation."""

    identifier: int
    hiding: E
    binding: E

    def encode(self, suite: Ciphersuite[E]) -> bytes:
        """``id:u16 | D | E``."""
        g = suite.group
        return struct.pack(">H", self.identifier) + g.encode(self.hiding) + g.encode(self.binding)

    @classmethod
    def decode(cls, suite: Ciphersuite[E], data: bytes) -> SigningCommitments[E]:
        """Strictly decode commitments (neither point may be the identity, RFC 9591 §4.1).

        Raises:
            InvalidEncoding: wrong length, identifier 0, or an invalid point.
        """
        g = suite.group
        if not isinstance(data, (bytes, bytearray)) or len(data) != 2 + 2 * g.element_size:
            raise InvalidEncoding(f"FROST commitments are {2 + 2 * g.element_size} bytes")
        (identifier,) = struct.unpack(">H", data[:2])
        if identifier == 0:
            raise InvalidEncoding("FROST: participant identifier 0 is not allowed")
        hiding = g.decode(data[2 : 2 + g.element_size])
        binding = g.decode(data[2 + g.element_size :])
        return cls(identifier, hiding, binding)


class SigningNonces(Generic[E]):
    """A signer's secret nonce pair for one signing operation: usable exactly once.

    Security: ``take`` returns the scalars once and forgets them; a second call raises
    ``NonceReuse`` and computes nothing. Whoever persists nonces (the executor) must delete
    them durably before the signature share leaves the node, so a restart cannot reuse them.
    """

    __slots__ = ("_binding", "_hiding", "_used", "commitments")

    def __init__(self, hiding: int, binding: int, commitments: SigningCommitments[E]) -> None:
        self._hiding: int | None = hiding
        self._binding: int | None = binding
        self._used = False
        self.commitments = commitments

    @property
    def identifier(self) -> int:
        """The signer these nonces belong to."""
        return self.commitments.identifier

    @property
    def used(self) -> bool:
        """Whether the nonces were already handed out."""
        return self._used

    def take(self) -> tuple[int, int]:
        """Hand out ``(hiding, binding)`` once.

        Raises:
            NonceReuse: the nonces were already used.
        """
        if self._used or self._hiding is None or self._binding is None:
            raise NonceReuse(
                f"FROST nonces of signer {self.identifier} were already used; run round one again"
            )
        out = (self._hiding, self._binding)
        self._hiding = self._binding = None
        self._used = True
        return out

    def __repr__(self) -> str:
        state = "used" if self._used else "unused"
        return f"SigningNonces(identifier={self.identifier}, <redacted>, {state})"

    def __reduce__(self) -> str | tuple[Any, ...]:  # no pickling: a copy would be a second use
        raise TypeError("SigningNonces cannot be pickled or copied")


def nonce_generate(suite: Ciphersuite[E], secret: int, rng: Rng = default_rng) -> int:
    """RFC 9591 §4.1 ``nonce_generate``: ``H3(random_bytes(32) || SerializeScalar(secret))``.

    Security: hedged: fresh randomness *and* the signing share, so a broken RNG alone does not
    repeat a nonce, and a leaked RNG state alone does not reveal one.
    """
    random_bytes = rng(32)
    if len(random_bytes) != 32:
        raise ValueError("the RNG must return exactly the requested number of bytes")
    return suite.h3(random_bytes + suite.group.encode_scalar(secret))


def commit(
    suite: Ciphersuite[E], key_package: KeyPackage[E], rng: Rng = default_rng
) -> tuple[SigningNonces[E], SigningCommitments[E]]:
    """RFC 9591 §5.1 ``commit``: fresh nonces for ``key_package``'s signer and their commitments."""
    g = suite.group
    hiding = nonce_generate(suite, key_package.signing_share, rng)
    binding = nonce_generate(suite, key_package.signing_share, rng)
    commitments = SigningCommitments(
        key_package.identifier, g.base_mul(hiding), g.base_mul(binding)
    )
    return SigningNonces(hiding, binding, commitments), commitments
