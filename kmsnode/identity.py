"""A node's long-lived secret identity: signing key, sealing key, network key.

Generated once by ``kmsnode init`` and kept only in the node's encrypted keystore; the public
halves go into the genesis file.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .crypto.sealing import SealingPrivateKey
from .keystore import Keystore, RecordName

_SIGNING = RecordName("identity", "signing")
_SEALING = RecordName("identity", "sealing")
_NETWORK = RecordName("identity", "network")


@dataclass(frozen=True)
class NodeIdentity:
    """The node's private keys. Security: ``repr`` is redacted; never log these."""

    signing_key: Ed25519PrivateKey
    """Signs consensus votes and proposals, DKG messages and responses to clients."""
    sealing_key: SealingPrivateKey
    """Opens DKG shares sealed to this node."""
    network_key: Ed25519PrivateKey
    """The libp2p identity (Noise handshakes; the peer id derives from it)."""

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls(
            Ed25519PrivateKey.generate(), SealingPrivateKey.generate(), Ed25519PrivateKey.generate()
        )

    @property
    def signing_public(self) -> bytes:
        return self.signing_key.public_key().public_bytes_raw()

    @property
    def network_public(self) -> bytes:
        return self.network_key.public_key().public_bytes_raw()

    def save(self, keystore: Keystore) -> None:
        """Store the three keys in the keystore (durably)."""
        keystore.put(_SIGNING, self.signing_key.private_bytes_raw())
        keystore.put(_SEALING, self.sealing_key.to_bytes())
        keystore.put(_NETWORK, self.network_key.private_bytes_raw())

    @classmethod
    def load(cls, keystore: Keystore) -> NodeIdentity:
        """Read the identity from an open keystore.

        Raises:
            KeystoreRecordMissing: the keystore has no identity (run ``kmsnode init``).
        """
        return cls(
            Ed25519PrivateKey.from_private_bytes(keystore.get(_SIGNING)),
            SealingPrivateKey.from_bytes(keystore.get(_SEALING)),
            Ed25519PrivateKey.from_private_bytes(keystore.get(_NETWORK)),
        )

    def __repr__(self) -> str:
        return "NodeIdentity(<redacted>)"
