"""TDH2 threshold encryption (Shoup-Gennaro 1998) as a KEM, with AES-256-GCM as the DEM.

Anyone with a key's public key ``Y = xG`` encrypts; ``t`` of the ``n`` holders of shares of
``x`` each produce a *partial* ``u_i = x_i u`` with a DLEQ proof against their verification key
``Y_i``; the client verifies and combines any ``t`` of them into ``rY`` and opens the AEAD.

What makes it chosen-ciphertext secure is the ciphertext proof: ``(u, ū)`` share ``r`` under
the two generators ``G`` and ``Ḡ``, proved with a challenge that hashes the public key, the
label (format, key id, key version, encryption context) and a digest of the AEAD ciphertext.
A node checks it before releasing anything, so a modified ciphertext gets no partial at all.

Ciphertext format (version 1), all integers big-endian::

    0x01 | scheme 0x01 | len(key_id):u8 | key_id (UTF-8) | key_version:u32
         | u | ū | e | f | nonce(12) | AES-256-GCM ciphertext || tag(16)

The encryption context is not stored: the caller supplies it again to decrypt, exactly as
with AWS KMS. A wrong context, a wrong key or any modified byte all raise the same opaque
``InvalidCiphertext``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import dleq
from .dleq import DleqProof
from .encoding import encode_context, transcript, u16
from .errors import CryptoError, InvalidCiphertext, InvalidEncoding, InvalidParameters
from .groups import RISTRETTO255, Group, Rng, default_rng
from .shamir import Share, lagrange_coefficients, validate_ids
from .threshold import select_partials

E = TypeVar("E")

FORMAT_VERSION = 1
SCHEME_TDH2_RISTRETTO255_AES256GCM = 1
_SUITE = b"kmsnode/tdh2/ristretto255/aes-256-gcm/v1"
_NONCE_SIZE = 12
_TAG_SIZE = 16
MAX_KEY_ID_BYTES = 255
MAX_PLAINTEXT = 64 * 1024 * 1024

_SCHEMES: dict[int, Group[bytes]] = {SCHEME_TDH2_RISTRETTO255_AES256GCM: RISTRETTO255}


def _second_generator(group: Group[E]) -> E:
    """``Ḡ``: a generator with a discrete log nobody knows (hash to the group)."""
    return group.hash_to_element(_SUITE + b"/Gbar", group.name.encode())


_GBAR = {RISTRETTO255.name: _second_generator(RISTRETTO255)}


@dataclass(frozen=True)
class Ciphertext(Generic[E]):
    """A parsed, structurally valid TDH2 ciphertext (its proof is not yet checked)."""

    key_id: str
    key_version: int
    u: E
    u_bar: E
    e: int
    f: int
    nonce: bytes
    sealed: bytes
    raw: bytes

    @property
    def header(self) -> bytes:
        """The bytes that identify format, scheme, key and version."""
        kid = self.key_id.encode("utf-8")
        return (
            bytes([FORMAT_VERSION, SCHEME_TDH2_RISTRETTO255_AES256GCM, len(kid)])
            + kid
            + struct.pack(">I", self.key_version)
        )


@dataclass(frozen=True)
class PartialDecryption(Generic[E]):
    """Participant ``id``'s decryption share ``u_i = x_i u`` with its DLEQ proof."""

    id: int
    value: E
    proof: DleqProof

    def encode(self, group: Group[E]) -> bytes:
        """``id:u16 | u_i | proof``."""
        return u16(self.id) + group.encode(self.value) + self.proof.encode(group)

    @classmethod
    def decode(cls, group: Group[E], data: bytes) -> PartialDecryption[E]:
        """Strictly decode a partial (the id range is checked against the committee later).

        Raises:
            InvalidEncoding: wrong length, bad point or scalar.
        """
        size = 2 + group.element_size + 2 * group.scalar_size
        if not isinstance(data, (bytes, bytearray)) or len(data) != size:
            raise InvalidEncoding(f"a partial decryption is {size} bytes")
        pid = int.from_bytes(data[:2], "big")
        if pid == 0:
            raise InvalidEncoding("participant id 0 is not allowed")
        value = group.decode(bytes(data[2 : 2 + group.element_size]))
        proof = DleqProof.decode(group, bytes(data[2 + group.element_size :]))
        return cls(pid, value, proof)


