"""Proactive share refresh through the log: same public key, new epoch, old shares useless."""

from __future__ import annotations

from kmsnode.crypto import dkg, tdh2
from kmsnode.crypto.groups import RISTRETTO255
from kmsnode.crypto.shamir import interpolate
from kmsnode.state import ComputePartial, KeyState, SharesRefreshed, StartDkg
from kmsnode.wire.requests import (
    CreateKey,
    Decrypt,
    DescribeKey,
    Encrypt,
    KeyKind,
    Permission,
    RefreshKey,
    RotateKey,
    SetPolicy,
)

from .conftest import Client, Network
from .test_machine import create_key, replies

G = RISTRETTO255


def outcome(net: Network, client: Client, op: object, **kw: bool) -> set[str | None]:
    return {
        r.error for r in replies(net.send(client.request(op, at_ms=net.time_ms, **kw))).values()
    }


def test_refresh_keeps_the_public_key_and_moves_the_version_to_a_new_epoch(net: Network) -> None:
    key_id = create_key(net)
    before = net.states[1].keys[key_id].versions[0]
    pk, vks_before = before.public_key, dict(before.verification_keys)
    assert before.epoch == 0
    old_shares = {i: net.results[(i, key_id, 1)].share for i in range(1, net.n + 1)}
    rs = replies(net.send(net.admin.request(Encrypt(key_id), at_ms=net.time_ms)))
    assert pk is not None
    ct = tdh2.encrypt(rs[1].result["public_key"], b"kept", key_id=key_id, key_version=1)  # type: ignore[index]
    user = Client()
    grant = SetPolicy(key_id, user.public, (Permission.DECRYPT,))
    net.send(net.admin.request(grant, at_ms=net.time_ms))
    assert outcome(net, user, RefreshKey(key_id)) == {"access_denied"}  # decrypt is not admin

    effects = net.send(net.admin.request(RefreshKey(key_id), at_ms=net.time_ms))
    rs = replies(effects)
    assert {(r.error, str(r.result)) for r in rs.values()} == {  # type: ignore[index]
        (None, str({"key_id": key_id, "epochs": {"1": 1}}))
    }
    for es in effects.values():
        (start,) = [e for e in es if isinstance(e, StartDkg)]
        assert start.session.kind is dkg.Kind.RESHARE and start.session.epoch == 1
    # One refresh at a time; meanwhile the version serves under its old shares.
    assert outcome(net, net.admin, RefreshKey(key_id)) == {"refresh_in_progress"}
    described = replies(net.send(net.admin.request(DescribeKey(key_id), at_ms=net.time_ms)))
    assert all(r.result["versions"][0]["refreshing"] for r in described.values())  # type: ignore[index]
    effects = net.send(user.request(Decrypt(ct), at_ms=net.time_ms, reply=True))
    work = [e for es in effects.values() for e in es if isinstance(e, ComputePartial)]
    assert len(work) == net.n and {w.epoch for w in work} == {0}

    net.run_until(lambda: all(s.keys[key_id].versions[0].epoch == 1 for s in net.states.values()))
    assert all(
        any(isinstance(e, SharesRefreshed) and e.epoch == 1 for e in es)
        for es in net.effects.values()
    )
    for state in net.states.values():
        v = state.keys[key_id].versions[0]
        assert v.public_key == pk and v.refreshing_to is None and v.refresh_failure == ""
        assert v.verification_keys != vks_before and v.refreshed_height is not None
        assert v.verification_keys == net.states[1].keys[key_id].versions[0].verification_keys
    effects = net.send(user.request(Decrypt(ct), at_ms=net.time_ms, reply=True))
    work = [e for es in effects.values() for e in es if isinstance(e, ComputePartial)]
    assert {w.epoch for w in work} == {1}

    # The new shares match the new verification keys and reconstruct the same secret; old
    # shares mixed with new ones reconstruct nothing useful.
    new_shares = {i: net.results[(i, key_id, 1)].share for i in range(1, net.n + 1)}
    new_vks = net.states[1].keys[key_id].versions[0].verification_keys
    for i, share in new_shares.items():
        assert share is not None and G.encode(G.base_mul(share.value)) == new_vks[i]
        assert share.value != old_shares[i].value  # type: ignore[union-attr]

    def secret(points: dict[int, int]) -> bytes:
        return G.encode(G.base_mul(interpolate(points, G.order)))

    ids = (1, 2, 3)
    assert secret({i: new_shares[i].value for i in ids}) == pk  # type: ignore[union-attr]
    assert secret({i: old_shares[i].value for i in ids}) == pk  # type: ignore[union-attr]
    mixed = {1: old_shares[1].value, 2: new_shares[2].value, 3: new_shares[3].value}  # type: ignore[union-attr]
    assert secret(mixed) != pk
    # A second refresh moves on to epoch 2.
    rs = replies(net.send(net.admin.request(RefreshKey(key_id), at_ms=net.time_ms)))
    assert {str(r.result["epochs"]) for r in rs.values()} == {str({"1": 2})}  # type: ignore[index]
    net.run_until(lambda: all(s.keys[key_id].versions[0].epoch == 2 for s in net.states.values()))
    assert net.states[1].keys[key_id].versions[0].public_key == pk


