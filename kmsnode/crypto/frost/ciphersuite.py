"""FROST ciphersuites (RFC 9591 §6): a group, the hash functions H1..H5, and the verifier.

The protocol code in ``round1``, ``round2`` and ``aggregate`` is written once against
``Ciphersuite``; a ciphersuite supplies only what the RFC lets vary between suites.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from ..groups import ED25519, Ed25519, Group
from ..groups.ed25519 import mul_add, reduce_wide, verify_signature

E = TypeVar("E")


class Ciphersuite(ABC, Generic[E]):
    """What distinguishes one FROST ciphersuite from another (RFC 9591 §6)."""

    name: str
    """The RFC's name of the suite, e.g. ``FROST(Ed25519, SHA-512)``."""
    context_string: bytes
    group: Group[E]

    @abstractmethod
    def h1(self, m: bytes) -> int:
        """The binding-factor hash ("rho")."""

    @abstractmethod
    def h2(self, m: bytes) -> int:
        """The challenge hash (for Ed25519 plain SHA-512: the result is an RFC 8032 signature)."""

    @abstractmethod
    def h3(self, m: bytes) -> int:
        """The nonce hash ("nonce"); its input contains the secret share."""

    @abstractmethod
    def h4(self, m: bytes) -> bytes:
        """The message digest ("msg")."""

    @abstractmethod
    def h5(self, m: bytes) -> bytes:
        """The commitment-list digest ("com")."""

    @abstractmethod
    def verify(self, group_public_key: E, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` verifies as a single-party signature under the suite's scheme."""

    def signature_share(
        self, hiding: int, binding: int, binding_factor: int, signing_share: int, factor: int
    ) -> int:
        """``hiding + binding * binding_factor + signing_share * factor`` in the scalar field.

        ``factor`` is the public ``lambda_i * challenge``. Suites whose library offers
        constant-time scalar arithmetic override this.
        """
        q = self.group.order
        return (hiding + binding * binding_factor + signing_share * factor) % q

    def encode_signature(self, group_commitment: E, z: int) -> bytes:
        """The suite's signature encoding: ``SerializeElement(R) || SerializeScalar(z)``."""
        return self.group.encode(group_commitment) + self.group.encode_scalar(z)

    def __repr__(self) -> str:
        return f"<Ciphersuite {self.name}>"


class Ed25519Sha512(Ciphersuite[bytes]):
    """FROST(Ed25519, SHA-512), RFC 9591 §6.1: output verifies as an RFC 8032 Ed25519 signature."""

    name = "FROST(Ed25519, SHA-512)"
    context_string = b"FROST-ED25519-SHA512-v1"
    group: Ed25519 = ED25519

    def _scalar(self, *parts: bytes) -> int:
        h = hashlib.sha512()
        for part in parts:
            h.update(part)
        return reduce_wide(h.digest())

    def h1(self, m: bytes) -> int:
        return self._scalar(self.context_string, b"rho", m)

    def h2(self, m: bytes) -> int:
        return self._scalar(m)

    def h3(self, m: bytes) -> int:
        return self._scalar(self.context_string, b"nonce", m)

    def h4(self, m: bytes) -> bytes:
        return hashlib.sha512(self.context_string + b"msg" + m).digest()

    def h5(self, m: bytes) -> bytes:
        return hashlib.sha512(self.context_string + b"com" + m).digest()

    def verify(self, group_public_key: bytes, message: bytes, signature: bytes) -> bool:
        return verify_signature(group_public_key, message, signature)

    def signature_share(
        self, hiding: int, binding: int, binding_factor: int, signing_share: int, factor: int
    ) -> int:
        # Security: nonces and the share stay inside libsodium's constant-time scalar code.
        return mul_add(signing_share, factor, mul_add(binding, binding_factor, hiding))


FROST_ED25519_SHA512 = Ed25519Sha512()
