"""A node's long-lived secret identity: signing key, sealing key, network key.

Generated once by ``kmsnode init`` and kept only in the node's encrypted keystore; the public
halves go into the genesis file.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .crypto.sealing import SealingPrivateKey, SealingPublicKey
from .errors import KeystoreRecordMissing
from .keystore import Keystore, RecordName

_SIGNING = RecordName("identity", "signing")
GENESIS_SEALING_RECORD = RecordName("identity", "sealing")
"""The genesis sealing key: the node's first receiving key (``kmsnode.receiving_keys``), erased
like the later ones once no open session seals to it (rules v3)."""
_SEALING = GENESIS_SEALING_RECORD
_NETWORK = RecordName("identity", "network")


@dataclass(frozen=True)
class NodeIdentity:
    """The node's private keys. Security: ``repr`` is redacted; never log these."""

    signing_key: Ed25519PrivateKey
    """Signs consensus votes and proposals, DKG messages and responses to clients."""
    sealing_key: SealingPrivateKey | None
    """Opens DKG shares sealed to this node's genesis key (None once erased, and always in a
    running node, which reads it from the keystore only when a session needs it: see
    ``kmsnode.receiving_keys``)."""
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
    def sealing_public(self) -> SealingPublicKey:
        """The genesis sealing key's public half (what ``kmsnode init`` publishes).

        Raises:
            KeystoreRecordMissing: the private half was erased (rules v3, after first use).
        """
        if self.sealing_key is None:
            raise KeystoreRecordMissing("the genesis sealing key was erased after its use")
        return self.sealing_key.public_key

    @property
    def network_public(self) -> bytes:
        return self.network_key.public_key().public_bytes_raw()

    def save(self, keystore: Keystore) -> None:
        """Store the three keys in the keystore (durably)."""
        keystore.put(_SIGNING, self.signing_key.private_bytes_raw())
        if self.sealing_key is not None:
            keystore.put(_SEALING, self.sealing_key.to_bytes())
        keystore.put(_NETWORK, self.network_key.private_bytes_raw())

    @classmethod
    def load(cls, keystore: Keystore) -> NodeIdentity:
        """Read the identity from an open keystore.

        Raises:
            KeystoreRecordMissing: the keystore has no identity (run ``kmsnode init``).
        """
        try:
            sealing: SealingPrivateKey | None = SealingPrivateKey.from_bytes(keystore.get(_SEALING))
        except KeystoreRecordMissing:
            sealing = None  # erased: see ``sealing_key``
        return cls(
            Ed25519PrivateKey.from_private_bytes(keystore.get(_SIGNING)),
            sealing,
            Ed25519PrivateKey.from_private_bytes(keystore.get(_NETWORK)),
        )

    def __repr__(self) -> str:
        return "NodeIdentity(<redacted>)"
