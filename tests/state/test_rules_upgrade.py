"""Upgrading a network's state rules in place: nodes say in the log which rules their software
applies, a genesis admin activates newer rules at a later height, and a replay from the start
derives the same state (v2 before that height, v3 from it)."""

from __future__ import annotations

import dataclasses

from kmsnode.state import (
    RULES_VERSION,
    SUPPORTED_RULES,
    KeyState,
    KMSState,
    RulesActivated,
    verify_chain,
)
from kmsnode.wire.payload import RulesPayload
from kmsnode.wire.requests import ActivateRules, ScheduleKeyDeletion

from .conftest import Client, Network
from .test_machine import create_key, replies

WEEK_S = 7 * 24 * 3600


def v2_network() -> Network:
    net = Network()
    net.genesis = dataclasses.replace(net.genesis, rules_version=2)
    net.states = {i: KMSState(net.genesis) for i in net.identities}
    return net


def statement(net: Network, node: int, versions: tuple[int, ...], seq: int = 1) -> bytes:
    payload = RulesPayload(node, seq, versions)
    return payload.signed(net.genesis.chain_id, net.identities[node].signing_key).encode()


def say_supported(net: Network, nodes: tuple[int, ...], versions: tuple[int, ...] = (2, 3)) -> None:
    net.commit(*(statement(net, i, versions, seq=net.height + 1) for i in nodes))


def outcome(net: Network, client: Client, op: object) -> set[str | None]:
    return {r.error for r in replies(net.send(client.request(op, at_ms=net.time_ms))).values()}  # type: ignore[arg-type]


def test_v2_rules_until_the_activation_height_then_v3_and_a_replay_agrees() -> None:
    net = v2_network()
    key_id = create_key(net)
    say_supported(net, (1, 2, 3, 4))
    assert all(s.nodes_lacking(3) == [] for s in net.states.values())
    rejected = net.states[1].rejected_payloads
    assert (
        replies(net.send(net.admin.request(ScheduleKeyDeletion(key_id, WEEK_S), at_ms=net.time_ms)))
        == {}
    )
    assert net.states[1].rejected_payloads == rejected + 1  # v2 cannot decode it, as before

    assert outcome(net, net.admin, ActivateRules(3, 9)) == set()  # too soon: dropped (v2)
    rs = replies(net.send(net.admin.request(ActivateRules(3, 10), at_ms=net.time_ms)))
    since, at = net.height, net.height + 10
    assert {(r.error, str(r.result)) for r in rs.values()} == {
        (None, str({"version": 3, "height": at}))
    }
    assert all(s.pending_rules == (3, at, since) for s in net.states.values())
    say_supported(net, (1, 2, 3, 4))  # every node confirms after the activation
    # Until that height: still v2 (a deletion is still dropped), and no second activation.
    assert (
        replies(net.send(net.admin.request(ScheduleKeyDeletion(key_id, WEEK_S), at_ms=net.time_ms)))
        == {}
    )
    assert outcome(net, net.admin, ActivateRules(3, 1)) == set()  # v2: refused silently
    while net.height < at - 1:
        net.tick()
    assert net.states[1].rules_version == 2
    effects = net.tick()
    assert all(RulesActivated(3) in es for es in effects.values())
    assert all(s.rules_version == 3 and s.pending_rules is None for s in net.states.values())
    assert outcome(net, net.admin, ScheduleKeyDeletion(key_id, WEEK_S)) == {None}
    assert {s.keys[key_id].state for s in net.states.values()} == {KeyState.PENDING_DELETION}
    # The audit trail names the activation request and the moment the rules changed.
    entries = net.states[2].audit.entries
    activation = [(e.op, e.detail) for e in entries if "rules" in e.op]
    assert activation == [("activate_rules", f"v3 at height {at}"), ("rules_activated", "v3")]
    verify_chain(entries)
    # Under v3 an activation that cannot happen is answered (and audited), not dropped.
    assert outcome(net, net.admin, ActivateRules(3, 10)) == {"rules_not_newer"}

    # A node replaying the whole log from the start derives the same state.
    fresh = KMSState(net.genesis)
    for block in net.log:
        fresh.apply(block)
    assert fresh.audit.head == net.states[1].audit.head
    assert fresh.rules_version == 3 and fresh.keys[key_id].state is KeyState.PENDING_DELETION


def test_activation_needs_every_node_to_run_software_that_applies_the_rules() -> None:
    net = v2_network()
    say_supported(net, (1, 2, 4))
    say_supported(net, (3,), versions=(2,))  # node 3's software applies v2 only
    before = net.states[1].audit.total
    # Under v2 every refusal is silent (v2 software dropped the request undecoded) ...
    for client, op in (
        (net.admin, ActivateRules(3, 10)),  # node 3 has not said it applies v3
        (Client(), ActivateRules(3, 10)),  # not a genesis admin
        (net.admin, ActivateRules(2, 10)),  # not newer
    ):
        assert outcome(net, client, op) == set()
    assert net.states[1].audit.total == before and net.states[1].pending_rules is None
    # ... and the state says why (the node tells a client the same before the log).
    refusal = net.states[1].activation_refusal(
        net.admin.request(ActivateRules(3, 10), at_ms=net.time_ms), ActivateRules(3, 10)
    )
    assert refusal is not None and refusal.code == "rules_unsupported" and "[3]" in refusal.message
    say_supported(net, (3,))  # node 3 upgraded: its newer statement replaces the old one
    assert outcome(net, net.admin, ActivateRules(3, 10)) == {None}
    assert outcome(net, net.admin, ActivateRules(3, 10)) == set()  # pending: dropped under v2


