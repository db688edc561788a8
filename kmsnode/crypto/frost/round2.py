"""FROST round two (RFC 9591 §5.2): check the signing package, then compute a signature share.

Also home of the RFC's shared helpers (§4.3 to §4.6: commitment-list encoding, binding
factors, group commitment, challenge), which ``aggregate`` uses too.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import InvalidEncoding, InvalidParameters
from ..shamir import lagrange_coefficient, validate_ids
from .ciphersuite import Ciphersuite
from .keys import KeyPackage
from .round1 import SigningCommitments, SigningNonces

E = TypeVar("E")

_PACKAGE_VERSION = 1
MAX_MESSAGE = 1 << 20
"""Largest message a signing package may carry (1 MiB): sign a digest for anything bigger."""


@dataclass(frozen=True)
class SigningPackage(Generic[E]):
    """What the coordinator (for us, the log) sends every chosen signer: commitments + message.

    ``commitments`` must be sorted by identifier with no identifier twice; ``check`` and
    ``decode`` enforce it, and ``round2.sign`` refuses a package that breaks it.
    """

    commitments: tuple[SigningCommitments[E], ...]
    message: bytes

    @property
    def signers(self) -> tuple[int, ...]:
        """The identifiers of the chosen signers, in package order."""
        return tuple(c.identifier for c in self.commitments)

    def commitments_of(self, identifier: int) -> SigningCommitments[E] | None:
        """The commitments listed for ``identifier``, or None."""
        for c in self.commitments:
            if c.identifier == identifier:
                return c
        return None

    def check(self, suite: Ciphersuite[E]) -> None:
        """Check the structure: ids valid, strictly increasing, no identity commitments.

        Raises:
            InvalidParameters: naming the offending identifier.
        """
        ids = self.signers
        if not ids:
            raise InvalidParameters("FROST signing package lists no signers")
        seen: set[int] = set()
        for i in ids:
            if i in seen:
                raise InvalidParameters(f"FROST signing package lists signer {i} twice")
            seen.add(i)
        validate_ids(ids, suite.group.order)
        if list(ids) != sorted(ids):
            raise InvalidParameters(
                "FROST signing package commitments are not sorted by identifier"
            )
        g = suite.group
        for c in self.commitments:
            if g.is_identity(c.hiding) or g.is_identity(c.binding):
                raise InvalidParameters(
                    f"FROST commitment of signer {c.identifier} is the identity"
                )
        if not isinstance(self.message, bytes) or len(self.message) > MAX_MESSAGE:
            raise InvalidParameters(f"FROST message must be bytes of at most {MAX_MESSAGE}")

    def encode(self, suite: Ciphersuite[E]) -> bytes:
        """``version | count:u16 | commitments* | len(message):u32 | message``."""
        out = bytearray([_PACKAGE_VERSION]) + struct.pack(">H", len(self.commitments))
        for c in self.commitments:
            out += c.encode(suite)
        out += struct.pack(">I", len(self.message)) + self.message
        return bytes(out)

    @classmethod
    def decode(cls, suite: Ciphersuite[E], data: bytes) -> SigningPackage[E]:
        """Strictly decode and ``check`` a signing package.

        Raises:
            InvalidEncoding: malformed bytes or a package that breaks the structure rules.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) < 7 or data[0] != 1:
            raise InvalidEncoding("not a version-1 FROST signing package")
        (count,) = struct.unpack(">H", data[1:3])
        size = 2 + 2 * suite.group.element_size
        offset = 3
        if len(data) < offset + count * size + 4:
            raise InvalidEncoding("FROST signing package: truncated")
        commitments = []
        for _ in range(count):
            commitments.append(SigningCommitments.decode(suite, data[offset : offset + size]))
            offset += size
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        offset += 4
        if len(data) != offset + length:
            raise InvalidEncoding("FROST signing package: wrong message length")
        package = cls(tuple(commitments), bytes(data[offset:]))
        try:
            package.check(suite)
        except InvalidParameters as exc:
            raise InvalidEncoding(str(exc)) from None
        return package


@dataclass(frozen=True)
class SignatureShare:
    """A signer's share ``z_i`` of the signature (public once released)."""

    identifier: int
    share: int

    def encode(self, suite: Ciphersuite[Any]) -> bytes:
        """``id:u16 | z_i``."""
        return struct.pack(">H", self.identifier) + suite.group.encode_scalar(self.share)

    @classmethod
    def decode(cls, suite: Ciphersuite[Any], data: bytes) -> SignatureShare:
        """Strictly decode a signature share.

        Raises:
            InvalidEncoding: wrong length, identifier 0 or a non-canonical scalar.
        """
        size = 2 + suite.group.scalar_size
        if not isinstance(data, (bytes, bytearray)) or len(data) != size:
            raise InvalidEncoding(f"a FROST signature share is {size} bytes")
        (identifier,) = struct.unpack(">H", data[:2])
        if identifier == 0:
            raise InvalidEncoding("FROST: participant identifier 0 is not allowed")
        return cls(identifier, suite.group.decode_scalar(data[2:]))


