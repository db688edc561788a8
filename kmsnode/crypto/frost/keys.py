"""FROST key material: a signer's ``KeyPackage`` and the public ``PublicKeyPackage``.

Keys normally come from the DKG; ``split`` is the RFC 9591 Appendix C trusted dealer, used by
tests and benchmarks, built on ``shamir`` and ``feldman`` like every other sharing here.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .. import feldman, shamir
from ..errors import InvalidEncoding, InvalidParameters
from ..groups import Rng, default_rng
from .ciphersuite import Ciphersuite

E = TypeVar("E")

_KEY_PACKAGE_VERSION = 1
_PUBLIC_PACKAGE_VERSION = 1


def _id_bytes(identifier: int) -> bytes:
    return struct.pack(">H", identifier)


def _decode_id(data: bytes) -> int:
    identifier: int = struct.unpack(">H", data)[0]
    if identifier == 0:
        raise InvalidEncoding("FROST: participant identifier 0 is not allowed")
    return identifier


@dataclass(frozen=True, repr=False)
class KeyPackage(Generic[E]):
    """One signer's key: its identifier, secret share, verification key and the group key.

    Security: ``signing_share`` is secret; ``repr`` redacts it.
    """

    identifier: int
    signing_share: int
    verification_key: E
    group_public_key: E
    min_signers: int

    def __repr__(self) -> str:
        return (
            f"KeyPackage(identifier={self.identifier}, signing_share=<redacted>, "
            f"min_signers={self.min_signers})"
        )

    def encode(self, suite: Ciphersuite[E]) -> bytes:
        """``version | id:u16 | min_signers:u16 | share | Y_i | PK`` (secret bytes: seal them)."""
        g = suite.group
        return (
            bytes([_KEY_PACKAGE_VERSION])
            + _id_bytes(self.identifier)
            + struct.pack(">H", self.min_signers)
            + g.encode_scalar(self.signing_share)
            + g.encode(self.verification_key)
            + g.encode(self.group_public_key)
        )

    @classmethod
    def decode(cls, suite: Ciphersuite[E], data: bytes) -> KeyPackage[E]:
        """Strictly decode a key package and check that the share matches its verification key.

        Raises:
            InvalidEncoding: wrong version or length, bad scalar or point, or a share that
                does not match the verification key.
        """
        g = suite.group
        size = 5 + g.scalar_size + 2 * g.element_size
        if not isinstance(data, (bytes, bytearray)) or len(data) != size or data[0] != 1:
            raise InvalidEncoding(f"a version-1 FROST key package is {size} bytes")
        identifier = _decode_id(data[1:3])
        (min_signers,) = struct.unpack(">H", data[3:5])
        if min_signers == 0:
            raise InvalidEncoding("FROST: min_signers must be at least 1")
        offset = 5
        share = g.decode_scalar(data[offset : offset + g.scalar_size])
        offset += g.scalar_size
        vk = g.decode(data[offset : offset + g.element_size])
        offset += g.element_size
        pk = g.decode(data[offset:])
        if not g.eq(g.base_mul(share), vk):
            raise InvalidEncoding(
                "FROST key package: the share does not match its verification key"
            )
        return cls(identifier, share, vk, pk, min_signers)


@dataclass(frozen=True)
class PublicKeyPackage(Generic[E]):
    """Everything public about a FROST key: every signer's verification key and the group key."""

    verification_keys: Mapping[int, E] = field(hash=False)
    group_public_key: E
    min_signers: int

    def encode(self, suite: Ciphersuite[E]) -> bytes:
        """``version | min_signers:u16 | count:u16 | PK | (id:u16 | Y_id)*`` sorted by id."""
        g = suite.group
        out = bytearray([_PUBLIC_PACKAGE_VERSION])
        out += struct.pack(">HH", self.min_signers, len(self.verification_keys))
        out += g.encode(self.group_public_key)
        for identifier in sorted(self.verification_keys):
            out += _id_bytes(identifier) + g.encode(self.verification_keys[identifier])
        return bytes(out)

    @classmethod
    def decode(cls, suite: Ciphersuite[E], data: bytes) -> PublicKeyPackage[E]:
        """Strictly decode a public key package (ids strictly increasing, points valid).

        Raises:
            InvalidEncoding: wrong version or length, unsorted or repeated ids, bad points.
        """
        g = suite.group
        if not isinstance(data, (bytes, bytearray)) or len(data) < 5 or data[0] != 1:
            raise InvalidEncoding("not a version-1 FROST public key package")
        min_signers, count = struct.unpack(">HH", data[1:5])
        entry = 2 + g.element_size
        if len(data) != 5 + g.element_size + count * entry:
            raise InvalidEncoding("FROST public key package: wrong length")
        if not 1 <= min_signers <= count:
            raise InvalidEncoding("FROST public key package: min_signers out of range")
        pk = g.decode(data[5 : 5 + g.element_size])
        keys: dict[int, E] = {}
        offset = 5 + g.element_size
        last = 0
        for _ in range(count):
            identifier = _decode_id(data[offset : offset + 2])
            if identifier <= last:
                raise InvalidEncoding("FROST public key package: ids must be strictly increasing")
            last = identifier
            keys[identifier] = g.decode(data[offset + 2 : offset + entry])
            offset += entry
        return cls(keys, pk, min_signers)


def split(
    suite: Ciphersuite[E], secret: int, n: int, t: int, rng: Rng = default_rng
) -> tuple[list[KeyPackage[E]], PublicKeyPackage[E]]:
    """Trusted-dealer key generation (RFC 9591 Appendix C): share ``secret`` among ``1..n``.

    Test and benchmark helper: in production keys come from the DKG and no dealer sees them.

    Raises:
        InvalidParameters: not ``1 <= t <= n`` or ``secret`` is 0.
    """
    g = suite.group
    if secret % g.order == 0:
        raise InvalidParameters("FROST: the group secret must not be 0")
    shares, coefficients = shamir.split(g, secret, n, t, rng)
    commitments = feldman.commit(g, coefficients)
    pk = commitments[0]
    keys = feldman.verification_keys(g, commitments, range(1, n + 1))
    packages = [KeyPackage(s.id, s.value, keys[s.id], pk, t) for s in shares]
    return packages, PublicKeyPackage(keys, pk, t)