def test_an_activation_not_confirmed_by_every_node_does_not_take_effect() -> None:
    # Node 4 said it applies v3, then went back to v2 software (which cannot say anything):
    # it does not confirm after the activation, so the log stays on v2.
    net = v2_network()
    say_supported(net, (1, 2, 3, 4))
    assert outcome(net, net.admin, ActivateRules(3, 10)) == {None}
    at = net.states[1].pending_rules[1]  # type: ignore[index]
    say_supported(net, (1, 2, 3))
    effects: dict[int, list[object]] = {}
    while net.height < at:
        effects = net.tick()  # type: ignore[assignment]
    for s in net.states.values():
        assert s.rules_version == 2 and s.pending_rules is None
        last = s.audit.entries[-1]
        assert (last.op, last.outcome) == ("rules_activated", "rules_unsupported")
        assert last.detail == "v3: nodes [4] did not confirm"
    assert not any(RulesActivated(3) in es for es in effects.values())


def test_rules_statements_are_checked_and_only_the_latest_counts() -> None:
    net = v2_network()
    st = net.states[1]
    good = statement(net, 2, (2, 3), seq=5)
    forged = (
        RulesPayload(3, 9, (2, 3))
        .signed(net.genesis.chain_id, net.identities[2].signing_key)
        .encode()
    )  # node 2's key claiming to be node 3
    stranger = (
        RulesPayload(9, 1, (2, 3))
        .signed(net.genesis.chain_id, net.identities[2].signing_key)
        .encode()
    )
    net.commit(good, forged, stranger)
    assert st.rules_support == {2: (5, (2, 3), net.height)}
    assert st.rejected_payloads == 2
    at = net.height
    net.commit(statement(net, 2, (2,), seq=5), statement(net, 2, (2,), seq=4))  # not newer
    assert st.rules_support == {2: (5, (2, 3), at)}
    net.commit(statement(net, 2, (2,), seq=6))  # a node's newer software drops v3
    assert st.rules_support == {2: (6, (2,), net.height)} and 2 in st.nodes_lacking(3)
    assert len({str(s.rules_support) for s in net.states.values()}) == 1


def test_a_network_rejects_activating_what_no_node_applies(net: Network) -> None:
    newer = RULES_VERSION + 1
    say_supported(net, (1, 2, 3, 4), versions=SUPPORTED_RULES)
    assert outcome(net, net.admin, ActivateRules(newer, 10)) == {"rules_unsupported"}
    assert outcome(net, Client(), ActivateRules(newer, 10)) == {"access_denied"}
    assert outcome(net, net.admin, ActivateRules(newer, 9)) == {"activation_too_soon"}
    # Leaving nodes behind does not help when none applies the rules.
    assert outcome(net, net.admin, ActivateRules(newer, 10, (4,))) == {"rules_unsupported"}
    assert net.states[1].pending_rules is None and net.states[1].rules_version == RULES_VERSION


def network(rules_version: int) -> Network:
    net = Network()
    net.genesis = dataclasses.replace(net.genesis, rules_version=rules_version)
    net.states = {i: KMSState(net.genesis) for i in net.identities}
    return net


def run_to(net: Network, height: int) -> dict[int, list[object]]:
    effects: dict[int, list[object]] = {}
    while net.height < height:
        effects = net.tick()  # type: ignore[assignment]
    return effects


def test_a_v3_network_moves_to_v4_with_every_node_and_cannot_leave_one_behind_before() -> None:
    net = network(3)
    say_supported(net, (1, 2, 3), versions=(2, 3, 4))
    rejected = net.states[1].rejected_payloads
    # v3 software could not decode leave_behind: the log drops the request, as it did.
    assert outcome(net, net.admin, ActivateRules(4, 10, (4,))) == set()
    assert net.states[1].rejected_payloads == rejected + 1
    assert net.states[1].pending_rules is None
    assert outcome(net, net.admin, ActivateRules(4, 10)) == {"rules_unsupported"}  # node 4
    say_supported(net, (4,), versions=(2, 3, 4))
    assert outcome(net, net.admin, ActivateRules(4, 10)) == {None}
    at = net.states[1].pending_rules[1]  # type: ignore[index]
    say_supported(net, (1, 2, 3, 4), versions=(2, 3, 4))
    effects = run_to(net, at)
    assert all(RulesActivated(4) in es for es in effects.values())
    assert {s.rules_version for s in net.states.values()} == {4}


