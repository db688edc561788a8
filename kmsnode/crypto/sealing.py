"""Hybrid post-quantum sealing: encrypt bytes to a recipient's X25519 + ML-KEM-768 key.

Used for partials sealed to a requester's ephemeral key and for DKG shares, which sit in the
BFT log forever: an adversary who records the log today and has a quantum computer later must
still not open them, so the KEM is hybrid and the result is secure if *either* X25519 or
ML-KEM-768 holds.

Sealed format (version 1)::

    0x01 | X25519 ephemeral public key (32) | ML-KEM-768 ciphertext (1088) | nonce (12)
         | AES-256-GCM ciphertext || tag (16)

The AEAD key is HKDF-SHA256 over both shared secrets, with the whole public transcript
(format, both recipient public keys, the ephemeral key and the KEM ciphertext) as its info, so
the key is bound to exactly this recipient and this encapsulation.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .encoding import transcript
from .errors import InvalidCiphertext, InvalidEncoding

SEAL_VERSION = 1
X25519_SIZE = 32
MLKEM768_PUBLIC_SIZE = 1184
MLKEM768_CIPHERTEXT_SIZE = 1088
MLKEM768_SEED_SIZE = 64
_NONCE_SIZE = 12
_TAG_SIZE = 16
_SUITE = b"kmsnode/seal/x25519-mlkem768/hkdf-sha256/aes-256-gcm/v1"
PUBLIC_KEY_SIZE = X25519_SIZE + MLKEM768_PUBLIC_SIZE
_MLKEM_Q = 3329
_P25519 = 2**255 - 19
_SMALL_ORDER_U = frozenset(
    {
        0,
        1,
        _P25519 - 1,
        # The two points of order 8 (RFC 7748 §6.1's blocklist, as libsodium keeps it).
        int.from_bytes(
            bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
            "little",
        ),
        int.from_bytes(
            bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
            "little",
        ),
    }
)
"""u-coordinates (mod p, top bit ignored as X25519 does) of every small-order point."""
OVERHEAD = 1 + X25519_SIZE + MLKEM768_CIPHERTEXT_SIZE + _NONCE_SIZE + _TAG_SIZE


@dataclass(frozen=True)
class SealingPublicKey:
    """A recipient's hybrid public key: X25519 and ML-KEM-768 encapsulation key."""

    x25519: bytes
    mlkem768: bytes

    def encode(self) -> bytes:
        """``x25519 (32) || ml-kem-768 (1184)``."""
        return self.x25519 + self.mlkem768

    @classmethod
    def decode(cls, data: bytes) -> SealingPublicKey:
        """Strictly decode and validate a hybrid public key.

        Raises:
            InvalidEncoding: wrong length, an X25519 key of small order, or an ML-KEM key that
                OpenSSL rejects.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) != PUBLIC_KEY_SIZE:
            raise InvalidEncoding(f"a sealing public key is {PUBLIC_KEY_SIZE} bytes")
        key = cls(bytes(data[:X25519_SIZE]), bytes(data[X25519_SIZE:]))
        key._load()
        return key

    @classmethod
    def decode_checked(cls, data: bytes) -> SealingPublicKey:
        """Decode and validate in pure Python, the same on every machine (the replicated
        state decides with this which keys a committed payload may name; OpenSSL builds
        could differ). Checks: the length, an X25519 key not of small order, and FIPS 203's
        encapsulation-key check (every coefficient of ``t`` below q = 3329).

        Raises:
            InvalidEncoding: any of those fails.
        """
        if not isinstance(data, (bytes, bytearray)) or len(data) != PUBLIC_KEY_SIZE:
            raise InvalidEncoding(f"a sealing public key is {PUBLIC_KEY_SIZE} bytes")
        x, m = bytes(data[:X25519_SIZE]), bytes(data[X25519_SIZE:])
        u = (int.from_bytes(x, "little") & ((1 << 255) - 1)) % _P25519
        if u in _SMALL_ORDER_U:
            raise InvalidEncoding("X25519 public key has small order")
        t = m[: MLKEM768_PUBLIC_SIZE - 32]  # 3 polynomials of 256 12-bit coefficients, then rho
        for i in range(0, len(t), 3):
            a, b, c = t[i], t[i + 1], t[i + 2]
            if (a | (b & 0x0F) << 8) >= _MLKEM_Q or (b >> 4 | c << 4) >= _MLKEM_Q:
                raise InvalidEncoding("ML-KEM-768 public key fails the modulus check")
        return cls(x, m)

    def _load(self) -> tuple[X25519PublicKey, mlkem.MLKEM768PublicKey]:
        if len(self.x25519) != X25519_SIZE:
            raise InvalidEncoding("X25519 public key must be 32 bytes")
        if len(self.mlkem768) != MLKEM768_PUBLIC_SIZE:
            raise InvalidEncoding(f"ML-KEM-768 public key must be {MLKEM768_PUBLIC_SIZE} bytes")
        try:
            xpk = X25519PublicKey.from_public_bytes(self.x25519)
            mpk = mlkem.MLKEM768PublicKey.from_public_bytes(self.mlkem768)
        except ValueError as exc:
            raise InvalidEncoding("invalid sealing public key") from exc
        # A small-order X25519 key gives an all-zero shared secret. Refuse it up front, so a
        # bad key is reported where it arrives (``seal`` also refuses the exchange itself).
        u = (int.from_bytes(self.x25519, "little") & ((1 << 255) - 1)) % _P25519
        if u in _SMALL_ORDER_U:
            raise InvalidEncoding("X25519 public key has small order")
        return xpk, mpk

    def fingerprint(self) -> bytes:
        """A 32-byte SHA-256 digest identifying this key."""
        return hashlib.sha256(self.encode()).digest()


class SealingPrivateKey:
    """A recipient's hybrid private key. Security: never logged; ``repr`` is redacted."""

    def __init__(self, x25519_key: X25519PrivateKey, mlkem_key: mlkem.MLKEM768PrivateKey):
        self._x = x25519_key
        self._m = mlkem_key
        self.public_key = SealingPublicKey(
            x25519_key.public_key().public_bytes_raw(), mlkem_key.public_key().public_bytes_raw()
        )

    @classmethod
    def generate(cls) -> SealingPrivateKey:
        """A fresh key pair from the OS RNG."""
        return cls(X25519PrivateKey.generate(), mlkem.MLKEM768PrivateKey.generate())

    def to_bytes(self) -> bytes:
        """``x25519 secret (32) || ml-kem-768 seed (64)``: for the encrypted keystore only."""
        return self._x.private_bytes_raw() + self._m.private_bytes_raw()

    @classmethod
    def from_bytes(cls, data: bytes) -> SealingPrivateKey:
        """Inverse of ``to_bytes``.

        Raises:
            InvalidEncoding: wrong length.
        """
        if len(data) != X25519_SIZE + MLKEM768_SEED_SIZE:
            raise InvalidEncoding("a sealing private key is 96 bytes")
        return cls(
            X25519PrivateKey.from_private_bytes(bytes(data[:X25519_SIZE])),
            mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes(data[X25519_SIZE:])),
        )

    def __repr__(self) -> str:
        return "SealingPrivateKey(<redacted>)"


