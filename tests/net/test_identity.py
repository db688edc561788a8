"""Node identities and the committee: peer ids derived from Ed25519 keys, genesis checks."""

from __future__ import annotations

import base58
import pytest

from kmsnode.net import (
    Committee,
    CommitteeError,
    IdentityError,
    Member,
    NetworkIdentity,
    NodeId,
    UnknownNode,
    parse_peer_id,
    peer_id_from_public_key,
)
from kmsnode.net.identity import public_key_of

SEED = bytes(range(32))


def manual_peer_id(public_key: bytes) -> str:
    """The libp2p peer-id spec, by hand: identity multihash of the protobuf PublicKey."""
    proto = b"\x08\x01\x12\x20" + public_key  # KeyType=Ed25519 (1), Data=32 bytes
    return base58.b58encode(b"\x00" + bytes([len(proto)]) + proto).decode()


def test_identity_from_private_bytes_is_deterministic() -> None:
    a = NetworkIdentity.from_private_bytes(SEED)
    b = NetworkIdentity.from_private_bytes(SEED)
    assert a.peer_id == b.peer_id
    assert a.public_key == public_key_of(SEED)  # agrees with OpenSSL
    assert a.peer_id_str.startswith("12D3KooW")


def test_peer_id_matches_spec_and_public_key() -> None:
    ident = NetworkIdentity.from_private_bytes(SEED)
    assert peer_id_from_public_key(ident.public_key) == ident.peer_id_str
    assert manual_peer_id(ident.public_key) == ident.peer_id_str
    assert parse_peer_id(ident.peer_id_str) == ident.peer_id


def test_repr_hides_the_key() -> None:
    ident = NetworkIdentity.from_private_bytes(SEED)
    assert SEED.hex() not in repr(ident) and "peer_id" in repr(ident)


@pytest.mark.parametrize("key", [b"", b"x" * 31, b"x" * 33, b"x" * 64])
def test_bad_private_key_lengths(key: bytes) -> None:
    with pytest.raises(IdentityError):
        NetworkIdentity.from_private_bytes(key)


def test_bad_public_keys() -> None:
    with pytest.raises(IdentityError):
        peer_id_from_public_key(b"\x01" * 31)
    with pytest.raises(IdentityError):
        parse_peer_id("not-a-peer-id!")


def members(n: int) -> list[Member]:
    ids = [NetworkIdentity.from_private_bytes(bytes([i]) * 32) for i in range(1, n + 1)]
    return [
        Member(NodeId(i + 1), x.peer_id_str, (f"/ip4/127.0.0.1/tcp/{4000 + i}",), x.public_key)
        for i, x in enumerate(ids)
    ]


def test_committee_lookups() -> None:
    ms = members(4)
    c = Committee(reversed(ms))
    assert c.node_ids() == [1, 2, 3, 4] and len(c) == 4
    for m in ms:
        pid = parse_peer_id(m.peer_id)
        assert c.node_of(pid) == m.node_id and c.peer_id(m.node_id) == pid
    outsider = NetworkIdentity.generate()
    assert c.node_of(outsider.peer_id) is None
    with pytest.raises(UnknownNode):
        c.member(NodeId(5))


def test_member_peer_id_must_match_key() -> None:
    a, b = members(2)
    with pytest.raises(CommitteeError, match="does not match"):
        Member(a.node_id, b.peer_id, a.addrs, a.public_key)


@pytest.mark.parametrize("node_id", [0, -1])
def test_member_ids_start_at_one(node_id: int) -> None:
    (a,) = members(1)
    with pytest.raises(CommitteeError):
        Member(NodeId(node_id), a.peer_id, a.addrs, a.public_key)


def test_member_needs_an_address() -> None:
    (a,) = members(1)
    with pytest.raises(CommitteeError):
        Member(a.node_id, a.peer_id, (), a.public_key)


def test_committee_refuses_duplicates() -> None:
    a, b = members(2)
    with pytest.raises(CommitteeError, match="twice"):
        Committee([a, Member(a.node_id, b.peer_id, b.addrs, b.public_key)])
    with pytest.raises(CommitteeError, match="twice"):
        Committee([a, Member(NodeId(2), a.peer_id, a.addrs, a.public_key)])
    with pytest.raises(CommitteeError):
        Committee([])
