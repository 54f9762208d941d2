"""End to end: `rtctl run` with real MuJoCo under the real tick; faults; Ctrl-C; the report command."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RTCTL = [sys.executable, "-m", "rtctl.cli"]


def _run(args, **kw):
    return subprocess.run(RTCTL + args, capture_output=True, text=True, cwd=ROOT, timeout=180, **kw)


def test_run_arm_sim_writes_a_complete_run_folder(tmp_path):
    out = tmp_path / "run"
    p = _run(["run", "configs/arm_sim.yaml", "--out", str(out), "--duration", "3"])
    assert p.returncode == 0, p.stderr
    for name in ("config.yaml", "log.jsonl", "summary.json", "events.jsonl"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ticks"] == 90 and summary["stopped_by"] == "completed"
    assert "deadline_misses" in summary and "period_err_p99_ms" in summary
    assert summary["shield"]["calls"] == 90  # the shield is on by default and sees every command
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 90
    assert {"tick", "period_err_us", "work_us", "miss", "state", "command", "applied", "hold", "shield"} <= set(rows[0])
    assert {"status", "intervened", "min_barrier"} <= set(rows[0]["shield"])
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"tick_period_error.png", "joint_trajectories.png", "queue_and_delay.png", "shield.png"} <= set(pngs)
    for png in (out / "plots").glob("*.png"):
        png.unlink()
    r = _run(["report", str(out)])
    assert r.returncode == 0, r.stderr
    assert (out / "plots" / "joint_trajectories.png").exists()


def test_driver_fault_stops_safely_with_a_clear_message_and_a_flushed_log(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / "configs/arm_sim.yaml").read_text().replace(
        "  task: reach\n", "  task: reach\n  fail_read_at_tick: 20\n"))
    out = tmp_path / "run"
    p = _run(["run", str(cfg), "--out", str(out), "--duration", "3"])
    assert p.returncode == 3
    assert "driver fault" in p.stderr and "injected read failure" in p.stderr
    rows = (out / "log.jsonl").read_text().splitlines()
    assert len(rows) == 20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"].startswith("DriverError")


def test_config_error_leaves_no_run_folder(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tick:\n  rate_hz: 5\n")
    out = tmp_path / "run"
    p = _run(["run", str(cfg), "--out", str(out)])
    assert p.returncode == 2
    assert "tick.rate_hz" in p.stderr and "30" in p.stderr
    assert not out.exists()


def test_ctrl_c_shuts_down_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(RTCTL + ["run", "configs/arm_sim.yaml", "--out", str(out), "--duration", "60"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "log.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"].startswith("interrupted")
    n = len((out / "log.jsonl").read_text().splitlines())
    assert 0 < n < 60 * 30 and n == summary["ticks"]


def test_push_is_detected_and_the_next_chunk_starts_from_the_pushed_state(tmp_path):
    """A +0.6 rad push on shoulder_pan held 1 s, real tick and MuJoCo: the driver reports it, the disturbance
    rule fires after it, a chunk conditioned on the measured state is executed, and the rule ends. Events and
    their order only; the timing figures belong to `rtctl bench disturbance`."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text((ROOT / "configs/arm_sim.yaml").read_text().replace("mode: sync", "mode: async_rollforward")
                   .replace("  task: reach\n", "  task: reach\n  push: [{joint: shoulder_pan, offset_rad: 0.6, "
                            "start_s: 1.0, duration_s: 1.0}]\n"))
    out = tmp_path / "run"
    p = _run(["run", str(cfg), "--out", str(out), "--duration", "3.5"])
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [(e["event"], e.get("state")) for e in events if e["event"] in ("push_start", "push_end", "disturbance")]
    assert kinds[:2] == [("push_start", None), ("disturbance", "start")], kinds
    # the rule ends once the command has caught up with the arm (the shield yields toward the pushed joint,
    # so that may be before the release) and every disturbance that started has ended
    assert ("push_end", None) in kinds and kinds.index(("disturbance", "end")) > 1, kinds
    starts = [k for k in kinds if k == ("disturbance", "start")]
    assert len(starts) == len([k for k in kinds if k == ("disturbance", "end")]), kinds
    summary = json.loads((out / "summary.json").read_text())
    dist = summary["disturbances"]
    assert dist["events"] >= 1 and dist["detect_to_reaction_ticks"], dist
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = next(e["tick"] for e in events if e["event"] == "disturbance" and e["state"] == "start")
    assert rows[start]["disturbed"] and not rows[start - 1]["disturbed"]
    for key in ("seam_jump_p95_cmd", "step_p95_cmd", "step_p95_applied", "jerk_p95_cmd", "jerk_p95_applied"):
        assert key in summary, key


