"""FROST threshold Schnorr signatures (RFC 9591), generic over a ciphersuite.

The modules follow the protocol: ``round1`` (nonces and commitments), ``round2`` (signing
package checks and signature shares), ``aggregate`` (share verification naming culprits, and
aggregation). ``FROST_ED25519_SHA512`` is the suite we run: its signatures are ordinary
Ed25519 signatures.
"""

from __future__ import annotations

from .aggregate import aggregate as aggregate
from .aggregate import verify_signature_share as verify_signature_share
from .ciphersuite import FROST_ED25519_SHA512 as FROST_ED25519_SHA512
from .ciphersuite import Ciphersuite as Ciphersuite
from .ciphersuite import Ed25519Sha512 as Ed25519Sha512
from .keys import KeyPackage as KeyPackage
from .keys import PublicKeyPackage as PublicKeyPackage
from .keys import split as split
from .round1 import SigningCommitments as SigningCommitments
from .round1 import SigningNonces as SigningNonces
from .round1 import commit as commit
from .round2 import SignatureShare as SignatureShare
from .round2 import SigningPackage as SigningPackage
from .round2 import sign as sign

__all__ = [
    "FROST_ED25519_SHA512",
    "Ciphersuite",
    "Ed25519Sha512",
    "KeyPackage",
    "PublicKeyPackage",
    "SignatureShare",
    "SigningCommitments",
    "SigningNonces",
    "SigningPackage",
    "aggregate",
    "commit",
    "sign",
    "split",
    "verify_signature_share",
]
