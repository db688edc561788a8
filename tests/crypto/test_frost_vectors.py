"""FROST(Ed25519, SHA-512) against RFC 9591 Appendix E.1: every intermediate value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kmsnode.crypto import frost, shamir
from kmsnode.crypto.frost import FROST_ED25519_SHA512 as SUITE
from kmsnode.crypto.frost.round2 import (
    binding_factor_inputs,
    compute_binding_factors,
)
from kmsnode.crypto.groups.ed25519 import verify_signature

VECTORS = Path(__file__).parent.parent / "vectors" / "frost-ed25519-sha512.json"
G = SUITE.group


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def _scalar(hexstr: str) -> int:
    return G.decode_scalar(bytes.fromhex(hexstr))


def _replay(chunks: list[bytes]) -> Any:
    """An RNG that returns the vector's randomness in order."""
    it: Iterator[bytes] = iter(chunks)

    def rng(n: int) -> bytes:
        out = next(it)
        assert len(out) == n
        return out

    return rng


def test_config(vectors: dict[str, Any]) -> None:
    assert vectors["config"]["name"] == SUITE.name


def test_key_material(vectors: dict[str, Any]) -> None:
    inputs = vectors["inputs"]
    secret = _scalar(inputs["group_secret_key"])
    assert G.encode(G.base_mul(secret)).hex() == inputs["group_public_key"]
    coefficients = [secret] + [_scalar(c) for c in inputs["share_polynomial_coefficients"]]
    for entry in inputs["participant_shares"]:
        value = shamir.evaluate(coefficients, entry["identifier"], G.order)
        assert G.encode_scalar(value).hex() == entry["participant_share"]


def test_every_intermediate_value(vectors: dict[str, Any]) -> None:
    inputs = vectors["inputs"]
    pk = G.decode(bytes.fromhex(inputs["group_public_key"]))
    message = bytes.fromhex(inputs["message"])
    t = int(vectors["config"]["MIN_PARTICIPANTS"])
    shares = {
        e["identifier"]: _scalar(e["participant_share"]) for e in inputs["participant_shares"]
    }
    keys = {i: frost.KeyPackage(i, s, G.base_mul(s), pk, t) for i, s in shares.items()}
    public = frost.PublicKeyPackage({i: k.verification_key for i, k in keys.items()}, pk, t)

    # Round one: hedged nonces from the vector's randomness, and their commitments.
    nonces = {}
    commitments = []
    for out in vectors["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        rng = _replay(
            [
                bytes.fromhex(out["hiding_nonce_randomness"]),
                bytes.fromhex(out["binding_nonce_randomness"]),
            ]
        )
        n, c = frost.commit(SUITE, keys[i], rng)
        assert n.take() == (_scalar(out["hiding_nonce"]), _scalar(out["binding_nonce"]))
        assert G.encode(c.hiding).hex() == out["hiding_nonce_commitment"]
        assert G.encode(c.binding).hex() == out["binding_nonce_commitment"]
        # Fresh, unused nonces with the same values for round two.
        n2, c2 = frost.commit(
            SUITE,
            keys[i],
            _replay(
                [
                    bytes.fromhex(out["hiding_nonce_randomness"]),
                    bytes.fromhex(out["binding_nonce_randomness"]),
                ]
            ),
        )
        nonces[i] = n2
        commitments.append(c2)
    assert [c.identifier for c in commitments] == inputs["participant_list"]

    package = frost.SigningPackage(tuple(commitments), message)
    rho_inputs = binding_factor_inputs(SUITE, pk, package)
    rhos = compute_binding_factors(SUITE, pk, package)
    for out in vectors["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        assert rho_inputs[i].hex() == out["binding_factor_input"]
        assert G.encode_scalar(rhos[i]).hex() == out["binding_factor"]

    # Round two: signature shares.
    sig_shares = []
    for out in vectors["round_two_outputs"]["outputs"]:
        i = out["identifier"]
        share = frost.sign(SUITE, package, nonces[i], keys[i], message)
        assert share.encode(SUITE)[2:].hex() == out["sig_share"]
        frost.verify_signature_share(SUITE, package, share, public)
        sig_shares.append(share)

    # Aggregation: the RFC's signature, valid for OpenSSL and libsodium.
    signature = frost.aggregate(SUITE, package, sig_shares, public)
    assert signature.hex() == vectors["final_output"]["sig"]
    Ed25519PublicKey.from_public_bytes(G.encode(pk)).verify(signature, message)
    assert verify_signature(G.encode(pk), message, signature)