def test_sigterm_is_a_clean_stop_and_sigkill_keeps_the_log(tmp_path):
    """SIGTERM: like Ctrl-C (exit 0, complete folder, stopped_by says so). SIGKILL: the rows and events
    written so far are on disk (flushed while running), and `rtctl report` reads them."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        out = tmp_path / f"run-{sig.name}"
        proc = subprocess.Popen(RTCTL + ["run", "configs/arm_sim.yaml", "--out", str(out), "--duration", "60"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 90
        log = out / "log.jsonl"
        while time.time() < deadline and not (log.exists() and log.stat().st_size > 0):
            time.sleep(0.2)  # rows reach the disk while the run goes on (not only at close)
        assert log.stat().st_size > 0
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGTERM:
            assert proc.returncode == 0, err
            summary = json.loads((out / "summary.json").read_text())
            assert summary["stopped_by"] == "terminated (SIGTERM)"
            assert len(log.read_text().splitlines()) == summary["ticks"]
        else:
            assert proc.returncode == -signal.SIGKILL
            assert (out / "events.jsonl").exists()
            r = _run(["report", str(out)])
            assert r.returncode == 0, r.stderr


def test_a_log_write_error_stops_the_run_with_one_line(tmp_path):
    """The run's log cannot be written (a full disk: /dev/full): the loop stops, the driver is disconnected
    (the arm holds), and the error names the folder."""
    import pytest

    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux) to emulate a full disk")
    from rtctl.config import load_config
    from rtctl.report.runfolder import RunLogError
    from rtctl.runtime.runner import RunConfig, execute, make_driver
    from rtctl.runtime.shield import make_shield

    cfg = load_config(ROOT / "configs/arm_sim.yaml", RunConfig, {"duration_s": 30, "plots": False})
    driver = make_driver(cfg)

    def full_disk(folder):
        folder._log = open("/dev/full", "w", buffering=1 << 16)

    with pytest.raises(RunLogError, match="No space left") as err:
        execute(cfg, driver, make_shield(cfg.shield, "sim_arm", 30.0), tmp_path / "run", progress=False,
                on_folder=full_disk)
    assert str(tmp_path / "run") in str(err.value) and "\n" not in str(err.value)
    assert driver.env is None  # disconnected: the safe stop ran
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_by"].startswith("RunLogError") and summary["ticks"] < 30 * 30


def test_a_run_with_a_ray_actor_stops_cleanly_and_leaves_nothing_running(tmp_path):
    """SIGTERM: exit 0 with a complete folder, no fatal-signal dump from Ray's handler (it used to abort the
    process 3 s later, exit 134), and every process the run started (Ray's head, agents, the policy worker)
    gone. SIGKILL: the run cannot clean up, so rtctl.runtime.ray_reaper does — nothing is left either."""
    from rtctl.bench.procs import Watched
    from rtctl.report.runfolder import read_events

    cfg = tmp_path / "actor.yaml"
    cfg.write_text("duration_s: 60\nplots: false\ndriver: {type: sim_arm, task: reach}\n"
                   "policy: {type: expert, v_max: 1.0, extra_latency_ms: 60}\nactor: {enabled: true, num_cpus: 1}\n")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        out = tmp_path / f"run-{sig.name}"
        w = Watched(RTCTL + ["run", str(cfg), "--out", str(out)], cwd=ROOT)
        started = w.wait_until(lambda: any(e["event"] == "loop_started" for e in read_events(out))
                               and (out / "log.jsonl").stat().st_size > 0, 120)
        assert started, w.finish(10) and w.stderr[-2000:]
        assert w.seen  # Ray's processes were seen below the run
        w.send(sig)
        code = w.finish(60)
        left = w.leftovers(30)
        w.kill_leftovers()
        assert not left, left
        if sig == signal.SIGTERM:
            assert code == 0 and "SIGTERM received" not in w.stderr, w.stderr[-2000:]
            summary = json.loads((out / "summary.json").read_text())
            assert summary["stopped_by"] == "terminated (SIGTERM)"
            assert "stopped" in [e["event"] for e in read_events(out)]
        else:
            assert code == -signal.SIGKILL
            assert json.loads((out / "summary.json").read_text())["stopped_by"].startswith("running")  # partial
    # SIGTERM while Ray and the actor are still starting: the start unwinds at once, exit 0, nothing left
    out = tmp_path / "run-starting"
    w = Watched(RTCTL + ["run", str(cfg), "--out", str(out)], cwd=ROOT)
    assert w.wait_until(lambda: bool(w.seen), 120)  # Ray's first process is up
    w.send(signal.SIGTERM)
    code = w.finish(60)
    left = w.leftovers(30)
    w.kill_leftovers()
    assert code == 0 and not left, (w.stderr[-2000:], left)
    assert "terminated (SIGTERM)" in w.stderr.strip().splitlines()[-1]
