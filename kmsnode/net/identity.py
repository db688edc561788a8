"""A node's network identity: its Ed25519 key as a libp2p key pair and peer id.

The genesis file lists, for every node id, its peer id, its multiaddrs and its Ed25519 public
key; ``peer_id_from_public_key`` is what checks that the three agree. Peer ids are the libp2p
standard for Ed25519 keys (an identity multihash of the protobuf-encoded public key, shown in
base58: ``12D3KooW...``), so any libp2p implementation derives the same string.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey as _CryptoPrivateKey,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey as _CryptoPublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from .errors import IdentityError

__all__ = ["NetworkIdentity", "parse_peer_id", "peer_id_from_public_key", "public_key_of"]

ED25519_KEY_BYTES = 32


@dataclass(frozen=True, repr=False)
class NetworkIdentity:
    """A node's libp2p identity, built from its 32-byte Ed25519 private key.

    Security: holds the private key; ``repr`` shows only the peer id.
    """

    key_pair: KeyPair
    peer_id: ID

    @classmethod
    def from_private_bytes(cls, private_key: bytes) -> NetworkIdentity:
        """Build the identity from a raw 32-byte Ed25519 private key (the RFC 8032 seed).

        Raises:
            IdentityError: not exactly 32 bytes.
        """
        if type(private_key) is not bytes or len(private_key) != ED25519_KEY_BYTES:
            raise IdentityError("an Ed25519 private key is exactly 32 raw bytes")
        secret = Ed25519PrivateKey.from_bytes(private_key)
        key_pair = KeyPair(secret, secret.get_public_key())
        return cls(key_pair, ID.from_pubkey(key_pair.public_key))

    @classmethod
    def generate(cls) -> NetworkIdentity:
        """A fresh random identity (tests, `kmsnode init`)."""
        return cls.from_private_bytes(secrets.token_bytes(ED25519_KEY_BYTES))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key, as written in the genesis file."""
        return bytes(self.key_pair.public_key.to_bytes())

    @property
    def peer_id_str(self) -> str:
        """The peer id in its usual base58 text form."""
        return self.peer_id.to_base58()

    def __repr__(self) -> str:
        return f"NetworkIdentity(peer_id={self.peer_id_str})"


def peer_id_from_public_key(public_key: bytes) -> str:
    """The base58 peer id of a raw 32-byte Ed25519 public key.

    Raises:
        IdentityError: not a valid Ed25519 public key encoding.
    """
    if type(public_key) is not bytes or len(public_key) != ED25519_KEY_BYTES:
        raise IdentityError("an Ed25519 public key is exactly 32 raw bytes")
    try:
        # OpenSSL checks the encoding decodes to a curve point; libp2p's wrapper does not.
        _CryptoPublicKey.from_public_bytes(public_key)
    except ValueError:
        raise IdentityError("not a valid Ed25519 public key") from None
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()


def parse_peer_id(text: str) -> ID:
    """Parse a base58 peer id string.

    Raises:
        IdentityError: not a peer id.
    """
    try:
        return ID.from_base58(text)
    except Exception:  # base58/multihash raise assorted ValueError/KeyError types
        raise IdentityError(f"not a peer id: {text[:80]!r}") from None


def public_key_of(private_key: bytes) -> bytes:
    """The raw public key of a raw Ed25519 private key, via OpenSSL (a cross-check for tests).

    Raises:
        IdentityError: not exactly 32 bytes.
    """
    if len(private_key) != ED25519_KEY_BYTES:
        raise IdentityError("an Ed25519 private key is exactly 32 raw bytes")
    key = _CryptoPrivateKey.from_private_bytes(private_key)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