def _validate_key_id(key_id: str) -> bytes:
    if not isinstance(key_id, str) or not key_id:
        raise InvalidParameters("key_id must be a non-empty string")
    kid = key_id.encode("utf-8")
    if len(kid) > MAX_KEY_ID_BYTES:
        raise InvalidParameters(f"key_id is longer than {MAX_KEY_ID_BYTES} bytes")
    return kid


def _label(header: bytes, context: Mapping[str, str] | None) -> bytes:
    return transcript(_SUITE, b"label", header, encode_context(context))


def _challenge(
    group: Group[E], public_key: E, label: bytes, body_digest: bytes, u: E, w: E, u_bar: E, w_bar: E
) -> int:
    enc = group.encode
    msg = transcript(
        _SUITE, enc(public_key), label, body_digest, enc(u), enc(w), enc(u_bar), enc(w_bar)
    )
    return group.hash_to_scalar(_SUITE + b"/challenge", msg)


def _dem_key(group: Group[E], shared: E, u: E, public_key: E) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=transcript(_SUITE, b"dem-key", group.encode(u), group.encode(public_key)),
    )
    return hkdf.derive(group.encode(shared))


def encrypt(
    public_key: bytes,
    plaintext: bytes,
    *,
    key_id: str,
    key_version: int,
    context: Mapping[str, str] | None = None,
    rng: Rng = default_rng,
) -> bytes:
    """Encrypt ``plaintext`` to the holders of ``public_key`` (a ristretto255 key).

    Raises:
        InvalidParameters: bad key id, version, context or oversized plaintext.
        InvalidEncoding: ``public_key`` is not a valid non-identity element.
    """
    group = RISTRETTO255
    y = group.decode(public_key)
    kid = _validate_key_id(key_id)
    if not isinstance(key_version, int) or not 0 <= key_version < 2**32:
        raise InvalidParameters("key_version must be an integer in [0, 2^32)")
    if len(plaintext) > MAX_PLAINTEXT:
        raise InvalidParameters(f"plaintext longer than {MAX_PLAINTEXT} bytes")
    header = (
        bytes([FORMAT_VERSION, SCHEME_TDH2_RISTRETTO255_AES256GCM, len(kid)])
        + kid
        + struct.pack(">I", key_version)
    )
    label = _label(header, context)
    g_bar = _GBAR[group.name]
    r = group.random_scalar(rng)
    s = group.random_scalar(rng)
    u = group.base_mul(r)
    u_bar = group.mul(g_bar, r)
    w = group.base_mul(s)
    w_bar = group.mul(g_bar, s)
    shared = group.mul(y, r)
    nonce = rng(_NONCE_SIZE)
    sealed = AESGCM(_dem_key(group, shared, u, y)).encrypt(nonce, bytes(plaintext), label)
    digest = hashlib.sha512(nonce + sealed).digest()
    e = _challenge(group, y, label, digest, u, w, u_bar, w_bar)
    f = (s + r * e) % group.order
    return b"".join(
        [header, u, u_bar, group.encode_scalar(e), group.encode_scalar(f), nonce, sealed]
    )


