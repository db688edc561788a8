"""The connection vouch: a client key's signature over its own peer id, on one chain."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kmsnode.net import NetworkIdentity
from kmsnode.wire.vouch import VOUCH_SIZE, sign_vouch, vouch_valid

CHAIN = "kms-test"


def test_a_vouch_is_good_for_its_own_peer_chain_and_key_only() -> None:
    key = Ed25519PrivateKey.generate()
    client = key.public_key().public_bytes_raw()
    me, other = NetworkIdentity.generate().peer_id_str, NetworkIdentity.generate().peer_id_str
    vouch = sign_vouch(key, CHAIN, me)
    assert len(vouch) == VOUCH_SIZE
    assert vouch_valid(client, vouch, CHAIN, me)
    # Sent again from another connection (a replay by whoever saw it): not valid there.
    assert not vouch_valid(client, vouch, CHAIN, other)
    assert not vouch_valid(client, vouch, "another-chain", me)
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert not vouch_valid(stranger, vouch, CHAIN, me)
    flipped = bytes([vouch[0] ^ 1]) + vouch[1:]
    assert not vouch_valid(client, flipped, CHAIN, me)


@pytest.mark.parametrize(
    "vouch", [None, b"", b"\x00" * 63, b"\x00" * 64, b"\xff" * 64, "x" * 64, 64, [b"\x00"] * 64]
)
def test_malformed_vouches_are_simply_not_valid(vouch: object) -> None:
    client = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert not vouch_valid(client, vouch, CHAIN, NetworkIdentity.generate().peer_id_str)


def test_a_malformed_client_key_is_not_valid() -> None:
    key = Ed25519PrivateKey.generate()
    peer = NetworkIdentity.generate().peer_id_str
    vouch = sign_vouch(key, CHAIN, peer)
    for client in (b"", b"\x00" * 31, b"\x00" * 32, b"\x01" + b"\x00" * 31):
        assert not vouch_valid(client, vouch, CHAIN, peer)
