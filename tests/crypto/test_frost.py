"""FROST(Ed25519, SHA-512): sessions over random (n, t), and every bad input a signer or
coordinator can be handed (DESIGN §9)."""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto import frost
from kmsnode.crypto.errors import (
    InvalidEncoding,
    InvalidParameters,
    InvalidPartial,
    NonceReuse,
    NotEnoughPartials,
)
from kmsnode.crypto.frost import FROST_ED25519_SHA512 as SUITE
from kmsnode.crypto.frost import KeyPackage, PublicKeyPackage, SigningNonces, SigningPackage
from kmsnode.crypto.groups.ed25519 import verify_signature

G = SUITE.group
MSG = b"transfer 10 to alice"

Keys = tuple[list[KeyPackage[bytes]], PublicKeyPackage[bytes]]


def _keys(n: int, t: int) -> Keys:
    return frost.split(SUITE, G.random_scalar(), n, t)


def _round1(
    keys: Sequence[KeyPackage[bytes]], signers: Sequence[int], message: bytes = MSG
) -> tuple[dict[int, SigningNonces[bytes]], SigningPackage[bytes]]:
    by_id = {k.identifier: k for k in keys}
    nonces, commitments = {}, []
    for i in sorted(signers):
        n, c = frost.commit(SUITE, by_id[i])
        nonces[i] = n
        commitments.append(c)
    return nonces, SigningPackage(tuple(commitments), message)


def _round2(
    keys: Sequence[KeyPackage[bytes]],
    nonces: dict[int, SigningNonces[bytes]],
    package: SigningPackage[bytes],
) -> list[frost.SignatureShare]:
    by_id = {k.identifier: k for k in keys}
    return [frost.sign(SUITE, package, nonces[i], by_id[i], package.message) for i in nonces]


def _check_ed25519(public: PublicKeyPackage[bytes], message: bytes, signature: bytes) -> None:
    pk = G.encode(public.group_public_key)
    Ed25519PublicKey.from_public_bytes(pk).verify(signature, message)  # OpenSSL
    assert verify_signature(pk, message, signature)  # libsodium


@pytest.fixture(scope="module")
def keys43() -> Keys:
    return _keys(4, 3)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(data=st.data(), n=st.integers(1, 7), message=st.binary(max_size=64))
def test_any_t_signers_of_any_n_produce_an_ed25519_signature(
    data: st.DataObject, n: int, message: bytes
) -> None:
    t = data.draw(st.integers(1, n), label="t")
    signers = data.draw(
        st.lists(st.integers(1, n), min_size=t, max_size=n, unique=True), label="signers"
    )
    keys, public = _keys(n, t)
    nonces, package = _round1(keys, signers, message)
    shares = _round2(keys, nonces, package)
    random.Random(len(message)).shuffle(shares)
    for share in shares:
        frost.verify_signature_share(SUITE, package, share, public)
    signature = frost.aggregate(SUITE, package, shares, public)
    _check_ed25519(public, message, signature)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 6), data=st.data())