def parse(ciphertext: bytes) -> Ciphertext[bytes]:
    """Parse the structure of a ciphertext (not its proof).

    Raises:
        InvalidCiphertext: anything malformed (opaque on purpose).
    """
    try:
        data = bytes(ciphertext)
        if len(data) < 3 or data[0] != FORMAT_VERSION or data[1] not in _SCHEMES:
            raise InvalidCiphertext()
        group = _SCHEMES[data[1]]
        kid_len = data[2]
        pos = 3 + kid_len
        key_id = data[3:pos].decode("utf-8")
        if not key_id or len(data) < pos + 4:
            raise InvalidCiphertext()
        (key_version,) = struct.unpack(">I", data[pos : pos + 4])
        pos += 4
        es, ss = group.element_size, group.scalar_size
        need = 2 * es + 2 * ss + _NONCE_SIZE + _TAG_SIZE
        if len(data) < pos + need:
            raise InvalidCiphertext()
        u = group.decode(data[pos : pos + es])
        u_bar = group.decode(data[pos + es : pos + 2 * es])
        pos += 2 * es
        e = group.decode_scalar(data[pos : pos + ss])
        f = group.decode_scalar(data[pos + ss : pos + 2 * ss])
        pos += 2 * ss
        nonce = data[pos : pos + _NONCE_SIZE]
        sealed = data[pos + _NONCE_SIZE :]
    except (InvalidEncoding, UnicodeDecodeError, struct.error, IndexError) as exc:
        raise InvalidCiphertext() from exc
    return Ciphertext(key_id, key_version, u, u_bar, e, f, nonce, sealed, data)


@dataclass(frozen=True)
class ValidCiphertext:
    """A ciphertext whose proof verified under ``public_key`` and ``context``.

    Only ``check`` makes one; ``partial_decrypt_valid`` takes one, so a partial can never be
    computed for a ciphertext that was not checked (the replicated state checks once, the
    executor computes the partial without repeating the work).
    """

    ct: Ciphertext[bytes]
    public_key: bytes
    context: Mapping[str, str] = field(default_factory=dict)


def check(
    public_key: bytes, ct: Ciphertext[bytes], context: Mapping[str, str] | None = None
) -> ValidCiphertext:
    """Check the ciphertext's validity proof under this key and encryption context.

    Raises:
        InvalidCiphertext: the proof fails (tampered, wrong key, wrong context).
    """
    group = RISTRETTO255
    g_bar = _GBAR[group.name]
    try:
        label = _label(ct.header, context)
    except InvalidParameters as exc:
        raise InvalidCiphertext() from exc
    w = group.sub(group.base_mul(ct.f), group.mul(ct.u, ct.e))
    w_bar = group.sub(group.mul(g_bar, ct.f), group.mul(ct.u_bar, ct.e))
    digest = hashlib.sha512(ct.nonce + ct.sealed).digest()
    if _challenge(group, public_key, label, digest, ct.u, w, ct.u_bar, w_bar) != ct.e:
        raise InvalidCiphertext()
    return ValidCiphertext(ct, public_key, dict(context or {}))


def _partial_context(ct: Ciphertext[bytes], context: Mapping[str, str] | None) -> bytes:
    return transcript(_SUITE, b"partial", hashlib.sha512(ct.raw).digest(), encode_context(context))


def partial_decrypt(
    share: Share,
    public_key: bytes,
    ciphertext: bytes,
    context: Mapping[str, str] | None = None,
    *,
    verification_key: bytes | None = None,
    rng: Rng = default_rng,
) -> PartialDecryption[bytes]:
    """A node's share of a decryption: checks the ciphertext first, then ``x_i u`` and a proof.

    ``verification_key`` (the node's own ``Y_i``, which it stores) saves recomputing it.

    Raises:
        InvalidCiphertext: the ciphertext is malformed or its proof fails; nothing is computed.
    """
    valid = check(public_key, parse(ciphertext), context)
    return partial_decrypt_valid(share, valid, verification_key=verification_key, rng=rng)


def partial_decrypt_valid(
    share: Share,
    valid: ValidCiphertext,
    *,
    verification_key: bytes | None = None,
    rng: Rng = default_rng,
) -> PartialDecryption[bytes]:
    """``partial_decrypt`` for a ciphertext ``check`` already accepted."""
    group = RISTRETTO255
    ct = valid.ct
    validate_ids([share.id], group.order)
    value = group.mul(ct.u, share.value)
    vk = verification_key if verification_key is not None else group.base_mul(share.value)
    proof = dleq.prove(
        group,
        share.value,
        group.generator(),
        ct.u,
        vk,
        value,
        prover=share.id,
        context=_partial_context(ct, valid.context),
        rng=rng,
    )
    return PartialDecryption(share.id, value, proof)


