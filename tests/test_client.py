"""The trio client's request plumbing over fake node sessions answering from an in-process
network: what a misbehaving node's answers, a malformed ciphertext, a key that never becomes
ready and same-millisecond requests do to a call."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kmsnode import net
from kmsnode.client._async import AsyncDistributedKMS
from kmsnode.client._core import ClientCore, NonceSource
from kmsnode.client._results import KeyMetadata
from kmsnode.client.errors import (
    ClientError,
    GenesisMismatch,
    InvalidCiphertextError,
    KeyUnavailable,
    QuorumUnavailable,
    RequestRejected,
)
from kmsnode.crypto import tdh2
from kmsnode.testing import LocalNetwork
from kmsnode.wire.payload import client_payload
from kmsnode.wire.requests import CreateKey, KeyKind, ListKeys, RefreshKey, Request, Sign
from kmsnode.wire.responses import Response
from kmsnode.wire.vouch import vouch_valid


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalNetwork]:
    network = LocalNetwork(tmp_path)
    yield network
    network.close()


class FakeSession:
    """One node's session: the first node asked commits the request; each answers from the
    in-process network's outbox, or with what ``answer`` makes of it."""

    def __init__(self, local: LocalNetwork, node: int, peer: str, answer: Any = None) -> None:
        self.local, self.node, self.peer, self.answer = local, node, peer, answer
        self.asked = 0
        self.stats = types.SimpleNamespace(connected=True)
        self.genesis_digest = local.genesis.digest()

    async def request(self, envelope: net.Envelope, timeout: float) -> list[net.Envelope]:
        if envelope.kind == "genesis":
            return [net.Envelope("genesis", self.genesis_digest)]
        self.asked += 1
        body = envelope.body
        req = Request.decode(body["request"])
        # Every submit carries the client's proof that its connection is its own.
        assert vouch_valid(req.client, body["vouch"], self.local.genesis.chain_id, self.peer)
        if req.request_id not in self.local.outbox:
            self.local.commit(client_payload(req))
            self.local.settle()
        if self.answer is not None:
            return list(self.answer)
        return [net.Envelope("resp", self.local.outbox[req.request_id][self.node])]


def client_for(local: LocalNetwork, answers: dict[int, Any]) -> AsyncDistributedKMS:
    kms = AsyncDistributedKMS(genesis=local.genesis, identity=local.admin, timeout=5.0)
    kms.core.nonces.next = lambda now_ms=None: NonceSource.next(  # type: ignore[method-assign]
        kms.core.nonces, local.time_ms
    )
    peer = kms._host.peer_id.to_base58()
    kms._sessions = {i: FakeSession(local, i, peer, answers.get(i)) for i in local.genesis.ids}  # type: ignore[dict-item]
    return kms


@pytest.mark.parametrize(
    "bad",
    [
        [net.Envelope("err", None)],
        [net.Envelope("err", "not a mapping")],
        [net.Envelope("err", {"reason": 7})],
        [net.Envelope("resp", b"not a response")],
        [net.Envelope("resp", None)],
        [],
    ],
    ids=["err-none", "err-str", "err-odd-reason", "garbage-resp", "resp-none", "nothing"],
)
async def test_one_node_answering_nonsense_does_not_fail_the_call(
    local: LocalNetwork, bad: list[net.Envelope]
) -> None:
    kms = client_for(local, {1: bad})
    created = await kms._call(CreateKey(KeyKind.ENCRYPT, "c"))
    assert created["key_id"].startswith("key-")
    assert await kms.list_keys() == [created["key_id"]]


async def test_a_malformed_ciphertext_is_the_opaque_error_before_any_request(
    local: LocalNetwork,
) -> None:
    kms = client_for(local, {})
    for junk in (b"", b"\x00" * 10, b"garbage" * 40):
        with pytest.raises(InvalidCiphertextError):
            await kms.decrypt(junk, {"app": "x"})
    assert all(s.asked == 0 for s in kms._sessions.values())  # type: ignore[attr-defined]


