"""Encrypted integers under a homomorphic key: the self-describing ciphertext clients hand around.

A sum ciphertext is canonical msgpack ``[1, key_id, key_version, elgamal]`` where ``elgamal``
is ``kmsnode.crypto.elgamal``'s 65-byte exponential-ElGamal ciphertext. Naming the key and
version lets anyone add ciphertexts (only under the same key version) and lets every node
find the share to decrypt with; the key context binds partials to that key version.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto import elgamal
from ..crypto.encoding import transcript
from ..crypto.errors import CryptoError, InvalidCiphertext
from ..errors import MalformedMessage
from ._codec import Reader, pack, unpack
from .requests import MAX_KEY_ID, MAX_SUM_CIPHERTEXT, is_key_id

VERSION = 1
_KEY_CONTEXT_DST = b"kmsnode/sum-key/v1"


@dataclass(frozen=True)
class SumCiphertext:
    """An encrypted integer (or sum of integers) under one version of a homomorphic key."""

    key_id: str
    key_version: int
    ciphertext: elgamal.ElGamalCiphertext

    def encode(self) -> bytes:
        return pack([VERSION, self.key_id, self.key_version, self.ciphertext.encode()])

    @classmethod
    def decode(cls, data: bytes) -> SumCiphertext:
        """Strictly decode one; every element is checked.

        Raises:
            InvalidCiphertext: anything that is not a well-formed sum ciphertext.
        """
        try:
            r = Reader(unpack(data, max_size=MAX_SUM_CIPHERTEXT), "sum ciphertext", 4)
            if r.integer(0, "version") != VERSION:
                raise MalformedMessage("unsupported sum ciphertext version")
            key_id = r.text(1, "key_id", MAX_KEY_ID)
            if not is_key_id(key_id):
                raise MalformedMessage("sum ciphertext names an impossible key id")
            version = r.integer(2, "key_version", 1, 2**32 - 1)
            ct = elgamal.ElGamalCiphertext.decode(r.blob(3, "elgamal", 65))
        except (MalformedMessage, CryptoError) as exc:
            raise InvalidCiphertext() from exc
        return cls(key_id, version, ct)

    def key_context(self) -> bytes:
        """What partial decryptions of this ciphertext are bound to (see ``key_context``)."""
        return key_context(self.key_id, self.key_version)


def key_context(key_id: str, key_version: int) -> bytes:
    """The key version a sum partial belongs to, bound into its DLEQ proof."""
    return transcript(_KEY_CONTEXT_DST, key_id.encode(), key_version.to_bytes(4, "big"))


def add(*ciphertexts: SumCiphertext) -> SumCiphertext:
    """The encryption of the sum of the plaintexts (all under one key version).

    Raises:
        ValueError: no ciphertexts, or ciphertexts under different keys or versions.
    """
    if not ciphertexts:
        raise ValueError("add needs at least one ciphertext")
    first = ciphertexts[0]
    if any((c.key_id, c.key_version) != (first.key_id, first.key_version) for c in ciphertexts):
        raise ValueError("only ciphertexts under the same key version add up")
    return SumCiphertext(
        first.key_id, first.key_version, elgamal.add(*(c.ciphertext for c in ciphertexts))
    )


def scale(ciphertext: SumCiphertext, k: int) -> SumCiphertext:
    """The encryption of ``k`` times the plaintext (``k`` a public integer)."""
    return SumCiphertext(
        ciphertext.key_id, ciphertext.key_version, elgamal.scale(ciphertext.ciphertext, k)
    )
