"""FROST signature-share verification and aggregation (RFC 9591 §5.3, §5.4).

Aggregation takes the optimistic path the RFC allows: sum the shares, then verify the result
as an ordinary signature (one verification instead of one per signer). Only when that fails
is every share checked, so the error names exactly the signers whose shares are wrong; a new
signing session without them then succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from ..errors import InvalidParameters, InvalidPartial, InvalidSignature, NotEnoughPartials
from ..shamir import lagrange_coefficients
from .ciphersuite import Ciphersuite
from .keys import PublicKeyPackage
from .round2 import (
    SignatureShare,
    SigningPackage,
    compute_binding_factors,
    compute_challenge,
    compute_group_commitment,
)

E = TypeVar("E")


class _Context(Generic[E]):
    """The values every share check of one package shares (computed once)."""

    def __init__(
        self, suite: Ciphersuite[E], package: SigningPackage[E], public: PublicKeyPackage[E]
    ) -> None:
        g = suite.group
        self.binding_factors = compute_binding_factors(suite, public.group_public_key, package)
        self.group_commitment = compute_group_commitment(suite, package, self.binding_factors)
        self.challenge = compute_challenge(
            suite, self.group_commitment, public.group_public_key, package.message
        )
        self.lambdas = lagrange_coefficients(package.signers, g.order)


def _share_ok(
    suite: Ciphersuite[E],
    package: SigningPackage[E],
    public: PublicKeyPackage[E],
    ctx: _Context[E],
    share: SignatureShare,
) -> bool:
    """RFC 9591 §5.4: ``z_i * G == D_i + rho_i * E_i + (c * lambda_i) * Y_i``."""
    g = suite.group
    i = share.identifier
    commitments = package.commitments_of(i)
    vk = public.verification_keys.get(i)
    if commitments is None or vk is None:
        return False
    rhs = g.add(
        commitments.hiding,
        g.lincomb(
            [commitments.binding, vk],
            [ctx.binding_factors[i], ctx.challenge * ctx.lambdas[i] % g.order],
        ),
    )
    return g.eq(g.base_mul(share.share), rhs)


def verify_signature_share(
    suite: Ciphersuite[E],
    package: SigningPackage[E],
    share: SignatureShare,
    public: PublicKeyPackage[E],
) -> None:
    """Check one signer's share against its verification key and commitments.

    Raises:
        InvalidParameters: the package is malformed.
        InvalidPartial: the share does not verify (or its signer is not in the package or the
            key); ``culprits`` names the signer.
    """
    package.check(suite)
    ctx = _Context(suite, package, public)
    if not _share_ok(suite, package, public, ctx, share):
        raise InvalidPartial("FROST signature share does not verify", [share.identifier])


def aggregate(
    suite: Ciphersuite[E],
    package: SigningPackage[E],
    shares: Iterable[SignatureShare],
    public: PublicKeyPackage[E],
) -> bytes:
    """RFC 9591 §5.3 ``aggregate``: the group's signature from every listed signer's share.

    A share repeated with the same value counts once. A share from a signer the package does
    not list, and the invalid copy of a signer's two different shares, are set aside; they are
    reported (as culprits) only if the signature cannot be completed. The result is verified
    before it is returned, so a returned signature is always valid under
    ``public.group_public_key``.

    Raises:
        InvalidParameters: the package is malformed or lists fewer than ``min_signers``.
        NotEnoughPartials: a listed signer's share is missing (``culprits``: the senders of
            shares that were invalid or not asked for).
        InvalidPartial: some shares are wrong; ``culprits`` names their signers. Run a new
            session without them.
    """
    g = suite.group
    package.check(suite)
    signers = package.signers
    if len(signers) < public.min_signers:
        raise InvalidParameters(
            f"FROST signing package lists {len(signers)} signers, the threshold is "
            f"{public.min_signers}"
        )
    ctx: _Context[E] | None = None
    by_signer: dict[int, SignatureShare] = {}
    culprits: set[int] = set()
    for share in shares:
        i = share.identifier
        if i not in signers:
            culprits.add(i)  # a share nobody asked for
            continue
        known = by_signer.get(i)
        if known is None or known.share == share.share:
            by_signer[i] = share
            continue
        # Two different shares claimed for one signer: keep the one that verifies, if any.
        ctx = ctx or _Context(suite, package, public)
        if not _share_ok(suite, package, public, ctx, known):
            by_signer[i] = share
        culprits.add(i)
    missing = [i for i in signers if i not in by_signer]
    if missing:
        raise NotEnoughPartials(len(by_signer), len(signers), culprits)

    ctx = ctx or _Context(suite, package, public)
    z = sum(by_signer[i].share for i in signers) % g.order
    signature = suite.encode_signature(ctx.group_commitment, z)
    if suite.verify(public.group_public_key, package.message, signature):
        return signature
    bad = [i for i in signers if not _share_ok(suite, package, public, ctx, by_signer[i])]
    if bad:
        raise InvalidPartial("FROST signature shares do not verify", bad)
    raise InvalidSignature()  # every share verifies, yet the sum does not: inconsistent keys
