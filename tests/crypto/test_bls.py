"""Threshold BLS: combination over random (n, t), py_ecc as the independent reference, and the
bad inputs of DESIGN §9 (duplicates, cheaters, identity, off-subgroup points, rogue keys)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_arkworks_bls12381 import G1Point, G2Point
from py_ecc.bls.ciphersuites import G2ProofOfPossession

from kmsnode.crypto import bls, shamir
from kmsnode.crypto.errors import (
    InvalidEncoding,
    InvalidParameters,
    InvalidPartial,
    InvalidProof,
    InvalidSignature,
    NotEnoughPartials,
)
from kmsnode.crypto.groups import BLS12_381_G1 as G1
from kmsnode.crypto.groups import BLS12_381_G2 as G2

from .test_group_bls12_381 import _g2_points

MSG = b"attest block 42"
PyEcc: Any = G2ProofOfPossession  # the reference; its NewType-typed API takes our bytes


class Key:
    """A dealt threshold key, as the DKG would leave it (secret kept only for the checks)."""

    def __init__(self, n: int, t: int) -> None:
        self.secret = G1.random_scalar()
        self.shares, _ = shamir.split(G1, self.secret, n, t)
        self.t = t
        self.public = G1.encode(G1.base_mul(self.secret))
        self.vks: dict[int, G1Point] = {s.id: G1.base_mul(s.value) for s in self.shares}


@pytest.fixture(scope="module")
def key43() -> Key:
    return Key(4, 3)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(data=st.data(), n=st.integers(1, 7), message=st.binary(max_size=40))
def test_any_t_partials_combine_to_the_key_signature(
    data: st.DataObject, n: int, message: bytes
) -> None:
    t = data.draw(st.integers(1, n), label="t")
    key = Key(n, t)
    chosen = data.draw(
        st.lists(st.sampled_from(key.shares), min_size=t, max_size=n, unique_by=lambda s: s.id)
    )
    partials = [bls.partial_sign(s, message) for s in chosen]
    random.Random(n).shuffle(partials)
    signature = bls.combine(partials, message, key.vks, t)
    bls.verify(key.public, message, signature)
    # The reconstructed secret signs the same bytes (BLS signatures are deterministic).
    assert signature == bls.sign(shamir.recover(G1, chosen, t), message)


def test_combined_signature_matches_py_ecc_byte_for_byte(key43: Key) -> None:
    partials = [bls.partial_sign(s, MSG) for s in key43.shares[1:]]
    signature = bls.combine(partials, MSG, key43.vks, key43.t)
    secret = shamir.recover(G1, key43.shares[:3], 3)
    assert signature == PyEcc.Sign(secret, MSG)
    assert PyEcc.Verify(key43.public, MSG, signature)
    assert PyEcc.SkToPk(secret) == key43.public


def test_fast_aggregate_verify_over_threshold_keys() -> None:
    keys = [Key(3, 2), Key(4, 3)]
    signatures, proofs = [], []
    for key in keys:
        partials = [bls.partial_sign(s, MSG) for s in key.shares]
        signatures.append(bls.combine(partials, MSG, key.vks, key.t))
        pop_partials = [bls.partial_prove_possession(s, key.public) for s in key.shares]
        proofs.append(bls.combine_possession(pop_partials, key.public, key.vks, key.t))
    aggregate = bls.aggregate(signatures)
    publics = [k.public for k in keys]
    assert PyEcc.FastAggregateVerify(publics, MSG, aggregate)
    bls.fast_aggregate_verify(publics, proofs, MSG, aggregate)
    with pytest.raises(InvalidSignature):
        bls.fast_aggregate_verify(publics, proofs, b"another message", aggregate)


# -- proofs of possession ------------------------------------------------------------------------


def test_proof_of_possession_matches_py_ecc(key43: Key) -> None:
    proof = bls.prove_possession(key43.secret)
    assert proof == PyEcc.PopProve(key43.secret)
    assert PyEcc.PopVerify(key43.public, proof)
    bls.verify_possession(key43.public, proof)
    # The threshold way gives the same proof, without the secret in one place.
    partials = [bls.partial_prove_possession(s, key43.public) for s in key43.shares]
    assert bls.combine_possession(partials, key43.public, key43.vks, 3) == proof


def test_proof_of_possession_is_domain_separated(key43: Key) -> None:
    """A signature of the key's bytes under the signature tag is not a proof of possession."""
    signature = bls.sign(key43.secret, key43.public)
    with pytest.raises(InvalidProof):
        bls.verify_possession(key43.public, signature)


def test_rogue_key_without_valid_proof_is_refused(key43: Key) -> None:
    """Mallory picks pk' = x*G - Y: without PoPs the 'aggregate' x*H(m) verifies for both."""
    x = G1.random_scalar()
    rogue = G1.encode(G1.sub(G1.base_mul(x), G1.decode(key43.public)))
    forged = bls.sign(x, MSG)
    assert PyEcc.FastAggregateVerify([key43.public, rogue], MSG, forged)  # the attack works...
    honest_proof = bls.prove_possession(key43.secret)
    for rogue_proof in (bls.prove_possession(x), honest_proof, bytes([0xC0]) + bytes(95)):
        with pytest.raises(InvalidProof, match="public key 1"):  # ...but not with us
            bls.fast_aggregate_verify(
                [key43.public, rogue], [honest_proof, rogue_proof], MSG, forged
            )


