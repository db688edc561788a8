"""Homomorphic sums through the log: encrypt integers, add them, t nodes decrypt the total.

The wire format of sum ciphertexts, then state machine + executor + client core together over
the in-process log (``LocalNetwork``), as ``tests/test_pipeline.py`` does for TDH2.
"""

from __future__ import annotations

import msgpack
import pytest

from kmsnode.client._core import Collector, KeyMaterial
from kmsnode.client.errors import (
    AccessDenied,
    InvalidCiphertextError,
    KeyUnavailable,
)
from kmsnode.crypto import elgamal
from kmsnode.crypto.errors import InvalidCiphertext, InvalidParameters
from kmsnode.crypto.sealing import SealingPublicKey, seal
from kmsnode.crypto.shamir import Share
from kmsnode.testing import LocalNetwork
from kmsnode.wire import sums
from kmsnode.wire.requests import (
    Decrypt,
    DecryptSum,
    Encrypt,
    KeyKind,
    RefreshKey,
)
from kmsnode.wire.responses import Response, sealed_aad


def create(net: LocalNetwork, kind: KeyKind = KeyKind.HOMOMORPHIC) -> str:
    return net.create_key(kind, "sums")


def material(net: LocalNetwork, key_id: str) -> KeyMaterial:
    return net.key_material(key_id)


def encrypt_int(net: LocalNetwork, key_id: str, value: int) -> sums.SumCiphertext:
    c = net.run(net.client.prepare(Encrypt(key_id), now_ms=net.time_ms))
    assert c.done and c.result["kind"] == "homomorphic"
    ct = elgamal.encrypt_int(c.result["public_key"], value)
    return sums.SumCiphertext(key_id, c.result["version"], ct)


def decrypt_sum(net: LocalNetwork, ct: sums.SumCiphertext, km: KeyMaterial) -> Collector:
    """Commit a decrypt_sum; the collector's result is m * G (the client then searches m)."""
    return net.run(net.client.prepare(DecryptSum(ct.encode()), now_ms=net.time_ms), km)


def value(c: Collector, bound: int = 2**16) -> int:
    assert c.done
    return elgamal.discrete_log(c.result, bound)


# -- the wire format ----------------------------------------------------------------------------


def test_a_sum_ciphertext_round_trips_and_every_malformation_is_the_opaque_error() -> None:
    y = elgamal._GROUP.base_mul(12345)
    ct = sums.SumCiphertext("key-0011223344556677", 3, elgamal.encrypt_int(y, 7))
    data = ct.encode()
    assert sums.SumCiphertext.decode(data) == ct
    good = msgpack.unpackb(data)
    bad_values = [
        [2, *good[1:]],  # unknown version
        [good[0], "bad key/id", *good[2:]],
        [*good[:2], 0, good[3]],  # version 0 does not exist
        [*good[:3], good[3][:64]],  # short
        [*good[:3], b"\x02" + good[3][1:]],  # unknown ElGamal encoding
        [*good[:3], good[3][:33] + b"\xff" * 32],  # not a group element
        good[:3],
    ]
    for value in bad_values:
        with pytest.raises(InvalidCiphertext):
            sums.SumCiphertext.decode(msgpack.packb(value))
    for raw in (b"", b"\x00" * 300, data + b"\x00"):
        with pytest.raises(InvalidCiphertext):
            sums.SumCiphertext.decode(raw)


def test_only_ciphertexts_under_one_key_version_add() -> None:
    y = elgamal._GROUP.base_mul(99)
    a = sums.SumCiphertext("key-a", 1, elgamal.encrypt_int(y, 1))
    with pytest.raises(ValueError, match="same key version"):
        sums.add(a, sums.SumCiphertext("key-a", 2, elgamal.encrypt_int(y, 1)))
    with pytest.raises(ValueError, match="same key version"):
        sums.add(a, sums.SumCiphertext("key-b", 1, elgamal.encrypt_int(y, 1)))
    with pytest.raises(ValueError):
        sums.add()
    assert sums.key_context("key-a", 1) != sums.key_context("key-a", 2)