def test_under_v4_an_upgrade_may_leave_at_most_f_nodes_behind() -> None:
    net = network(4)
    newer = 5
    say_supported(net, (1, 2, 3), versions=(2, 3, 4, newer))
    say_supported(net, (4,), versions=(2, 3, 4))  # node 4 not upgraded (or down)
    assert outcome(net, net.admin, ActivateRules(newer, 10)) == {"rules_unsupported"}
    assert outcome(net, net.admin, ActivateRules(newer, 10, (3, 4))) == {"invalid_leave_behind"}
    assert outcome(net, net.admin, ActivateRules(newer, 10, (9,))) == {"invalid_leave_behind"}
    assert outcome(net, net.admin, ActivateRules(newer, 10, (3,))) == {"rules_unsupported"}
    assert outcome(net, Client(), ActivateRules(newer, 10, (4,))) == {"access_denied"}
    rs = replies(net.send(net.admin.request(ActivateRules(newer, 10, (4,)), at_ms=net.time_ms)))
    assert {r.error for r in rs.values()} == {None}
    since, at = net.states[1].pending_rules[2], net.states[1].pending_rules[1]  # type: ignore[index]
    say_supported(net, (1, 2, 3), versions=(2, 3, 4, newer))  # node 4 stays silent
    effects = run_to(net, at)
    # Every state moves on (node 4's own executor stops there: its software lacks v5).
    assert all(RulesActivated(newer) in es for es in effects.values())
    assert {s.rules_version for s in net.states.values()} == {newer}
    entries = net.states[2].audit.entries
    assert [(e.op, e.detail) for e in entries if "rules" in e.op][-2:] == [
        ("activate_rules", f"v{newer} at height {at}, may leave nodes [4] behind"),
        ("rules_activated", f"v{newer} without nodes [4] (left behind)"),
    ]
    assert since < at
    verify_chain(entries)


def test_a_node_not_left_behind_must_still_confirm_after_the_activation() -> None:
    net = network(4)
    say_supported(net, (1, 2, 3), versions=(2, 3, 4, 5))
    assert outcome(net, net.admin, ActivateRules(5, 10, (4,))) == {None}
    at = net.states[1].pending_rules[1]  # type: ignore[index]
    say_supported(net, (1, 2), versions=(2, 3, 4, 5))  # node 3 does not confirm again
    run_to(net, at)
    for s in net.states.values():
        assert s.rules_version == 4 and s.pending_rules is None
        last = s.audit.entries[-1]
        assert (last.op, last.outcome, last.detail) == (
            "rules_activated",
            "rules_unsupported",
            "v5: nodes [3] did not confirm",
        )


def test_the_block_that_puts_rules_in_force_is_known_before_it_is_applied() -> None:
    net = network(4)
    say_supported(net, (1, 2, 3), versions=(2, 3, 4, 5))
    assert outcome(net, net.admin, ActivateRules(5, 10, (4,))) == {None}
    at = net.states[1].pending_rules[1]  # type: ignore[index]
    st = net.states[1]
    assert st.upgrades.activating_at(at) is None  # nodes 1-3 have not confirmed since
    say_supported(net, (1, 2, 3), versions=(2, 3, 4, 5))
    assert st.upgrades.activating_at(at - 1) is None
    assert st.upgrades.activating_at(at) == 5  # a node without v5 stops before this block
    # A replay from the start, the activation still pending, derives the same state.
    fresh = KMSState(net.genesis)
    for block in net.log:
        fresh.apply(block)
    assert fresh.audit.head == st.audit.head
    assert (fresh.pending_rules, fresh.upgrades.leaving) == (st.pending_rules, (4,))
    run_to(net, at)
    assert st.rules_version == 5 and st.upgrades.activating_at(at + 1) is None


def test_under_v2_a_request_to_leave_nodes_behind_is_dropped_undecoded() -> None:
    net = network(2)
    say_supported(net, (1, 2, 3, 4), versions=(2, 3, 4))
    rejected = net.states[1].rejected_payloads
    # A plain activation would go through; with leave_behind v2 software could not decode it.
    assert outcome(net, net.admin, ActivateRules(3, 10, (4,))) == set()
    assert net.states[1].rejected_payloads == rejected + 1
    assert net.states[1].pending_rules is None
    assert outcome(net, net.admin, ActivateRules(3, 10)) == {None}


def test_refusal_words_are_v3_software_s_under_v3_and_name_leaving_behind_under_v4() -> None:
    for version, hint in ((3, False), (4, True)):
        net = network(version)
        say_supported(net, (1, 2, 3), versions=(2, 3, 4))
        rs = replies(net.send(net.admin.request(ActivateRules(5, 10), at_ms=net.time_ms)))
        messages = {r.message for r in rs.values()}
        assert len(messages) == 1
        message = messages.pop()
        assert message.endswith("upgrade them first (or leave at most f of them behind)") is hint
        assert message.endswith("upgrade them first") is not hint
