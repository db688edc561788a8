"""A v2 network upgraded in place to v3 rules, over the in-process log: the nodes' keystores
record the rules the log now runs, a restart replays across the upgrade, and a node whose
software cannot apply the rules stops instead of guessing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmsnode.errors import LogRulesMismatch
from kmsnode.node import check_rules_version
from kmsnode.state import RULES_VERSION, KeyState, RulesActivated
from kmsnode.testing import LocalNetwork
from kmsnode.wire.requests import ActivateRules, ScheduleKeyDeletion

WEEK_S = 7 * 24 * 3600


def test_a_v2_network_upgrades_in_place_and_replays_across_it(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path, rules_version=2)
    try:
        key_id = net.create_key()
        net.commit(*(net.state_rules(i) for i in net.identities))
        c = net.run(net.client.prepare(ActivateRules(3, 10), now_ms=net.time_ms))
        assert c.done and c.result["version"] == 3
        at = c.result["height"]
        # Every node confirms after the activation (KMSNode does so by itself).
        net.commit(*(net.state_rules(i) for i in net.identities))
        while net.height < at:
            net.commit()
        for i, ex in net.executors.items():
            assert net.states[i].rules_version == 3
            assert ex.keystore.rules_version() == 3
            check_rules_version(net.genesis, ex.keystore)  # genesis v2, log now v3: fine
        c = net.run(net.client.prepare(ScheduleKeyDeletion(key_id, WEEK_S), now_ms=net.time_ms))
        assert c.done and c.result["state"] == "pending-deletion"
        net.restart(2)  # replays v2 blocks, the upgrade, then v3 blocks
        assert net.states[2].audit.head == net.states[1].audit.head
        assert net.states[2].keys[key_id].state is KeyState.PENDING_DELETION
    finally:
        net.close()


def test_a_node_whose_software_lacks_the_activated_rules_stops(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path)
    try:
        ex = net.executors[1]
        check_rules_version(net.genesis, ex.keystore)  # as a node does at its start
        with pytest.raises(LogRulesMismatch, match="the log says state rules v9"):
            ex.run(RulesActivated(9))
        assert ex.keystore.rules_version() == RULES_VERSION  # the mark did not move
        with pytest.raises(LogRulesMismatch):
            ex.replay(RulesActivated(9))
    finally:
        net.close()
