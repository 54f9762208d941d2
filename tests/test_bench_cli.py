"""`rtctl bench`: option parsing (--quick, --policies), set-up/benchmark timing, the reaction floor and the
async tables — all without running a benchmark."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from rtctl.bench import async_chunks as ac
from rtctl.bench import async_table, async_wall
from rtctl.bench.common import run_timed
from rtctl.cli import app


def test_reaction_floor_is_delta_over_rate():
    assert ac.reaction_floor((0, 2, 4, 8)) == {"0": 0.0, "2": 2 / 30, "4": 4 / 30, "8": 8 / 30}


def _row(mode, **kw):
    return {"task": "whack", "policy": "bc", "clock": "virtual", "delay_steps": 4, "q": 1, "mode": mode,
            "task_time_s": 1.0, "success_rate": 1.0, "seam_jump_p95": 2.0, "reaction_latency_s_p50": 0.5, **kw}


def test_headline_reaction_at_the_floor_is_ratio_one():
    rows = [_row("sync"), _row("async"), _row("async_rollforward"),
            _row("replan_rollforward", reaction_latency_s_p50=4 / 30)]
    fig = ac.headline(rows, [], ac.reaction_floor((0, 4)), ("bc",))
    assert fig["whack/bc"]["replan_reaction_p50_over_floor"] == pytest.approx(1.0)


def test_parse_policies():
    assert ac.parse_policies(None) == ("bc", "bc_offset")
    assert ac.parse_policies("") == ("bc", "bc_offset")
    assert ac.parse_policies("bc,bc_offset,lerobot_act,lerobot_act_offset") == ac.ALL_POLICIES
    assert ac.parse_policies(" lerobot_act , bc,bc ") == ("lerobot_act", "bc")
    with pytest.raises(ValueError, match="unknown policy 'act'"):
        ac.parse_policies("bc,act")


def test_cli_rejects_bad_policies_before_running(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["bench", "async", "--quick", "--policies", "bc,nope", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "unknown policy 'nope'" in r.output
    r = runner.invoke(app, ["bench", "tick", "--quick", "--policies", "bc", "--out", str(tmp_path / "t")])
    assert r.exit_code == 2 and "takes no --policies" in r.output
    assert not (tmp_path / "a" / "results.json").exists() and not (tmp_path / "t").exists()


def test_run_timed_splits_setup_from_bench(tmp_path):
    calls = []
    mod = SimpleNamespace(setup=lambda out, quick, **kw: calls.append(("setup", quick, kw)) or {"trained": ["bc/x"]},
                          run=lambda out, quick, **kw: calls.append(("run", quick, kw)) or [{"a": 1}])
    rows, timing = run_timed("demo", mod, tmp_path, True, policies=("bc",))
    assert rows == [{"a": 1}]
    assert calls == [("setup", True, {"policies": ("bc",)}), ("run", True, {"policies": ("bc",)})]
    saved = json.loads((tmp_path / "timing.json").read_text())
    assert saved == timing and saved["trained"] == ["bc/x"] and saved["options"] == {"policies": ["bc"]}
    assert saved["setup_s"] >= 0 and saved["bench_s"] >= 0
    no_setup = SimpleNamespace(run=lambda out, quick: [])
    assert run_timed("plain", no_setup, tmp_path / "p", False)[1]["trained"] == []


def test_hits_per_min():
    assert ac.hits_per_min([3, 4], [4, 4], [300, 300]) == pytest.approx(7 / (600 / 30 / 60))
    assert ac.hits_per_min([0], [0], [90]) is None


def test_table_shows_smoothness_before_and_after_shield():
    row = _row("async", latency="virtual Δ=4", success_ci95=[0.5, 1.0], reaction_latency_s_p95=0.9,
               seam_jump_p95_cmd=3.0, step_p95_cmd=0.02, step_p95_applied=0.01, jerk_p95_cmd=90.0,
               jerk_p95_applied=40.0, hits_per_min=12.0)
    line = async_table.line(row)
    assert "3.0→2.0" in line and "0.020→0.010" in line and "90→40" in line and "12.0" in line
    old = async_table.line(_row("sync", success_ci95=[0.5, 1.0], reaction_latency_s_p95=None))  # no new keys
    assert "–→2.0" in old


def test_wall_configs_validate(tmp_path):
    from rtctl.config import load_config
    from rtctl.runtime.runner import RunConfig

    runs = async_wall.plan(jitter=async_wall.jitter_supported())
    assert [r[1] for r in runs[:4]] == ["sync", "async", "async_rollforward", "replan_rollforward"]
    assert len(async_wall.plan(True, quick=True)) == 4 + 3 and len(async_wall.plan(True)) == 4 + 6
    for name, mode, _, spec, fixed in runs:
        cfg = async_wall.wall_config("whack", mode, "artifacts/x/policy.pt", 12.0, ac.SEED, ac.RATE, ac.H, ac.K,
                                     ac.REPLAN_IN_FLIGHT, False, False, extra_latency=spec, delay_ticks=fixed,
                                     episodes=1)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        got = load_config(path, RunConfig)
        assert got.scheduler.mode == mode and got.scheduler.delay_ticks == fixed and got.episodes == 1


def test_fault_drill_figures_from_a_run_folder(tmp_path):
    """`rtctl bench faults` reads its columns from the folder: log lost against the `stopped` event on the
    host's clock, the largest applied-command step after the fault over the baseline's p99, episode resets
    not counted as steps."""
    from rtctl.bench import fault_figures as faults

    t0 = 10_000_000_000
    rows = [{"t_end_ms": 100.0 * i, "episode": 0 if i < 5 else 1, "applied": [0.01 * i, 0.0]} for i in range(8)]
    rows[6]["applied"] = [0.5, 0.0]  # a jump after the fault (episode 1, ticks 5 → 6)
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "events.jsonl").write_text(json.dumps({"event": "loop_started", "t0_ns": t0}) + "\n"
                                           + json.dumps({"event": "stopped", "t_ns": t0 + 1_000_000_000}) + "\n")
    st = faults.steps(rows)
    assert len(st) == 6 and max(st) > 0.4  # 7 pairs, one across the episode reset left out
    fig = faults.run_figures({"run": 0.01}, tmp_path, t0 + 450_000_000, "run")
    assert fig["log_lost_s"] == 0.3  # stopped at 1.0 s, last row ended at 0.7 s
    assert fig["summary"] == "none" and fig["stop_s"] == 0.25
    assert fig["jump_ratio"] == round((0.5 - 0.05) / 0.01, 2)