def _aead_key(
    recipient: SealingPublicKey, ephemeral: bytes, kem_ct: bytes, ss_x: bytes, ss_m: bytes
) -> bytes:
    info = transcript(_SUITE, recipient.x25519, recipient.mlkem768, ephemeral, kem_ct)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ss_x + ss_m)


def seal(recipient: SealingPublicKey, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` so that only ``recipient`` can open it; ``aad`` is authenticated.

    Raises:
        InvalidEncoding: the recipient key is invalid (wrong length, small order, rejected).
    """
    xpk, mpk = recipient._load()
    eph = X25519PrivateKey.generate()
    ephemeral = eph.public_key().public_bytes_raw()
    try:
        ss_x = eph.exchange(xpk)
    except ValueError as exc:  # OpenSSL refuses an all-zero shared secret
        raise InvalidEncoding("X25519 public key has small order") from exc
    ss_m, kem_ct = mpk.encapsulate()
    key = _aead_key(recipient, ephemeral, kem_ct, ss_x, ss_m)
    nonce = os.urandom(_NONCE_SIZE)
    body = AESGCM(key).encrypt(nonce, bytes(plaintext), transcript(_SUITE, aad))
    return bytes([SEAL_VERSION]) + ephemeral + kem_ct + nonce + body


def open_sealed(recipient: SealingPrivateKey, sealed: bytes, aad: bytes = b"") -> bytes:
    """Open a sealed message addressed to ``recipient``.

    Raises:
        InvalidCiphertext: malformed, tampered, wrong recipient or wrong ``aad`` (opaque).
    """
    if not isinstance(sealed, (bytes, bytearray)) or len(sealed) < OVERHEAD:
        raise InvalidCiphertext()
    data = bytes(sealed)
    if data[0] != SEAL_VERSION:
        raise InvalidCiphertext()
    pos = 1
    ephemeral = data[pos : pos + X25519_SIZE]
    pos += X25519_SIZE
    kem_ct = data[pos : pos + MLKEM768_CIPHERTEXT_SIZE]
    pos += MLKEM768_CIPHERTEXT_SIZE
    nonce = data[pos : pos + _NONCE_SIZE]
    body = data[pos + _NONCE_SIZE :]
    try:
        ss_x = recipient._x.exchange(X25519PublicKey.from_public_bytes(ephemeral))
        ss_m = recipient._m.decapsulate(kem_ct)
        key = _aead_key(recipient.public_key, ephemeral, kem_ct, ss_x, ss_m)
        return AESGCM(key).decrypt(nonce, body, transcript(_SUITE, aad))
    except (ValueError, InvalidTag) as exc:
        raise InvalidCiphertext() from exc