# -- through the log ----------------------------------------------------------------------------


def test_encrypted_integers_add_up_and_only_the_total_is_decrypted(net: LocalNetwork) -> None:
    key_id = create(net)
    values = [17, 25, 1000]
    total = sums.add(*(encrypt_int(net, key_id, v) for v in values))
    total = sums.add(total, sums.scale(encrypt_int(net, key_id, 3), 4))  # + 3 * 4
    km = material(net, key_id)
    c = decrypt_sum(net, total, km)
    assert value(c) == sum(values) + 12 and not c.misbehaving
    # Each node audited one decrypt_sum on this key.
    assert [e.op for e in net.states[1].audit.entries][-1] == "decrypt_sum"
    # A total beyond the bound is reported as such, not as a wrong number.
    with pytest.raises(InvalidParameters, match="not in"):
        value(c, bound=1000)


def test_a_lying_node_is_named_and_the_sum_still_decrypts(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = encrypt_int(net, key_id, 42)
    km = material(net, key_id)
    prepared = net.client.prepare(DecryptSum(ct.encode()), now_ms=net.time_ms)
    assert prepared.request.reply_key is not None
    reply_key = SealingPublicKey.decode(prepared.request.reply_key)
    not_its_share = Share(2, 123456789)

    def forge(response: Response) -> bytes:
        # Node 2 seals a well-formed partial from a wrong share: its proof cannot verify.
        bogus = elgamal.partial_decrypt(not_its_share, ct.ciphertext, key_context=ct.key_context())
        sealed = seal(reply_key, bogus.encode(), sealed_aad(response.request_id, 2))
        return net.resigned(2, response, sealed=sealed)

    net.byzantine[2] = forge
    c = net.run(prepared, km)
    assert value(c) == 42 and c.misbehaving == {2}


def test_sums_survive_a_refresh(net: LocalNetwork) -> None:
    key_id = create(net)
    ct = sums.add(encrypt_int(net, key_id, 5), encrypt_int(net, key_id, 6))
    net.run(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms))
    km = material(net, key_id)
    assert km.epoch == 1
    assert value(decrypt_sum(net, ct, km)) == 11


def test_a_key_serves_one_scheme_only(net: LocalNetwork) -> None:
    # TDH2 partials for a homomorphic key, or ElGamal partials for an encryption key, would
    # let one scheme's requests decrypt the other's ciphertexts.
    sum_key, tdh2_key = create(net), create(net, KeyKind.ENCRYPT)
    ct = encrypt_int(net, sum_key, 1)
    c = net.run(net.client.prepare(Encrypt(tdh2_key), now_ms=net.time_ms))
    other = sums.SumCiphertext(tdh2_key, 1, elgamal.encrypt_int(c.result["public_key"], 1))
    with pytest.raises(KeyUnavailable):
        decrypt_sum(net, other, material(net, tdh2_key))
    from kmsnode.crypto import tdh2

    as_tdh2 = tdh2.encrypt(
        material(net, sum_key).public_key, b"x", key_id=sum_key, key_version=1, context={}
    )
    with pytest.raises(KeyUnavailable):
        net.run(
            net.client.prepare(Decrypt(as_tdh2, {}), now_ms=net.time_ms), material(net, sum_key)
        )
    assert value(decrypt_sum(net, ct, material(net, sum_key))) == 1


def test_decrypt_sum_refusals(net: LocalNetwork) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kmsnode.client._core import ClientCore

    key_id = create(net)
    ct = encrypt_int(net, key_id, 9)
    stranger = ClientCore(net.genesis, Ed25519PrivateKey.generate())
    with pytest.raises(AccessDenied):
        net.run(
            stranger.prepare(DecryptSum(ct.encode()), now_ms=net.time_ms),
            material(net, key_id),
            client=stranger,
        )
    with pytest.raises(InvalidCiphertextError):
        net.run(
            net.client.prepare(DecryptSum(b"\x01" * 65), now_ms=net.time_ms),
            material(net, key_id),
        )
    # No node released a partial for either.
    assert all(ex.stats.partials == 0 for ex in net.executors.values())
