"""Bus-level command timing: the statistics on synthetic timestamps (exact, no clock), the send schedule's
grid recovery, and `rtctl deploy` leaving the emulator's goal log and its summary beside the driver's."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rtctl.drivers.bus_stats import KEYS, BusStats, SendSchedule, interval_summary, log_summary

ROOT = Path(__file__).resolve().parents[1]
P = 1_000_000_000 // 30  # ns


def test_counts_intervals_and_ages_from_timestamps():
    b = BusStats(P / 1e9)
    stamps = [k * P for k in range(6)]
    for _ in stamps:
        b.post()
    b.take(1)
    b.wrote(stamps[0] + 2_000_000, stamps[0], stamps[0] + 1_000_000)
    b.take(3)  # version 2 was replaced by 3 before the I/O thread got to it
    b.wrote(stamps[2] + 2_000_000, stamps[2], stamps[2] + 1_000_000)
    b.take(4)
    b.wrote(stamps[3] + 7_000_000, stamps[3], stamps[3] + 1_000_000)
    b.take(6)
    b.wrote(stamps[5] + 2_000_000, stamps[5], stamps[5] + 1_000_000)
    s = b.summary()
    assert tuple(s) == KEYS
    assert (s["posted"], s["sent"], s["replaced"]) == (6, 4, 2)
    # intervals: 2P, P + 5 ms, 2P − 5 ms; two of them are over 1.5 periods
    assert s["intervals_over_1p5_periods"] == 2
    assert s["interval_ms_max"] == pytest.approx(2 * P / 1e6)
    assert s["age_ms_max"] == pytest.approx(7.0) and s["age_ms_p50"] == pytest.approx(2.0)


def test_ring_buffer_keeps_the_window_and_whole_run_counts():
    b = BusStats(P / 1e9, window=8)
    for k in range(100):
        b.post()
        b.take(k + 1)
        late = 20_000_000 if k == 10 else 0  # one late write early in the run, outside the last window
        b.wrote(k * P + late, k * P, k * P)
    s = b.summary()
    assert (s["posted"], s["sent"], s["replaced"]) == (100, 100, 0)
    assert s["interval_ms_p99"] == pytest.approx(P / 1e6)  # the window holds only regular intervals
    assert s["interval_ms_max"] == pytest.approx((P + 20_000_000) / 1e6)  # the extremes are whole-run
    assert s["age_ms_max"] == pytest.approx(20.0)
    assert b.timeline()["write_ns"].tolist() == [k * P for k in range(92, 100)]


def test_resends_count_as_writes_not_as_sent_commands():
    b = BusStats(0.01)
    b.post()
    b.take(1)
    for k in range(5):
        b.wrote(k * 10_000_000, 0, 0, new=k == 0)
    s = b.summary()
    assert (s["sent"], b.writes) == (1, 5) and s["interval_err_ms_p99"] == pytest.approx(0.0)


def test_interval_summary_and_the_emulator_log(tmp_path):
    t = np.array([0, P, 2 * P, 4 * P, 5 * P])
    s = interval_summary(t, P / 1e9)
    assert s["intervals_over_1p5_periods"] == 1 and s["interval_ms_max"] == pytest.approx(2 * P / 1e6)
    assert set(s) == set(KEYS[3:8])
    log = tmp_path / "goals.jsonl"
    log.write_text("".join(json.dumps({"t_ns": int(x), "ids": [1], "goal": [2047]}) + "\n" for x in t) + '{"t_ns": 9')
    assert log_summary(str(log), P / 1e9) == {"received": 5, **s}  # the torn last line is skipped
    assert interval_summary(np.array([5]), 0.01)["interval_ms_p50"] is None


def test_send_schedule_recovers_the_tick_grid_and_never_holds_past_its_delay():
    sched = SendSchedule(P / 1e9, delay_s=0.004)
    t0 = 10 ** 12 + 1234
    for k in range(40):
        start_late = 2_000_000 if k % 7 == 3 else 50_000  # some ticks start late …
        stamp = t0 + k * P + start_late
        post = stamp + (900_000 if k % 5 else 1_500_000)  # … and their work before write() varies
        release = sched.release_ns(stamp, post)
        assert post <= release <= stamp + 4_000_000
        if k > 7:  # the grid is known: the release is the same phase whatever the tick's lateness
            assert release == t0 + k * P + 50_000 + 4_000_000
    assert sched.release_ns(t0 + 40 * P + 20_000_000, t0 + 40 * P + 25_000_000) == t0 + 40 * P + 25_000_000


def test_send_schedule_auto_delay_follows_the_posts_within_bounds():
    sched = SendSchedule(P / 1e9)
    for k in range(200):
        sched.release_ns(k * P, k * P + 2_000_000)
    assert sched.delay_ns == pytest.approx(3_000_000, abs=1)  # p99(post − scheduled) + 1 ms margin
    for k in range(200, 800):
        sched.release_ns(k * P, k * P + 30_000_000)  # a tick that posts almost a period late
    assert sched.delay_ns == P // 2  # capped: a command is never held more than half a period


def test_deploy_leaves_the_emulator_goal_log_and_both_bus_summaries(tmp_path):
    from rtctl.runtime.deploy import main

    cfg = yaml.safe_load((ROOT / "configs/so101_emulated.yaml").read_text())
    cfg["driver"]["robot"]["calibration_dir"] = str(ROOT / "configs/calibration")
    cfg.update(actor={"enabled": False}, plots=False, estop={"key": False, "address": None})
    cfg["policy"]["extra_latency_ms"] = 0
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = main(path, tmp_path / "run", duration=1.5)
    summary = json.loads((out / "summary.json").read_text())
    emu = summary["bus_emulator"]
    lines = (out / "emulator_goals.jsonl").read_text().splitlines()
    assert emu["received"] == len(lines) == summary["emulator"]["goals"] > 0
    assert set(emu) == {"received", *KEYS[3:8]}
    if "bus" in summary:  # the runtime adds the driver's own figures
        assert summary["bus"]["sent"] == emu["received"] and summary["bus"]["posted"] == summary["ticks"]
