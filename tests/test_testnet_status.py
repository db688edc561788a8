"""``python -m testnet status``'s rules column (the upgrade drill reads it)."""

from __future__ import annotations

from testnet.__main__ import _rules_line


def test_the_status_line_says_which_rules_run_and_what_an_upgrade_waits_for() -> None:
    assert _rules_line({"version": 2, "nodes_lacking": {"3": [2]}}) == (
        "  rules v2 (v3: waiting for nodes [2])"
    )
    assert _rules_line({"version": 2, "pending": [3, 40, 30], "nodes_lacking": {"3": []}}) == (
        "  rules v2 (v3 at height 40) (v3: ready)"
    )
    assert _rules_line({"version": 3, "pending": None, "nodes_lacking": {}}) == "  rules v3"
    assert _rules_line(None) == ""
