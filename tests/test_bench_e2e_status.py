"""The benchmark's phase arithmetic: CPU per decrypt, blocks per decrypt, fsync deltas."""

from __future__ import annotations

import pytest

from ._scripts import load_script


@pytest.fixture(scope="module")
def status():
    return load_script("_bench_e2e_status")


def test_cpu_lines_divide_each_process_cpu_by_completed_decrypts(status):
    c0 = {"client": 1.0, "node 1": 2.0, "_busy": 10.0, "_total": 100.0}
    c1 = {"client": 3.0, "node 1": 3.0, "_busy": 14.0, "_total": 120.0}
    lines = status.cpu_lines("half-load run", 10.0, 500, c0, c1, 0.005, 40.0)
    text = "\n".join(lines)
    assert "50.0 dec/s, 0.80 blocks per decrypt" in lines[0]
    assert "client    20.0% of a core      4.0 ms/decrypt" in text
    assert "node 1    10.0% of a core      2.0 ms/decrypt" in text
    assert "ours      30.0% of a core      6.0 ms/decrypt  (crypto ceiling: 5.0 ms" in text
    # 4 of 20 core-seconds busy; ours used 3 of them: the rest is 10% of a core.
    assert "machine busy 20% of all cores; other processes (not this benchmark) 10%" in text


def test_cpu_lines_say_nothing_without_samples_or_decrypts(status):
    assert status.cpu_lines("x", 10.0, 0, {"_busy": 0}, {"_busy": 1}, 0.005, 1.0) == []
    assert status.cpu_lines("x", 10.0, 5, {}, {}, 0.005, 1.0) == []


def test_fsync_delta_counts_only_the_phase(status):
    before = {"consensus_fsync": {"count": 10, "sum": 0.02, "buckets": [[0.001, 5], [0.002, 10]]}}
    after = {"consensus_fsync": {"count": 30, "sum": 0.06, "buckets": [[0.001, 5], [0.002, 30]]}}
    count, mean_ms, p50, p90 = status.fsync_delta(before, after)
    assert count == 20 and mean_ms == pytest.approx(2.0)
    assert 1.0 <= p50 <= 2.0 and 1.0 <= p90 <= 2.0
    assert status.fsync_delta({}, after) is None


def test_stat_deltas_per_node_in_id_order(status):
    s0 = {2: {"consensus_stats": {"timeouts_sent": 1}}, 1: None}
    s1 = {
        1: {"consensus_stats": {"timeouts_sent": 4}},
        2: {"consensus_stats": {"timeouts_sent": 1}},
    }
    assert status.stat_deltas(s0, s1, "timeouts_sent") == [4, 0]


def test_segment_p50s_split_by_send_time(status):
    starts = [0.0, 1.0, 2.0, 5.5, 6.0, 9.0, 10.2]
    lats = [0.01, 0.03, 0.02, 0.1, 0.3, 0.2, 0.5]
    # 10.2 s of sends: two 5-s segments; the last request joins the second.
    assert status.segment_p50s(starts, lats, 5.0) == [0.02, 0.25]
    assert status.segment_p50s([], [], 5.0) == []
    assert status.segment_p50s([1.0], [0.5], 5.0) == [0.5]


def test_ceiling_note_flags_a_machine_whose_speed_moved_during_the_run(status):
    # Ceilings 5.0 and 5.5 ms per decrypt: within 20%, nothing to add.
    assert status.ceiling_note(0.005, 0.0055, 100.0) == "the faster one is the ceiling above"
    # 3.83 vs 6.66 ms (seen on this VM): 74% apart; 115.8/s is 44% of the faster, 77% of
    # the slower.
    note = status.ceiling_note(0.00383, 0.00666, 115.8)
    assert "differ by 74%" in note and "the ratio is 77%" in note
    assert status.ceiling_note(0.00666, 0.00383, 115.8) == note  # order does not matter


def test_soak_rows_show_latency_by_minute_what_grew_and_the_rss_trend(status):
    import types

    soak = types.SimpleNamespace(
        rate=68.0,
        latencies=[0.04] * 100 + [0.08] * 100,  # the second minute is slower
        starts=[i * 0.6 for i in range(200)],
        status0={1: {"memory": {"replay_window": 10, "keys": 1}}},
        status1={1: {"memory": {"replay_window": 900, "keys": 1}}},
    )
    rss = {1: [(float(t), 100 + t / 60) for t in range(0, 121)]}  # +1 MB/min
    out: list[tuple[str, ...]] = []
    status.soak_rows(120, soak, rss, lambda *cells: out.append(cells))
    rows = {r[0].strip(): r for r in out}
    assert rows["soak p50 by minute"][1] == "40 80 ms"
    assert rows["node 1 memory() before -> after"][3] == "replay_window 10->900"
    assert rows["node 1 RSS trend"][3].startswith("+1.00 MB/min")


def test_curve_line_shows_cpu_per_decrypt_busy_and_blocks(status):
    c0 = {"client": 1.0, "node 1": 2.0, "_busy": 10.0, "_total": 100.0}
    c1 = {"client": 2.0, "node 1": 4.0, "_busy": 15.0, "_total": 110.0}
    line = status.curve_line(0.25, 50.0, 400, 8.0, 0.021, 0.058, c0, c1, 760)
    # 3 CPU-seconds over 400 decrypts; 5 of 10 core-seconds busy; 760 blocks over 400.
    assert line.split() == ["0.25", "50.0", "50.0", "21.0", "58.0", "7.5", "50%", "1.90"]
    assert "no decrypt completed" in status.curve_line(0.1, 5.0, 0, 8.0, 0, 0, c0, c1, None)


def test_curve_table_has_a_row_per_load_and_nothing_without_the_curve(status):
    from types import SimpleNamespace

    def phase(rate, blocks):
        return SimpleNamespace(
            offered=rate,
            rate=rate,
            latencies=[0.02] * int(rate * 10),
            seconds=10.0,
            cpu0={"node 1": 0.0, "_busy": 0.0, "_total": 0.0},
            cpu1={"node 1": 1.0, "_busy": 10.0, "_total": 20.0},
            status0={1: {"height": 100}},
            status1={1: {"height": 100 + blocks}},
        )

    half, sus = phase(50.0, 500), phase(100.0, 200)
    assert status.curve_table([(0.5, half), (1.0, sus)]) == []
    table = status.curve_table([(0.25, phase(25.0, 480)), (0.5, half), (1.0, sus)])
    rows = table[3:]
    assert [r.split()[0] for r in rows] == ["0.25", "0.50", "1.00"]
    assert rows[0].split()[-1] == "1.92" and rows[2].split()[-1] == "0.20"  # blocks per decrypt
    # A phase whose statuses are missing still gets its row, with the blocks unknown.
    bare = phase(25.0, 0)
    bare.status1 = {}
    assert status.curve_table([(0.25, bare), (0.5, half), (1.0, sus)])[3].split()[-1] == "?"
