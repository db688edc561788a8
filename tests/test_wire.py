"""Client request encoding: canonical round trips, strict decoding, and the signature memo."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kmsnode.crypto.errors import CryptoError
from kmsnode.errors import MalformedMessage
from kmsnode.wire.payload import client_payload, decode_payload
from kmsnode.wire.requests import (
    MAX_DELETION_WAIT_S,
    OPERATIONS,
    ActivateRules,
    CancelKeyDeletion,
    CreateKey,
    Decrypt,
    DecryptSum,
    DescribeKey,
    DisableKey,
    EnableKey,
    Encrypt,
    GetPolicy,
    KeyKind,
    ListKeys,
    Operation,
    Permission,
    RefreshKey,
    Request,
    RotateKey,
    ScheduleKeyDeletion,
    SetPolicy,
    SetSumLimit,
    Sign,
)

KEY = Ed25519PrivateKey.generate()
CLIENT = KEY.public_key().public_bytes_raw()


def _request(nonce: int = 7, op: object = None) -> Request:
    return Request("chain", CLIENT, nonce, op or DescribeKey("key-1"), None).signed(KEY)


def test_round_trip_is_byte_exact() -> None:
    req = Request("chain", CLIENT, 9, Decrypt(b"ct" * 40, {"b": "2", "a": "1"}), b"k" * 1216)
    req = req.signed(KEY)
    data = req.encode()
    back = Request.decode(data)
    assert back == req
    assert back.encode() == data
    assert back.request_id == req.request_id
    back.verify()
    payload = decode_payload(client_payload(back))
    assert payload.request == req  # type: ignore[union-attr]


def test_non_canonical_bytes_are_refused() -> None:
    req = _request(nonce=7)
    fields = msgpack.unpackb(req.encode())

    def encode(nonce: bytes) -> bytes:
        parts = [msgpack.packb(v, use_bin_type=True) for v in fields]
        parts[3] = nonce
        return b"\x97" + b"".join(parts)

    assert Request.decode(encode(b"\x07")) == req  # canonical: a positive fixint
    with pytest.raises(MalformedMessage, match="canonical"):
        Request.decode(encode(b"\xcf" + (7).to_bytes(8, "big")))  # the same 7 as a uint64


def test_forged_signature_fails_even_after_the_genuine_request_verified() -> None:
    genuine = _request(nonce=11)
    genuine.verify()
    forged_sig = bytes([genuine.signature[0] ^ 1]) + genuine.signature[1:]
    forged = Request(genuine.chain_id, genuine.client, genuine.nonce, genuine.op, None, forged_sig)
    assert forged.request_id == genuine.request_id  # same content, other signature
    with pytest.raises((InvalidSignature, CryptoError)):
        forged.verify()
    genuine.verify()  # still fine (answered from the memo)


def test_changed_field_with_the_old_signature_fails() -> None:
    genuine = _request(nonce=12)
    genuine.verify()
    moved = Request(genuine.chain_id, genuine.client, 13, genuine.op, None, genuine.signature)
    with pytest.raises((InvalidSignature, CryptoError)):
        moved.verify()


def test_request_from_another_key_fails() -> None:
    other = Ed25519PrivateKey.generate()
    req = Request("chain", CLIENT, 14, DescribeKey("key-1"), None)
    signed_by_other = Request(
        req.chain_id, req.client, req.nonce, req.op, None, other.sign(req.signing_bytes())
    )
    with pytest.raises((InvalidSignature, CryptoError)):
        signed_by_other.verify()


@pytest.mark.parametrize(
    "data",
    [b"\x82\xa1a\x01\xc4\x01b\x02", b"\x91" * 600 + b"\xc0", b"\x91" * 1100 + b"\xc0"],
    ids=["mixed-keys", "deep-600", "deep-1100"],
)
def test_hostile_msgpack_is_malformed_for_every_decoder(data: bytes) -> None:
    from kmsnode.errors import MalformedMessage
    from kmsnode.wire._codec import unpack
    from kmsnode.wire.payload import decode_payload
    from kmsnode.wire.requests import Request
    from kmsnode.wire.responses import Response

    # Plain ``unpack`` may accept deep nesting that is valid canonical msgpack (whether the
    # re-encode fits depends on the interpreter's recursion limit); it raises nothing else.
    with contextlib.suppress(MalformedMessage):
        unpack(data)
    # Every typed decoder refuses these, whatever that limit, with MalformedMessage only.
    for decode in (decode_payload, Request.decode, Response.decode):
        with pytest.raises(MalformedMessage):
            decode(data)
    with pytest.raises(MalformedMessage):
        unpack(b"\x82\xa1a\x01\xc4\x01b\x02")  # unsortable keys are never canonical


_ALL_OPS: list[Operation] = [
    CreateKey(KeyKind.ENCRYPT, "d"),
    DescribeKey("key-1"),
    ListKeys(),
    Encrypt("key-1"),
    Decrypt(b"ct", {"a": "1"}),
    SetPolicy("key-1", b"c" * 32, (Permission.DECRYPT, Permission.ENCRYPT)),
    GetPolicy("key-1"),
    DisableKey("key-1"),
    EnableKey("key-1"),
    RotateKey("key-1"),
    RefreshKey("key-1"),
    Sign("key-1", b"m", (2, 3)),
    DecryptSum(b"sum"),
    ScheduleKeyDeletion("key-1", 7 * 86400),
    CancelKeyDeletion("key-1"),
    ActivateRules(3, 20),
    SetSumLimit("key-1", 1, 86400),
]
"""One of every operation (a new one must be added here: the test below checks)."""


@pytest.mark.parametrize(
    "op",
    _ALL_OPS,
    ids=lambda op: op.name,
)
def test_every_operation_round_trips_and_every_one_is_registered(op: Operation) -> None:
    assert OPERATIONS[op.name][0] is type(op)
    req = _request(op=op)
    back = Request.decode(req.encode())
    assert back == req and back.encode() == req.encode()
    # One field more or less than the operation has is malformed.
    fields = msgpack.unpackb(req.encode())
    for wrong in (fields[4] + ["extra"], fields[4][:-1]):
        if not wrong:
            continue  # list_keys has no field to drop
        bad = [*fields[:4], wrong, *fields[5:]]
        with pytest.raises(MalformedMessage):
            Request.decode(msgpack.packb(bad))
    assert set(OPERATIONS) == {op.name for op in _ALL_OPS}


@pytest.mark.parametrize("wait", [-1, MAX_DELETION_WAIT_S + 1, "7", 1.5, True, None])
def test_a_deletion_wait_out_of_range_or_not_an_integer_is_malformed(wait: object) -> None:
    fields = msgpack.unpackb(_request(op=ScheduleKeyDeletion("key-1", 60)).encode())
    fields[4][2] = wait
    with pytest.raises(MalformedMessage, match="wait_seconds"):
        Request.decode(msgpack.packb(fields))


def test_activate_rules_leave_behind_is_an_optional_sorted_field() -> None:
    plain = _request(op=ActivateRules(4, 20))
    # Without nodes to leave behind: the three fields v3 software encoded (logs replay alike).
    assert msgpack.unpackb(plain.encode())[4] == ["activate_rules", 4, 20]
    leaving = _request(op=ActivateRules(5, 20, (4, 2, 4)))
    assert leaving.op.leave_behind == (2, 4)  # type: ignore[union-attr]
    assert msgpack.unpackb(leaving.encode())[4] == ["activate_rules", 5, 20, [2, 4]]
    back = Request.decode(leaving.encode())
    assert back == leaving and back.encode() == leaving.encode()
    fields = msgpack.unpackb(leaving.encode())
    for wrong in ([], [4, 2], [2, 2], [0], ["2"], [True], list(range(1, 66)), 3, None):
        bad = [*fields[:4], ["activate_rules", 5, 20, wrong], *fields[5:]]
        with pytest.raises(MalformedMessage, match="leave_behind"):
            Request.decode(msgpack.packb(bad))
    bad = [*fields[:4], ["activate_rules", 5, 20, [2], "extra"], *fields[5:]]
    with pytest.raises(MalformedMessage):
        Request.decode(msgpack.packb(bad))


@pytest.mark.parametrize(
    ("max_sums", "window_s"),
    [(0, 60), (1, 0), (-1, 60), (1001, 60), (1, 30 * 86400 + 1), ("1", 60), (1, True)],
)
def test_a_sum_limit_out_of_range_or_half_lifted_is_malformed(
    max_sums: object, window_s: object
) -> None:
    fields = msgpack.unpackb(_request(op=SetSumLimit("key-1", 1, 60)).encode())
    fields[4][2:4] = [max_sums, window_s]
    with pytest.raises(MalformedMessage):
        Request.decode(msgpack.packb(fields))
    lifted = _request(op=SetSumLimit("key-1", 0, 0))
    assert Request.decode(lifted.encode()) == lifted