def test_wire_types_round_trip(n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    keys, public = _keys(n, t)
    assert PublicKeyPackage.decode(SUITE, public.encode(SUITE)) == public
    for k in keys:
        assert KeyPackage.decode(SUITE, k.encode(SUITE)) == k
    nonces, package = _round1(keys, range(1, n + 1))
    assert SigningPackage.decode(SUITE, package.encode(SUITE)) == package
    for c in package.commitments:
        assert frost.SigningCommitments.decode(SUITE, c.encode(SUITE)) == c
    for s in _round2(keys, nonces, package):
        assert frost.SignatureShare.decode(SUITE, s.encode(SUITE)) == s


# -- round one: nonces --------------------------------------------------------------------------


def test_nonce_reuse_is_refused(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    frost.sign(SUITE, package, nonces[1], keys[0], MSG)
    assert nonces[1].used
    with pytest.raises(NonceReuse):
        frost.sign(SUITE, package, nonces[1], keys[0], MSG)
    # Even for another message and package: the nonce is gone.
    _, other = _round1(keys, [1, 2, 3], b"another message")
    other = SigningPackage(
        tuple(nonces[1].commitments if c.identifier == 1 else c for c in other.commitments),
        b"another message",
    )
    with pytest.raises(NonceReuse):
        frost.sign(SUITE, other, nonces[1], keys[0], b"another message")


def test_nonces_are_redacted_and_cannot_be_copied(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, _ = frost.commit(SUITE, keys[0])
    hiding, binding = nonces._hiding, nonces._binding
    text = repr(nonces) + repr(keys[0])
    assert str(hiding) not in text and str(binding) not in text
    assert str(keys[0].signing_share) not in text and "redacted" in text
    with pytest.raises(TypeError):
        copy.copy(nonces)
    with pytest.raises(TypeError):
        pickle.dumps(nonces)


def test_hedged_nonces_differ_under_a_stuck_rng(keys43: Keys) -> None:
    """A broken RNG returning zeros still gives per-share nonces (the share is hashed in)."""
    keys, _ = keys43

    def stuck(n: int) -> bytes:
        return bytes(n)

    a, _ = frost.commit(SUITE, keys[0], stuck)
    b, _ = frost.commit(SUITE, keys[1], stuck)
    assert a.take() != b.take()


# -- round two: signing-package checks -----------------------------------------------------------


def test_package_missing_own_commitment_is_refused_and_nonce_kept(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3, 4])
    without_me = SigningPackage(
        tuple(c for c in package.commitments if c.identifier != 1), package.message
    )
    with pytest.raises(InvalidParameters, match="does not list signer 1"):
        frost.sign(SUITE, without_me, nonces[1], keys[0], MSG)
    assert not nonces[1].used  # nothing computed: the nonce may still be used once
    frost.sign(SUITE, package, nonces[1], keys[0], MSG)


@pytest.mark.parametrize("how", ["hiding", "binding", "swapped"])
def test_package_altering_own_commitment_is_refused(keys43: Keys, how: str) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    mine = package.commitments[0]
    other = G.base_mul(G.random_scalar())
    altered = {
        "hiding": replace(mine, hiding=other),
        "binding": replace(mine, binding=other),
        "swapped": replace(mine, hiding=mine.binding, binding=mine.hiding),
    }[how]
    bad = SigningPackage((altered, *package.commitments[1:]), MSG)
    with pytest.raises(InvalidParameters, match="alters the commitments of signer 1"):
        frost.sign(SUITE, bad, nonces[1], keys[0], MSG)
    assert not nonces[1].used


def test_package_listing_a_signer_twice_is_refused(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    c = package.commitments
    twice = SigningPackage((c[0], c[1], c[1], c[2]), MSG)
    with pytest.raises(InvalidParameters, match="signer 2 twice"):
        frost.sign(SUITE, twice, nonces[1], keys[0], MSG)
    with pytest.raises(InvalidEncoding, match="twice"):
        SigningPackage.decode(SUITE, twice.encode(SUITE))
    # Twice with *different* commitments is refused the same way.
    _, fresh = _round1(keys, [2])
    twice_different = SigningPackage((c[0], c[1], fresh.commitments[0], c[2]), MSG)
    with pytest.raises(InvalidParameters, match="signer 2 twice"):
        frost.sign(SUITE, twice_different, nonces[1], keys[0], MSG)


def test_unsorted_package_is_refused(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    c = package.commitments
    with pytest.raises(InvalidParameters, match="not sorted"):
        frost.sign(SUITE, SigningPackage((c[1], c[0], c[2]), MSG), nonces[1], keys[0], MSG)


def test_package_below_threshold_is_refused(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2])
    with pytest.raises(InvalidParameters, match="threshold is 3"):
        frost.sign(SUITE, package, nonces[1], keys[0], MSG)


def test_package_with_another_message_is_refused(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3], b"pay mallory")
    with pytest.raises(InvalidParameters, match="another message"):
        frost.sign(SUITE, package, nonces[1], keys[0], MSG)


def test_nonces_of_another_signer_are_refused(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    with pytest.raises(InvalidParameters, match="belong to signer 2"):
        frost.sign(SUITE, package, nonces[2], keys[0], MSG)


def test_identity_or_invalid_commitments_are_refused(keys43: Keys) -> None:
    keys, _ = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    c = package.commitments
    bad = SigningPackage((c[0], replace(c[1], binding=G.identity()), c[2]), MSG)
    with pytest.raises(InvalidParameters, match="identity"):
        frost.sign(SUITE, bad, nonces[1], keys[0], MSG)
    with pytest.raises(InvalidEncoding):
        SigningPackage.decode(SUITE, bad.encode(SUITE))
    # A small-order point in a commitment on the wire.
    enc = bytearray(c[1].encode(SUITE))
    enc[2:34] = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
    with pytest.raises(InvalidEncoding):
        frost.SigningCommitments.decode(SUITE, bytes(enc))
    with pytest.raises(InvalidEncoding):
        frost.SigningCommitments.decode(SUITE, b"\x00\x00" + enc[2:])  # identifier 0


def test_non_canonical_signature_share_is_refused() -> None:
    with pytest.raises(InvalidEncoding):
        frost.SignatureShare.decode(SUITE, b"\x00\x01" + G.order.to_bytes(32, "little"))


def test_key_package_with_a_wrong_share_is_refused(keys43: Keys) -> None:
    keys, _ = keys43
    forged = replace(keys[0], signing_share=keys[0].signing_share + 1)
    with pytest.raises(InvalidEncoding, match="does not match"):
        KeyPackage.decode(SUITE, forged.encode(SUITE))


# -- aggregation: culprits, duplicates, retries ---------------------------------------------------


def test_bad_share_is_named_and_a_retry_without_it_succeeds(keys43: Keys) -> None:
    keys, public = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    shares = _round2(keys, nonces, package)
    cheat = replace(shares[1], share=(shares[1].share + 1) % G.order)
    with pytest.raises(InvalidPartial) as info:
        frost.aggregate(SUITE, package, [shares[0], cheat, shares[2]], public)
    assert info.value.culprits == (2,)
    with pytest.raises(InvalidPartial) as single:
        frost.verify_signature_share(SUITE, package, cheat, public)
    assert single.value.culprits == (2,)
    # A new session without signer 2.
    nonces, package = _round1(keys, [1, 3, 4])
    signature = frost.aggregate(SUITE, package, _round2(keys, nonces, package), public)
    _check_ed25519(public, MSG, signature)


def test_share_sent_twice_counts_once(keys43: Keys) -> None:
    keys, public = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    shares = _round2(keys, nonces, package)
    signature = frost.aggregate(SUITE, package, [*shares, shares[0], shares[2]], public)
    _check_ed25519(public, MSG, signature)


def test_conflicting_duplicate_keeps_the_valid_share(keys43: Keys) -> None:
    keys, public = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    shares = _round2(keys, nonces, package)
    forged = replace(shares[0], share=(shares[0].share + 5) % G.order)
    for order in ([forged, *shares], [*shares, forged]):
        _check_ed25519(public, MSG, frost.aggregate(SUITE, package, order, public))


def test_missing_share_is_reported(keys43: Keys) -> None:
    keys, public = keys43
    nonces, package = _round1(keys, [1, 2, 3])
    shares = _round2(keys, nonces, package)
    stray = frost.SignatureShare(4, 1)
    with pytest.raises(NotEnoughPartials) as info:
        frost.aggregate(SUITE, package, [shares[0], shares[2], stray], public)
    assert (info.value.have, info.value.needed, info.value.culprits) == (2, 3, (4,))


def test_two_signatures_with_fresh_nonces_differ(keys43: Keys) -> None:
    keys, public = keys43
    sigs = set()
    for _ in range(2):
        nonces, package = _round1(keys, [2, 3, 4])
        sigs.add(frost.aggregate(SUITE, package, _round2(keys, nonces, package), public))
    assert len(sigs) == 2