# -- RFC 9591 §4 helpers ----------------------------------------------------------------------


def encode_group_commitment_list(
    suite: Ciphersuite[E], commitments: Sequence[SigningCommitments[E]]
) -> bytes:
    """RFC 9591 §4.3: ``SerializeScalar(id) || D || E`` for every signer, in order."""
    g = suite.group
    return b"".join(
        g.encode_scalar(c.identifier) + g.encode(c.hiding) + g.encode(c.binding)
        for c in commitments
    )


def binding_factor_inputs(
    suite: Ciphersuite[E], group_public_key: E, package: SigningPackage[E]
) -> dict[int, bytes]:
    """RFC 9591 §4.4: each signer's ``rho_input`` (exposed for the test vectors)."""
    g = suite.group
    prefix = (
        g.encode(group_public_key)
        + suite.h4(package.message)
        + suite.h5(encode_group_commitment_list(suite, package.commitments))
    )
    return {c.identifier: prefix + g.encode_scalar(c.identifier) for c in package.commitments}


def compute_binding_factors(
    suite: Ciphersuite[E], group_public_key: E, package: SigningPackage[E]
) -> dict[int, int]:
    """RFC 9591 §4.4 ``compute_binding_factors``: ``rho_i = H1(rho_input_i)``."""
    inputs = binding_factor_inputs(suite, group_public_key, package)
    return {i: suite.h1(rho_input) for i, rho_input in inputs.items()}


def compute_group_commitment(
    suite: Ciphersuite[E], package: SigningPackage[E], binding_factors: dict[int, int]
) -> E:
    """RFC 9591 §4.5: ``R = sum(D_i + rho_i * E_i)`` (public values: variable time is fine)."""
    g = suite.group
    hiding_sum = g.sum([c.hiding for c in package.commitments])
    bound = g.lincomb(
        [c.binding for c in package.commitments],
        [binding_factors[c.identifier] for c in package.commitments],
    )
    return g.add(hiding_sum, bound)


def compute_challenge(
    suite: Ciphersuite[E], group_commitment: E, group_public_key: E, message: bytes
) -> int:
    """RFC 9591 §4.6: ``c = H2(R || PK || msg)``."""
    g = suite.group
    return suite.h2(g.encode(group_commitment) + g.encode(group_public_key) + message)


# -- round two --------------------------------------------------------------------------------


def check_package(
    suite: Ciphersuite[E],
    package: SigningPackage[E],
    nonces: SigningNonces[E],
    key_package: KeyPackage[E],
    message: bytes,
) -> None:
    """Everything a signer checks before it lets a nonce out (RFC 9591 §5.2 and §9 pitfalls).

    Raises:
        InvalidParameters: the package is unsorted, lists a signer twice, lists fewer than
            ``min_signers``, omits this signer or alters its commitments, carries another
            message than ``message``, or the nonces belong to another signer.
    """
    me = key_package.identifier
    if nonces.identifier != me:
        raise InvalidParameters(f"nonces belong to signer {nonces.identifier}, not to {me}")
    package.check(suite)
    if package.message != message:
        raise InvalidParameters("FROST signing package carries another message than the request")
    if len(package.commitments) < key_package.min_signers:
        raise InvalidParameters(
            f"FROST signing package lists {len(package.commitments)} signers, "
            f"the threshold is {key_package.min_signers}"
        )
    mine = package.commitments_of(me)
    if mine is None:
        raise InvalidParameters(f"FROST signing package does not list signer {me}")
    g = suite.group
    expected = nonces.commitments
    if not (g.eq(mine.hiding, expected.hiding) and g.eq(mine.binding, expected.binding)):
        raise InvalidParameters(
            f"FROST signing package alters the commitments of signer {me}; refusing to sign"
        )


def sign(
    suite: Ciphersuite[E],
    package: SigningPackage[E],
    nonces: SigningNonces[E],
    key_package: KeyPackage[E],
    message: bytes,
) -> SignatureShare:
    """RFC 9591 §5.2 ``sign``: this signer's share of the signature over ``message``.

    ``message`` is what this signer agreed to sign (from the committed request); the package
    must carry exactly it. The nonces are consumed only once every check has passed, so a
    rejected package leaves them usable; after a share is computed they are gone for good.

    Raises:
        InvalidParameters: see ``check_package``.
        NonceReuse: these nonces were already used.
    """
    check_package(suite, package, nonces, key_package, message)
    g = suite.group
    pk = key_package.group_public_key
    binding_factors = compute_binding_factors(suite, pk, package)
    group_commitment = compute_group_commitment(suite, package, binding_factors)
    lam = lagrange_coefficient(key_package.identifier, package.signers, g.order)
    challenge = compute_challenge(suite, group_commitment, pk, package.message)
    hiding, binding = nonces.take()
    z = suite.signature_share(
        hiding,
        binding,
        binding_factors[key_package.identifier],
        key_package.signing_share,
        lam * challenge % g.order,
    )
    return SignatureShare(key_package.identifier, z)