async def test_a_key_that_never_gets_ready_is_key_unavailable_not_a_trio_error(
    local: LocalNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms = client_for(local, {})

    async def pending(key_id: str) -> KeyMetadata:
        await trio.sleep(0)
        return KeyMetadata.from_result(
            {
                "key_id": key_id,
                "kind": "encrypt",
                "description": "",
                "state": "pending",
                "current_version": None,
                "created_height": 1,
                "created_ms": 0,
                "versions": [],
            }
        )

    monkeypatch.setattr(kms, "describe_key", pending)
    with pytest.raises(KeyUnavailable, match="not enabled within"):
        await kms.wait_for_key("key-x", timeout=0.05)


def test_requests_made_in_one_millisecond_get_distinct_nonces_and_are_all_served(
    local: LocalNetwork,
) -> None:
    # 16 random bits per nonce made two of ~2,000 same-ms requests share one almost surely,
    # and the log drops the second as a replay (no answer at all).
    core = ClientCore(local.genesis, local.admin)
    nonces = [core.prepare(ListKeys(), now_ms=local.time_ms).request.nonce for _ in range(2000)]
    assert len(set(nonces)) == len(nonces)
    assert all(n >> 16 >= local.time_ms for n in nonces)
    prepared = [core.prepare(ListKeys(), now_ms=local.time_ms) for _ in range(3)]
    local.commit(*(client_payload(p.request) for p in prepared))
    for p in prepared:
        assert len(local.outbox[p.request_id]) == local.n  # every node answered every one


def test_nonce_source_never_repeats_even_past_a_millisecond_or_a_clock_step() -> None:
    src = NonceSource()
    seen = [src.next(1000) for _ in range(70_000)]  # more than 2**16 in one ms
    seen += [src.next(999) for _ in range(10)]  # the clock stepped back
    assert len(set(seen)) == len(seen)
    assert seen == sorted(seen)


def test_a_genesis_that_tolerates_no_fault_is_refused(local: LocalNetwork) -> None:
    # f = 0 would make a client take a single node's answer (f + 1 matching).
    from kmsnode.errors import ConfigError
    from kmsnode.testing import make_genesis

    with pytest.raises(ConfigError, match="f >= 1"):
        make_genesis(local.identities, local.genesis.admins, f=0, t=1)
    assert make_genesis(local.identities, local.genesis.admins, f=1, t=3).f == 1


def test_testnet_cli_takes_dir_before_or_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from testnet.__main__ import main

    for argv in (["down", "--purge", "--dir"], ["--dir"]):
        target = tmp_path / "tn"
        target.mkdir()
        (target / "marker").write_text("x")
        args = (
            [*argv, str(target)] if argv[0] == "down" else [*argv, str(target), "down", "--purge"]
        )
        assert main(args) == 0
        assert not target.exists()  # the directory named, wherever --dir stood, was purged
    with pytest.raises((FileNotFoundError, ValueError), match=str(tmp_path / "nowhere")):
        main(["status", "--dir", str(tmp_path / "nowhere")])


class SilentOnce(FakeSession):
    """A node that takes the first attempt and never answers it (as one that restarted after
    receiving it would), then answers normally."""

    async def request(self, envelope: net.Envelope, timeout: float) -> list[net.Envelope]:
        if self.asked == 0:
            self.asked += 1
            await trio.sleep_forever()
        return await super().request(envelope, timeout)


async def test_a_silent_node_is_asked_again_within_the_deadline(local: LocalNetwork) -> None:
    kms = client_for(local, {})
    kms.attempt_timeout = 0.2
    # Only node 4 answers a first attempt: f + 1 = 2 matching answers need a retry.
    peer = kms._host.peer_id.to_base58()
    sessions = {i: SilentOnce(local, i, peer) for i in (1, 2, 3)}
    kms._sessions.update(sessions)  # type: ignore[arg-type]
    with trio.fail_after(4):
        created = await kms._call(CreateKey(KeyKind.ENCRYPT, "c"))
    assert created["key_id"].startswith("key-")
    assert max(s.asked for s in sessions.values()) >= 2


async def test_a_nonce_taken_by_another_request_is_signed_again_once(
    local: LocalNetwork,
) -> None:
    # Another process with the same identity was served first under nonce N; this client's
    # first attempt draws N too: the nodes refuse it by reply, and the client signs anew.
    taken = (local.time_ms << 16) | 0x0101
    other = ClientCore(local.genesis, local.admin)
    other.nonces.next = lambda now_ms=None: taken  # type: ignore[method-assign]
    served = local.run(other.prepare(ListKeys()))
    assert served.done
    kms = client_for(local, {})
    draws = iter([taken])
    fresh = kms.core.nonces.next
    kms.core.nonces.next = lambda now_ms=None: next(draws, None) or fresh(now_ms)  # type: ignore[method-assign]
    created = await kms._call(CreateKey(KeyKind.ENCRYPT, "under a fresh nonce"))
    assert created["key_id"].startswith("key-")
    assert next(draws, None) is None  # the taken nonce was drawn, then a fresh one


async def test_a_ciphertext_naming_an_absent_key_or_version_is_the_opaque_error(
    local: LocalNetwork,
) -> None:
    kms = client_for(local, {})
    key_id = (await kms._call(CreateKey(KeyKind.ENCRYPT, "c")))["key_id"]
    await kms.wait_for_key(key_id, timeout=5.0)
    ct = await kms.encrypt(key_id, b"secret", {"app": "x"})
    assert await kms.decrypt(ct, {"app": "x"}) == b"secret"
    # The layout: format, scheme, key id length, key id, version (4 bytes, big-endian), ...
    kid_end = 3 + ct[2]
    assert ct[3:kid_end] == key_id.encode()
    absent_key = ct[: kid_end - 1] + (b"x" if ct[kid_end - 1 : kid_end] != b"x" else b"y")
    absent_key += ct[kid_end:]
    impossible_key = ct[: kid_end - 1] + b"/" + ct[kid_end:]  # no key id has a '/'
    absent_version = ct[:kid_end] + (99).to_bytes(4, "big") + ct[kid_end + 4 :]
    for tampered in (absent_key, impossible_key, absent_version):
        with pytest.raises(InvalidCiphertextError):
            await kms.decrypt(tampered, {"app": "x"})


async def test_a_ciphertext_naming_a_version_that_never_became_active_is_the_opaque_error(
    local: LocalNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms = client_for(local, {})
    key_id = (await kms._call(CreateKey(KeyKind.ENCRYPT, "c")))["key_id"]
    real = await kms.wait_for_key(key_id, timeout=5.0)
    ct = await kms.encrypt(key_id, b"secret", {"app": "x"})
    for state in ("pending", "failed"):
        fresh = client_for(local, {})  # no cached key material
        shown = real.to_json()
        shown["versions"] = [{**shown["versions"][0], "state": state}]

        async def describe(key_id: str, shown: dict = shown) -> KeyMetadata:  # type: ignore[type-arg]
            await trio.sleep(0)
            return KeyMetadata.from_result(shown)

        monkeypatch.setattr(fresh, "describe_key", describe)
        with pytest.raises(InvalidCiphertextError):
            await fresh.decrypt(ct, {"app": "x"})


class Mute(FakeSession):
    """A node that takes every request and never answers (down after receiving them)."""

    async def request(self, envelope: net.Envelope, timeout: float) -> list[net.Envelope]:
        self.asked += 1
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_silent_frost_signer_fails_its_attempt_and_is_passed_over(
    local: LocalNetwork,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key_id = local.create_key(KeyKind.SIGN_ED25519)
    kms = client_for(local, {})
    kms.signer_wait = 0.2
    public_key = Ed25519PublicKey.from_public_bytes(local.key_material(key_id).public_key)
    peer = kms._host.peer_id.to_base58()
    kms._sessions[4] = Mute(local, 4, peer)  # type: ignore[assignment]
    # The log does not know node 4 is down (it still proposes here): whenever it picks it,
    # the attempt fails after signer_wait and the next one asks the log to pass it over.
    with trio.fail_after(20):
        for k in range(12):
            message = b"m%d" % k
            public_key.verify(await kms.sign(key_id, message), message)
            if 4 in kms.avoidance.until:
                break
    assert 4 in kms.avoidance.until, "the log never picked node 4 in 12 signatures"
    with trio.fail_after(5):
        for k in range(5):  # passed over: no more waiting on it
            public_key.verify(await kms.sign(key_id, b"n%d" % k), b"n%d" % k)


async def test_a_passed_over_signer_that_signs_validly_is_back(local: LocalNetwork) -> None:
    key_id = local.create_key(KeyKind.SIGN_ED25519)
    kms = client_for(local, {})
    far = trio.current_time() + 600
    kms.avoidance.until = {1: far, 2: far}
    # t = 3 of 4 with two passed over: the log must take one of them, and it signs validly.
    with trio.fail_after(5):
        await kms.sign(key_id, b"m")
    assert len(kms.avoidance.until) == 1


async def test_a_frost_call_every_node_answered_without_a_package_ends_at_once(
    local: LocalNetwork,
) -> None:
    # No two nodes name the same package (f + 1 = 2 needed): once every node has answered
    # there is nothing to wait for, so the call ends well before its deadline.
    key_id = local.create_key(KeyKind.SIGN_ED25519)
    kms = client_for(local, {})
    kms.timeout = 20.0
    peer = kms._host.peer_id.to_base58()

    class OwnPackage(FakeSession):
        async def request(self, envelope: net.Envelope, timeout: float) -> list[net.Envelope]:
            answers = await super().request(envelope, timeout)
            if envelope.kind == "genesis":
                return answers
            response = Response.decode(answers[0].body)
            result = dict(response.result or {})
            if "commitments" in result:
                result["commitments"] = [c[:-1] + bytes([self.node]) for c in result["commitments"]]
            return [net.Envelope("resp", self.local.resigned(self.node, response, result=result))]

    kms._sessions = {i: OwnPackage(local, i, peer) for i in local.genesis.ids}  # type: ignore[assignment]
    kms._sessions[4].genesis_digest = b"\x04" * 32  # type: ignore[attr-defined]
    t0 = trio.current_time()
    with pytest.raises(QuorumUnavailable) as caught:
        await kms._call_with_material(Sign(key_id, b"m"), key_id, local.key_material(key_id))
    assert trio.current_time() - t0 < 5
    assert caught.value.genesis_differs == (4,)  # named, but one node is no quorum
    assert "nodes [4] run another genesis" in str(caught.value)


@pytest.mark.parametrize("other", [(1, 2, 3, 4), (2, 3, 4), (3, 4)])
async def test_a_failed_request_says_when_the_client_s_genesis_is_the_odd_one_out(
    local: LocalNetwork, other: tuple[int, ...]
) -> None:
    refusal = [net.Envelope("err", {"reason": "refused: MalformedMessage"})]
    kms = client_for(local, dict.fromkeys(local.genesis.ids, refusal))
    for i in other:
        kms._sessions[i].genesis_digest = b"\x09" * 32  # type: ignore[attr-defined]
    with pytest.raises(ClientError) as caught:
        await kms.list_keys()
    if len(other) >= 3:  # f + 1 differ and at most f run ours: the client's config is off
        assert isinstance(caught.value, GenesisMismatch)
        assert caught.value.nodes == other and caught.value.code == "genesis_mismatch"
    else:  # two against two: not the client's fault alone; the nodes' refusal stands
        assert isinstance(caught.value, RequestRejected)


async def test_the_genesis_check_never_replaces_the_error_it_explains(local: LocalNetwork) -> None:
    refusal = [net.Envelope("err", {"reason": "refused: MalformedMessage"})]
    kms = client_for(local, dict.fromkeys(local.genesis.ids, refusal))

    async def broken(envelope: net.Envelope, timeout: float) -> list[net.Envelope]:
        if envelope.kind == "genesis":
            raise TypeError("a session that fails oddly")
        return refusal

    for session in kms._sessions.values():
        session.request = broken  # type: ignore[method-assign]
    with pytest.raises(RequestRejected) as caught:
        await kms.list_keys()
    assert not isinstance(caught.value, GenesisMismatch)
    kms = client_for(local, {})
    assert await kms.check_genesis([1, 9]) == {1: "same"}  # 9: no such node, not asked


async def test_a_client_with_stale_keys_checks_the_answers_again_rather_than_ask_anew(
    local: LocalNetwork,
) -> None:
    # The key is refreshed after the client fetched its verification keys: the partials
    # carry the new epoch, the client fetches the keys again and checks the answers the
    # nodes keep for that very request: the log serves (and audits, and counts against a
    # sum limit) the decryption once.
    key_id = local.create_key()
    km0 = local.key_material(key_id)
    context = {"app": "stale"}
    ct = tdh2.encrypt(km0.public_key, b"once", key_id=key_id, key_version=1, context=context)
    local.run(local.client.prepare(RefreshKey(key_id), now_ms=local.time_ms))
    kms = client_for(local, {})
    kms._key_cache[(key_id, 1)] = km0
    decryptions = sum(e.op == "decrypt" for e in local.states[1].audit.entries)
    assert await kms.decrypt(ct, context) == b"once"
    assert sum(e.op == "decrypt" for e in local.states[1].audit.entries) == decryptions + 1
    assert kms._key_cache[(key_id, 1)].epoch == 1
