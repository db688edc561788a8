"""Threshold BLS signing through the log: state machine + executor + client core together over
the in-process log (``LocalNetwork``); signatures checked by py_ecc, an independent reference."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from py_ecc.bls.ciphersuites import G2ProofOfPossession

from kmsnode.client._core import ClientCore, KeyMaterial
from kmsnode.client.errors import (
    AccessDenied,
    KeyUnavailable,
    StaleKeyMaterial,
)
from kmsnode.crypto import bls
from kmsnode.crypto.sealing import SealingPublicKey, seal
from kmsnode.crypto.shamir import Share
from kmsnode.errors import MalformedMessage
from kmsnode.testing import LocalNetwork
from kmsnode.wire.requests import (
    MAX_SIGN_MESSAGE,
    KeyKind,
    Permission,
    RefreshKey,
    Request,
    RotateKey,
    SetPolicy,
    Sign,
)
from kmsnode.wire.responses import Response, sealed_aad


def create(net: LocalNetwork, kind: KeyKind = KeyKind.SIGN_BLS) -> str:
    return net.create_key(kind, "signing")


def material(net: LocalNetwork, key_id: str, version: int = 1) -> KeyMaterial:
    return net.key_material(key_id, version)


def sign(net: LocalNetwork, key_id: str, message: bytes, km: KeyMaterial, **kw: object):  # type: ignore[no-untyped-def]
    return net.run(net.client.prepare(Sign(key_id, message), now_ms=net.time_ms), km, **kw)  # type: ignore[arg-type]


def test_a_threshold_signature_verifies_with_an_independent_implementation(
    net: LocalNetwork,
) -> None:
    key_id = create(net)
    km = material(net, key_id)
    c = sign(net, key_id, b"release 1.4.2", km)
    assert c.done and not c.misbehaving
    signature = c.result
    assert isinstance(signature, bytes) and len(signature) == bls.SIGNATURE_SIZE
    assert G2ProofOfPossession.Verify(km.public_key, b"release 1.4.2", signature)
    assert not G2ProofOfPossession.Verify(km.public_key, b"release 1.4.3", signature)
    # BLS is deterministic: any t nodes give the same signature.
    net.byzantine[1] = lambda response: b"\x00"
    again = sign(net, key_id, b"release 1.4.2", km)
    assert again.result == signature and again.misbehaving == {1}
    assert [e.op for e in net.states[2].audit.entries][-1] == "sign"


def test_a_bad_partial_is_named_and_the_signature_still_made(net: LocalNetwork) -> None:
    key_id = create(net)
    km = material(net, key_id)
    prepared = net.client.prepare(Sign(key_id, b"m"), now_ms=net.time_ms)
    assert prepared.request.reply_key is not None
    reply_key = SealingPublicKey.decode(prepared.request.reply_key)

    def forge(response: Response) -> bytes:  # well formed, sealed, signed: under a wrong share
        bogus = bls.partial_sign(Share(2, 987654321), b"m").encode()
        sealed = seal(reply_key, bogus, sealed_aad(response.request_id, 2))
        return net.resigned(2, response, sealed=sealed)

    net.byzantine[2] = forge
    c = net.run(prepared, km)
    assert c.done and c.misbehaving == {2}
    bls.verify(km.public_key, b"m", c.result)


def test_signatures_survive_a_refresh_and_follow_a_rotation(net: LocalNetwork) -> None:
    key_id = create(net)
    km = material(net, key_id)
    net.run(net.client.prepare(RefreshKey(key_id), now_ms=net.time_ms))
    fresh = material(net, key_id)
    assert fresh.public_key == km.public_key and fresh.epoch == 1
    c = sign(net, key_id, b"after refresh", fresh)
    assert G2ProofOfPossession.Verify(km.public_key, b"after refresh", c.result)
    net.run(net.client.prepare(RotateKey(key_id), now_ms=net.time_ms))
    # A client still on version 1 hears of version 2 from the partials (f + 1 agree).
    with pytest.raises(StaleKeyMaterial) as stale:
        sign(net, key_id, b"after rotation", fresh)
    assert stale.value.version == 2
    v2 = material(net, key_id, version=2)
    c = sign(net, key_id, b"after rotation", v2)
    assert G2ProofOfPossession.Verify(v2.public_key, b"after rotation", c.result)


def test_signing_refusals(net: LocalNetwork) -> None:
    key_id = create(net)
    km = material(net, key_id)
    user = ClientCore(net.genesis, Ed25519PrivateKey.generate())
    user_pub = user.client_id
    with pytest.raises(AccessDenied):
        net.run(user.prepare(Sign(key_id, b"m"), now_ms=net.time_ms), km, client=user)
    grant = SetPolicy(key_id, user_pub, (Permission.DECRYPT,))  # not sign
    net.run(net.client.prepare(grant, now_ms=net.time_ms))
    with pytest.raises(AccessDenied):
        net.run(user.prepare(Sign(key_id, b"m"), now_ms=net.time_ms), km, client=user)
    net.run(net.client.prepare(SetPolicy(key_id, user_pub, (Permission.SIGN,)), now_ms=net.time_ms))
    assert net.run(user.prepare(Sign(key_id, b"m"), now_ms=net.time_ms), km, client=user).done
    # Other kinds of key.
    enc = create(net, KeyKind.ENCRYPT)
    with pytest.raises(KeyUnavailable):
        sign(net, enc, b"m", material(net, enc))
    homomorphic = create(net, KeyKind.HOMOMORPHIC)
    with pytest.raises(KeyUnavailable):
        sign(net, homomorphic, b"m", material(net, homomorphic))


def test_a_message_over_the_limit_never_reaches_the_log(net: LocalNetwork) -> None:
    prepared = net.client.prepare(Sign("key-00", b"x" * (MAX_SIGN_MESSAGE + 1)))
    with pytest.raises(MalformedMessage):
        Request.decode(prepared.payload)
    assert Request.decode(net.client.prepare(Sign("key-00", b"x" * MAX_SIGN_MESSAGE)).payload)


def test_a_partial_for_another_key_is_named(net: LocalNetwork) -> None:
    key_id, other = create(net), create(net)
    km = material(net, key_id)

    # Answers are taken in node order: node 1's comes first.
    def relabel(response: Response) -> bytes:
        return net.resigned(1, response, result=dict(response.result or {}, key_id=other))

    net.byzantine[1] = relabel
    c = sign(net, key_id, b"m", km)
    assert c.done and c.misbehaving == {1}


def test_the_client_refuses_an_oversized_message_before_asking_anyone(net: LocalNetwork) -> None:
    import trio

    from kmsnode.client import AsyncDistributedKMS

    kms = AsyncDistributedKMS(genesis=net.genesis, identity=Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="digest"):
        trio.run(kms.sign, "key-0011", b"x" * (MAX_SIGN_MESSAGE + 1))
