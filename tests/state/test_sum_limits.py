"""Sum limits on homomorphic keys (rules v4): each client gets at most N served
``decrypt_sum`` requests per window of log time, set by the key's admins; a replay agrees."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from kmsnode.crypto import elgamal
from kmsnode.state import ComputeSumPartial, KMSState
from kmsnode.state._sum_limits import SumUses
from kmsnode.wire import sums
from kmsnode.wire.requests import (
    DecryptSum,
    DescribeKey,
    KeyKind,
    Permission,
    RotateKey,
    ScheduleKeyDeletion,
    SetPolicy,
    SetSumLimit,
)

from .conftest import Client, Network
from .test_machine import create_key, replies


def _sum(net: Network, key_id: str, value: int, version: int = 1) -> bytes:
    pk = net.states[1].keys[key_id].version(version).public_key  # type: ignore[union-attr]
    assert pk is not None
    return sums.SumCiphertext(key_id, version, elgamal.encrypt_int(pk, value)).encode()


def _ask(net: Network, client: Client, op: object) -> set[tuple[str | None, str]]:
    """Every node's outcome: its reply's (error, message), or (None, "") for a partial."""
    effects = net.send(client.request(op, at_ms=net.time_ms, reply=True))  # type: ignore[arg-type]
    partials = {i for i, es in effects.items() if any(isinstance(e, ComputeSumPartial) for e in es)}
    outcome = {(r.error, r.message) for r in replies(effects).values()}
    return outcome | ({(None, "")} if partials else set())


def test_each_client_gets_at_most_n_sums_per_window(net: Network) -> None:
    key_id = create_key(net, KeyKind.HOMOMORPHIC)
    reader = Client()
    grant = SetPolicy(key_id, reader.public, (Permission.DECRYPT,))
    assert _ask(net, net.admin, grant) == {(None, "")}
    assert _ask(net, net.admin, SetSumLimit(key_id, 2, 60)) == {(None, "")}
    ct = _sum(net, key_id, 7)
    assert _ask(net, reader, DecryptSum(ct)) == {(None, "")}
    assert _ask(net, reader, DecryptSum(ct)) == {(None, "")}
    (refused,) = _ask(net, reader, DecryptSum(ct))
    assert refused[0] == "sum_limit" and "at most 2 sum(s) per 60 s per client" in refused[1]
    assert _ask(net, net.admin, DecryptSum(ct)) == {(None, "")}  # per client
    net.time_ms += 60_000  # the window moves on in log time
    assert _ask(net, reader, DecryptSum(ct)) == {(None, "")}
    # The key says so; the audit trail has the refusal with the key named.
    rs = replies(net.send(net.admin.request(DescribeKey(key_id), at_ms=net.time_ms)))
    assert {str(r.result.get("sum_limit")) for r in rs.values()} == {  # type: ignore[union-attr]
        str({"max_sums": 2, "window_s": 60})
    }
    entries = net.states[3].audit.entries
    assert [(e.op, e.key_id, e.outcome) for e in entries if e.outcome == "sum_limit"] == [
        ("decrypt_sum", key_id, "sum_limit")
    ]
    assert [e.detail for e in entries if e.op == "set_sum_limit"] == ["2 per 60 s"]
    # Lifted: no limit, and the key is described as before limits existed.
    assert _ask(net, net.admin, SetSumLimit(key_id, 0, 0)) == {(None, "")}
    for _ in range(3):
        assert _ask(net, reader, DecryptSum(ct)) == {(None, "")}
    rs = replies(net.send(net.admin.request(DescribeKey(key_id), at_ms=net.time_ms)))
    assert all("sum_limit" not in r.result for r in rs.values())  # type: ignore[operator]
    # A replay from the start derives the same trail.
    fresh = KMSState(net.genesis)
    for block in net.log:
        fresh.apply(block)
    assert fresh.audit.head == net.states[1].audit.head


def test_only_a_homomorphic_key_s_admins_set_a_limit(net: Network) -> None:
    key_id = create_key(net, KeyKind.HOMOMORPHIC)
    tdh2_key = create_key(net)
    assert {e for e, _ in _ask(net, Client(), SetSumLimit(key_id, 1, 60))} == {"access_denied"}
    assert {e for e, _ in _ask(net, net.admin, SetSumLimit(tdh2_key, 1, 60))} == {"wrong_key_kind"}
    assert net.states[1].keys[key_id].sum_limit is None


def test_under_v3_rules_the_log_drops_a_sum_limit_undecoded() -> None:
    net = Network()
    net.genesis = dataclasses.replace(net.genesis, rules_version=3)
    net.states = {i: KMSState(net.genesis) for i in net.identities}
    key_id = create_key(net, KeyKind.HOMOMORPHIC)
    rejected = net.states[1].rejected_payloads
    assert _ask(net, net.admin, SetSumLimit(key_id, 1, 60)) == set()
    assert net.states[1].rejected_payloads == rejected + 1
    assert not net.states[1].serves("set_sum_limit") and net.states[1].serves("decrypt_sum")


@given(
    st.integers(1, 5),
    st.integers(1, 100),
    st.lists(st.integers(0, 1000), min_size=1, max_size=60),
)
def test_sum_uses_count_exactly_the_sums_inside_the_window(
    max_sums: int, window_s: int, gaps: list[int]
) -> None:
    uses = SumUses()
    served: list[int] = []
    now = 0
    for gap in gaps:
        now += gap * 100
        inside = [t for t in served if t > now - window_s * 1000]
        wait = uses.take("k", b"c", now, (max_sums, window_s))
        if len(inside) < max_sums:
            assert wait == 0
            served.append(now)
        else:  # the oldest of the last max_sums leaves the window in exactly ``wait`` ms
            assert wait == inside[-max_sums] + window_s * 1000 - now > 0
    assert len(uses) <= max_sums


def test_a_limit_spans_key_versions_and_changes_count_what_was_served(net: Network) -> None:
    key_id = create_key(net, KeyKind.HOMOMORPHIC)
    assert _ask(net, net.admin, SetSumLimit(key_id, 3, 3600)) == {(None, "")}
    v1 = _sum(net, key_id, 1)
    for _ in range(2):
        assert _ask(net, net.admin, DecryptSum(v1)) == {(None, "")}
    # Lowered to 2: the two served in the window count; raised again, so do they.
    assert _ask(net, net.admin, SetSumLimit(key_id, 2, 3600)) == {(None, "")}
    assert {e for e, _ in _ask(net, net.admin, DecryptSum(v1))} == {"sum_limit"}
    assert _ask(net, net.admin, SetSumLimit(key_id, 3, 3600)) == {(None, "")}
    # A new version shares the key's count.
    assert _ask(net, net.admin, RotateKey(key_id)) == {(None, "")}
    net.run_until(
        lambda: all(s.keys[key_id].current.version == 2 for s in net.states.values())  # type: ignore[union-attr]
    )
    v2 = _sum(net, key_id, 2, version=2)
    assert _ask(net, net.admin, DecryptSum(v2)) == {(None, "")}
    assert {e for e, _ in _ask(net, net.admin, DecryptSum(v1))} == {"sum_limit"}
    # Lifted, nothing is remembered: a new limit starts from zero.
    assert _ask(net, net.admin, SetSumLimit(key_id, 0, 0)) == {(None, "")}
    assert all(len(s.sum_uses) == 0 for s in net.states.values())
    assert _ask(net, net.admin, SetSumLimit(key_id, 1, 3600)) == {(None, "")}
    assert _ask(net, net.admin, DecryptSum(v2)) == {(None, "")}
    # Frozen while its deletion is pending, like its grants.
    assert _ask(net, net.admin, ScheduleKeyDeletion(key_id, 7 * 24 * 3600)) == {(None, "")}
    assert {e for e, _ in _ask(net, net.admin, SetSumLimit(key_id, 5, 60))} == {"key_unavailable"}
