"""TDH2 threshold encryption: round trips, CCA checks, partial verification, bad inputs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmsnode.crypto import feldman, shamir, tdh2
from kmsnode.crypto.errors import (
    InvalidCiphertext,
    InvalidEncoding,
    InvalidParameters,
    InvalidProof,
    NotEnoughPartials,
)
from kmsnode.crypto.groups import RISTRETTO255 as G
from kmsnode.crypto.shamir import Share
from kmsnode.crypto.tdh2 import PartialDecryption

CTX = {"app": "billing", "tenant": "42"}


class Key:
    """A dealt test key: shares, public key and verification keys."""

    def __init__(self, n: int = 4, t: int = 3) -> None:
        self.n, self.t = n, t
        self.shares, coeffs = shamir.split(G, G.random_scalar(), n, t)
        commitments = feldman.commit(G, coeffs)
        self.public = commitments[0]
        self.vks = feldman.verification_keys(G, commitments, range(1, n + 1))

    def encrypt(self, pt: bytes = b"attack at dawn", ctx: dict[str, str] | None = CTX) -> bytes:
        return tdh2.encrypt(self.public, pt, key_id="key-1", key_version=2, context=ctx)

    def partials(
        self, ct: bytes, ctx: dict[str, str] | None = CTX
    ) -> list[PartialDecryption[bytes]]:
        return [tdh2.partial_decrypt(s, self.public, ct, ctx) for s in self.shares]


@pytest.fixture(scope="module")
def key() -> Key:
    return Key()


def test_round_trip_with_context(key: Key) -> None:
    ct = key.encrypt()
    pt, culprits = tdh2.combine(key.public, ct, key.partials(ct), key.vks, key.t, CTX)
    assert pt == b"attack at dawn"
    assert culprits == ()


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 6), data=st.data(), pt=st.binary(max_size=200))
def test_any_t_partials_decrypt(n: int, data: st.DataObject, pt: bytes) -> None:
    t = data.draw(st.integers(1, n))
    k = Key(n, t)
    ct = k.encrypt(pt, None)
    chosen = data.draw(st.permutations(k.shares))[:t]
    partials = [tdh2.partial_decrypt(s, k.public, ct) for s in chosen]
    assert tdh2.combine(k.public, ct, partials, k.vks, t)[0] == pt


def test_ciphertext_is_self_describing(key: Key) -> None:
    parsed = tdh2.parse(key.encrypt())
    assert (parsed.key_id, parsed.key_version) == ("key-1", 2)
    assert parsed.raw[0] == tdh2.FORMAT_VERSION


@pytest.mark.parametrize(
    "ctx",
    [
        None,
        {"app": "billing"},
        {"app": "Billing", "tenant": "42"},
        {"APP": "billing", "tenant": "42"},
        {**CTX, "extra": "1"},
    ],
)
def test_wrong_or_case_changed_context_is_opaque_and_gets_no_partial(
    key: Key, ctx: dict[str, str] | None
) -> None:
    ct = key.encrypt()
    with pytest.raises(InvalidCiphertext) as info:
        tdh2.partial_decrypt(key.shares[0], key.public, ct, ctx)
    assert str(info.value) == "invalid ciphertext"
    with pytest.raises(InvalidCiphertext):
        tdh2.combine(key.public, ct, key.partials(ct), key.vks, key.t, ctx)


def test_every_flipped_byte_is_rejected_before_any_partial(key: Key) -> None:
    ct = key.encrypt(b"x" * 20)
    for pos in range(len(ct)):
        tampered = bytearray(ct)
        tampered[pos] ^= 0x01
        with pytest.raises(InvalidCiphertext):
            tdh2.partial_decrypt(key.shares[0], key.public, bytes(tampered), CTX)


def test_swapped_parts_rejected(key: Key) -> None:
    ct = key.encrypt()
    parsed = tdh2.parse(ct)
    header = parsed.header
    body = ct[len(header) :]
    u, ubar, rest = body[:32], body[32:64], body[64:]
    e, f = rest[:32], rest[32:64]
    variants = [
        header + ubar + u + rest,  # u and ū swapped
        header + u + ubar + f + e + rest[64:],  # e and f swapped
        header + u + ubar + rest[:64] + rest[64:][::-1],  # body reversed
    ]
    for v in variants:
        with pytest.raises(InvalidCiphertext):
            tdh2.partial_decrypt(key.shares[0], key.public, v, CTX)


def test_ciphertext_for_another_key_or_version_rejected(key: Key) -> None:
    other = Key()
    ct = key.encrypt()
    with pytest.raises(InvalidCiphertext):
        tdh2.partial_decrypt(other.shares[0], other.public, ct, CTX)
    # Re-labelling a ciphertext with another key version breaks the proof.
    parsed = tdh2.parse(ct)
    relabelled = replace(parsed, key_version=3).header + ct[len(parsed.header) :]
    with pytest.raises(InvalidCiphertext):
        tdh2.partial_decrypt(key.shares[0], key.public, relabelled, CTX)


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x02\x01\x01k", b"\x01\x09\x01k" + bytes(200)])
def test_malformed_ciphertexts(key: Key, data: bytes) -> None:
    with pytest.raises(InvalidCiphertext):
        tdh2.partial_decrypt(key.shares[0], key.public, data, CTX)


@pytest.mark.parametrize("optimistic", [True, False])
def test_bad_partial_is_named_and_others_suffice(key: Key, optimistic: bool) -> None:
    ct = key.encrypt()
    partials = key.partials(ct)
    bad = replace(partials[1], value=G.base_mul(5))
    pt, culprits = tdh2.combine(
        key.public, ct, [bad, *partials[2:], partials[0]], key.vks, 3, CTX, optimistic=optimistic
    )
    assert pt == b"attack at dawn"
    assert culprits == (2,)


@pytest.mark.parametrize("optimistic", [True, False])
def test_not_enough_valid_partials_names_culprits(key: Key, optimistic: bool) -> None:
    ct = key.encrypt()
    partials = key.partials(ct)
    bad = replace(partials[1], value=G.base_mul(5))
    with pytest.raises(NotEnoughPartials) as info:
        tdh2.combine(
            key.public, ct, [partials[0], bad, partials[2]], key.vks, 3, CTX, optimistic=optimistic
        )
    assert info.value.culprits == (2,)
    assert (info.value.have, info.value.needed) == (2, 3)


def test_wrong_context_blames_no_node_on_the_slow_path(key: Key) -> None:
    ct = key.encrypt()
    with pytest.raises(InvalidCiphertext):
        tdh2.combine(key.public, ct, key.partials(ct), key.vks, 3, {"app": "other"})


def test_colluding_partials_that_cancel_still_give_the_right_plaintext(key: Key) -> None:
    # Two bad partials whose errors cancel in the Lagrange sum: the optimistic path returns the
    # (correct, authenticated) plaintext; correctness never depends on the proofs.
    ct = key.encrypt()
    p = key.partials(ct)[:3]
    lam = shamir.lagrange_coefficients([1, 2, 3], G.order)
    delta = G.base_mul(99)
    p1 = replace(p[0], value=G.add(p[0].value, G.mul(delta, pow(lam[1], -1, G.order))))
    p2 = replace(p[1], value=G.sub(p[1].value, G.mul(delta, pow(lam[2], -1, G.order))))
    assert tdh2.combine(key.public, ct, [p1, p2, p[2]], key.vks, 3, CTX)[0] == b"attack at dawn"
    with pytest.raises(NotEnoughPartials):
        tdh2.combine(key.public, ct, [p1, p2, p[2]], key.vks, 3, CTX, optimistic=False)


def test_valid_partial_counted_once(key: Key) -> None:
    ct = key.encrypt()
    p = key.partials(ct)
    with pytest.raises(NotEnoughPartials):
        tdh2.combine(key.public, ct, [p[0], p[0], p[1]], key.vks, 3, CTX)


def test_partial_from_outside_committee(key: Key) -> None:
    ct = key.encrypt()
    p = key.partials(ct)
    outsider = tdh2.partial_decrypt(Share(9, 12345), key.public, ct, CTX)
    with pytest.raises(NotEnoughPartials) as info:
        tdh2.combine(key.public, ct, [p[0], p[1], outsider], key.vks, 3, CTX)
    assert info.value.culprits == (9,)


def test_partial_replayed_for_another_participant_or_ciphertext(key: Key) -> None:
    ct1, ct2 = key.encrypt(), key.encrypt()
    p1 = key.partials(ct1)
    with pytest.raises(InvalidProof):
        tdh2.verify_partial(replace(p1[0], id=2), key.vks[2], ct1, CTX)
    with pytest.raises(InvalidProof):
        tdh2.verify_partial(p1[0], key.vks[1], ct2, CTX)


def test_partial_encoding_round_trip_and_strictness(key: Key) -> None:
    ct = key.encrypt()
    p = key.partials(ct)[0]
    assert PartialDecryption.decode(G, p.encode(G)) == p
    raw = p.encode(G)
    for bad in (raw[:-1], b"\x00\x00" + raw[2:], raw[:2] + bytes(32) + raw[34:]):
        with pytest.raises(InvalidEncoding):
            PartialDecryption.decode(G, bad)


def test_bad_encrypt_inputs(key: Key) -> None:
    with pytest.raises(InvalidParameters):
        tdh2.encrypt(key.public, b"x", key_id="", key_version=1)
    with pytest.raises(InvalidParameters):
        tdh2.encrypt(key.public, b"x", key_id="k" * 300, key_version=1)
    with pytest.raises(InvalidParameters):
        tdh2.encrypt(key.public, b"x", key_id="k", key_version=-1)
    with pytest.raises(InvalidEncoding):
        tdh2.encrypt(G.identity(), b"x", key_id="k", key_version=1)
    with pytest.raises(InvalidEncoding):
        tdh2.encrypt(b"\xff" * 32, b"x", key_id="k", key_version=1)


def test_checked_ciphertext_gives_the_same_verifiable_partial(key: Key) -> None:
    ct = key.encrypt()
    valid = tdh2.check(key.public, tdh2.parse(ct), CTX)
    partial = tdh2.partial_decrypt_valid(key.shares[0], valid)
    tdh2.verify_partial(partial, key.vks[1], ct, CTX)
    partials = [partial] + [tdh2.partial_decrypt_valid(s, valid) for s in key.shares[1:3]]
    assert tdh2.combine(key.public, ct, partials, key.vks, 3, CTX)[0] == b"attack at dawn"