# -- partials: duplicates, cheaters, strangers -------------------------------------------------


def test_valid_partial_sent_twice_counts_once(key43: Key) -> None:
    p1, p2, p3 = (bls.partial_sign(s, MSG) for s in key43.shares[:3])
    with pytest.raises(NotEnoughPartials) as info:
        bls.combine([p1, p1, p2, p2], MSG, key43.vks, 3)
    assert (info.value.have, info.value.needed, info.value.culprits) == (2, 3, ())
    bls.verify(key43.public, MSG, bls.combine([p1, p1, p2, p3], MSG, key43.vks, 3))


def test_bad_partial_is_named_and_others_suffice(key43: Key) -> None:
    good = [bls.partial_sign(s, MSG) for s in key43.shares]
    bad = bls.partial_sign(key43.shares[1], b"something else")
    with pytest.raises(InvalidPartial) as single:
        bls.verify_partial(bad, key43.vks[2], MSG)
    assert single.value.culprits == (2,)
    with pytest.raises(NotEnoughPartials) as info:
        bls.combine([good[0], bad, good[2]], MSG, key43.vks, 3)
    assert info.value.culprits == (2,)
    # A retry with another node's partial succeeds; the cheater's later valid partial is fine too.
    bls.verify(key43.public, MSG, bls.combine([good[0], bad, good[2], good[3]], MSG, key43.vks, 3))


def test_the_unchecked_combination_is_the_signature_only_when_every_partial_is_good(
    key43: Key,
) -> None:
    good = [bls.partial_sign(s, MSG) for s in key43.shares]
    fast = bls.combine_unchecked(good[1:])
    assert fast == bls.combine(good[1:], MSG, key43.vks, 3)
    bls.verify(key43.public, MSG, fast)
    bad = bls.partial_sign(key43.shares[1], b"something else")
    with pytest.raises(InvalidSignature):
        bls.verify(key43.public, MSG, bls.combine_unchecked([good[0], bad, good[2]]))
    with pytest.raises(InvalidParameters):
        bls.combine_unchecked([good[0], good[0], good[2]])
    with pytest.raises(InvalidParameters):
        bls.combine_unchecked([])


def test_partial_from_outside_the_committee_is_named(key43: Key) -> None:
    outsider = bls.partial_sign(shamir.Share(9, 12345), MSG)
    good = [bls.partial_sign(s, MSG) for s in key43.shares[:2]]
    with pytest.raises(NotEnoughPartials) as info:
        bls.combine([outsider, *good], MSG, key43.vks, 3)
    assert info.value.culprits == (9,)


def test_partial_signed_with_another_share_is_refused(key43: Key) -> None:
    """Node 2 sending node 3's partial under its own id (a replay) does not verify."""
    p3 = bls.partial_sign(key43.shares[2], MSG)
    with pytest.raises(InvalidPartial):
        bls.verify_partial(bls.PartialSignature(2, p3.signature), key43.vks[2], MSG)


def test_partial_signature_encoding(key43: Key) -> None:
    p = bls.partial_sign(key43.shares[0], MSG)
    assert bls.PartialSignature.decode(p.encode()) == p
    with pytest.raises(InvalidEncoding):
        bls.PartialSignature.decode(b"\x00\x00" + p.encode()[2:])
    with pytest.raises(InvalidEncoding):
        bls.PartialSignature.decode(b"\x00\x01" + bytes([0xC0]) + bytes(95))  # identity
    with pytest.raises(InvalidEncoding):
        bls.PartialSignature.decode(p.encode()[:-1])


# -- keys and signatures that are not points of the subgroup -----------------------------------


def test_identity_public_key_and_signature_are_refused() -> None:
    identity_pk = bytes([0xC0]) + bytes(47)
    identity_sig = bytes([0xC0]) + bytes(95)
    with pytest.raises(InvalidSignature):
        bls.verify(identity_pk, MSG, identity_sig)  # the classic "0 == 0" forgery
    with pytest.raises(InvalidEncoding):
        bls.decode_public_key(identity_pk)
    with pytest.raises(InvalidParameters):
        bls.sign(0, MSG)


def test_signatures_off_the_subgroup_or_curve_are_refused(key43: Key) -> None:
    off_subgroup, off_curve = _g2_points()
    for bad in (off_subgroup, off_curve, b"\x00" * 96, b"\xff" * 96):
        with pytest.raises(InvalidSignature):
            bls.verify(key43.public, MSG, bad)
        with pytest.raises(InvalidEncoding):
            bls.PartialSignature.decode(b"\x00\x01" + bad)


def test_signature_plus_torsion_is_refused(key43: Key) -> None:
    """sigma + T for an off-subgroup T pairs the same way on some curves: must not verify."""
    off_subgroup, _ = _g2_points()
    signature = bls.sign(key43.secret, MSG)
    torsioned = (
        G2.decode(signature) + G2Point.from_compressed_bytes_unchecked(off_subgroup)
    ).to_compressed_bytes()
    with pytest.raises(InvalidSignature):
        bls.verify(key43.public, MSG, bytes(torsioned))


def test_wrong_message_or_key_is_refused(key43: Key) -> None:
    signature = bls.sign(key43.secret, MSG)
    with pytest.raises(InvalidSignature):
        bls.verify(key43.public, MSG + b"!", signature)
    with pytest.raises(InvalidSignature):
        bls.verify(G1.encode(G1.base_mul(7)), MSG, signature)