def test_refresh_covers_every_active_version(net: Network) -> None:
    key_id = create_key(net)
    net.send(net.admin.request(RotateKey(key_id), at_ms=net.time_ms))
    assert outcome(net, net.admin, RefreshKey(key_id)) == {"rotation_in_progress"}
    net.run_until(lambda: all(s.keys[key_id].current.version == 2 for s in net.states.values()))  # type: ignore[union-attr]
    rs = replies(net.send(net.admin.request(RefreshKey(key_id), at_ms=net.time_ms)))
    assert {str(r.result["epochs"]) for r in rs.values()} == {str({"1": 1, "2": 1})}  # type: ignore[index]
    net.run_until(
        lambda: all(
            [v.epoch for v in s.keys[key_id].versions] == [1, 1] for s in net.states.values()
        )
    )


def test_refresh_refusals(net: Network) -> None:
    assert outcome(net, net.admin, RefreshKey("key-0000000000000000")) == {"key_not_found"}
    rs = replies(net.send(net.admin.request(CreateKey(KeyKind.ENCRYPT, "x"), at_ms=net.time_ms)))
    creating = rs[1].result["key_id"]  # type: ignore[index]
    assert outcome(net, net.admin, RefreshKey(creating)) == {"key_unavailable"}  # DKG running


def test_a_failed_refresh_leaves_the_version_serving_under_its_old_shares(net: Network) -> None:
    key_id = create_key(net)
    before = net.states[1].keys[key_id].versions[0]
    epoch, vks = before.epoch, dict(before.verification_keys)
    # Nodes 3 and 4 post nothing: two dealers, three needed (t = 3).
    original = net._actions

    def silence(i, s, actions):  # type: ignore[no-untyped-def]
        if i in (1, 2) or s.kind is dkg.Kind.DKG:
            original(i, s, actions)

    net._actions = silence  # type: ignore[method-assign]
    net.send(net.admin.request(RefreshKey(key_id), at_ms=net.time_ms))
    net.run_until(
        lambda: all(s.keys[key_id].versions[0].refreshing_to is None for s in net.states.values())
    )
    for state in net.states.values():
        v = state.keys[key_id].versions[0]
        assert v.epoch == epoch and v.verification_keys == vks
        assert "only 2 valid deals" in v.refresh_failure
        assert state.keys[key_id].state is KeyState.ENABLED
    assert not any(isinstance(e, SharesRefreshed) for es in net.effects.values() for e in es)
    # It can be tried again.
    net._actions = original  # type: ignore[method-assign]
    assert outcome(net, net.admin, RefreshKey(key_id)) == {None}


def test_a_version_that_cannot_be_refreshed_is_refused_not_fatal(net: Network) -> None:
    # Defence in depth: public values that do not make a session (never produced by a DKG)
    # must give every node the same refusal, not an exception out of apply.
    key_id = create_key(net)
    for state in net.states.values():
        state.keys[key_id].versions[0].public_key = b"\xff" * 32
    assert outcome(net, net.admin, RefreshKey(key_id)) == {"refresh_unavailable"}
    assert all(not s.sessions for s in net.states.values())
    assert all(s.keys[key_id].versions[0].refreshing_to is None for s in net.states.values())