def verify_partial(
    partial: PartialDecryption[bytes],
    verification_key: bytes,
    ciphertext: bytes,
    context: Mapping[str, str] | None = None,
) -> None:
    """Check one partial against its sender's verification key ``Y_i``.

    Raises:
        InvalidProof: the DLEQ proof fails for this ciphertext, context and participant.
        InvalidCiphertext: the ciphertext is malformed.
    """
    group = RISTRETTO255
    ct = parse(ciphertext)
    dleq.verify(
        group,
        partial.proof,
        group.generator(),
        ct.u,
        verification_key,
        partial.value,
        prover=partial.id,
        context=_partial_context(ct, context),
    )


def combine(
    public_key: bytes,
    ciphertext: bytes,
    partials: Iterable[PartialDecryption[bytes]],
    verification_keys: Mapping[int, bytes],
    threshold: int,
    context: Mapping[str, str] | None = None,
    *,
    optimistic: bool = True,
) -> tuple[bytes, tuple[int, ...]]:
    """Combine ``threshold`` partials and open the ciphertext; find and name bad partials.

    With ``optimistic`` (the default) the first ``threshold`` distinct committee partials are
    combined without checking their proofs: AES-GCM authenticates the result, so a wrong
    combination cannot yield a plaintext. Only if the AEAD fails are the ciphertext proof and
    every partial's DLEQ proof checked, the invalid ones named and skipped, and a combination of
    valid ones tried. With ``optimistic=False`` every chosen partial is verified first.

    Returns the plaintext and the ids of participants whose partials were found invalid.

    Raises:
        InvalidCiphertext: malformed, tampered, wrong key or context (opaque).
        NotEnoughPartials: fewer than ``threshold`` valid partials; names the invalid senders.
    """
    group = RISTRETTO255
    validate_ids(verification_keys, group.order)
    ct = parse(ciphertext)
    pending = list(partials)
    label = _label_or_opaque(ct, context)

    if optimistic:
        first: dict[int, PartialDecryption[bytes]] = {}
        for p in pending:
            if p.id in verification_keys and p.id not in first:
                first[p.id] = p
            if len(first) == threshold:
                plaintext = _open(group, public_key, ct, list(first.values()), label)
                if plaintext is not None:
                    return plaintext, ()
                break

    # Slow path: the ciphertext itself first (a wrong context must not blame the nodes).
    check(public_key, ct, context)
    pctx = _partial_context(ct, context)

    def verify(p: PartialDecryption[bytes]) -> None:
        dleq.verify(
            group,
            p.proof,
            group.generator(),
            ct.u,
            verification_keys[p.id],
            p.value,
            prover=p.id,
            context=pctx,
        )

    chosen, culprits = select_partials(
        pending,
        participant=lambda p: p.id,
        verify=verify,
        committee=verification_keys.keys(),
        needed=threshold,
    )
    plaintext = _open(group, public_key, ct, chosen, label)
    if plaintext is None:
        raise InvalidCiphertext()
    return plaintext, culprits


def _label_or_opaque(ct: Ciphertext[bytes], context: Mapping[str, str] | None) -> bytes:
    try:
        return _label(ct.header, context)
    except InvalidParameters as exc:
        raise InvalidCiphertext() from exc


def _open(
    group: Group[bytes],
    public_key: bytes,
    ct: Ciphertext[bytes],
    chosen: list[PartialDecryption[bytes]],
    label: bytes,
) -> bytes | None:
    """Lagrange-combine ``chosen`` into ``rY`` and open the AEAD; None if it does not open."""
    lambdas = lagrange_coefficients([p.id for p in chosen], group.order)
    shared = group.lincomb([p.value for p in chosen], [lambdas[p.id] for p in chosen])
    try:
        key = _dem_key(group, shared, ct.u, public_key)
        return AESGCM(key).decrypt(ct.nonce, ct.sealed, label)
    except (InvalidTag, CryptoError):
        return None
