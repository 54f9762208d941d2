"""`rtctl deploy` end to end: the emulator process, lerobot's so101_follower over the pty, the tick, the
scheduler, the shield and the run folder; a bus fault drill and an e-stop message stop it safely."""
import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from rtctl.config import ConfigError
from rtctl.runtime.deploy import main, send_estop
from rtctl.drivers.base import DriverError

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path, estop_address=None, **changes):
    cfg = yaml.safe_load((ROOT / "configs/so101_emulated.yaml").read_text())
    cfg["driver"]["robot"]["calibration_dir"] = str(ROOT / "configs/calibration")
    cfg["actor"] = {"enabled": False}  # Ray start-up costs more than the run; test_run_e2e covers the actor path
    cfg["policy"]["extra_latency_ms"] = 0
    cfg["plots"] = False
    cfg["estop"] = {"key": False, "address": estop_address}
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_emulated_deploy_runs_and_reports(tmp_path):
    out = main(_config(tmp_path, plots=True), tmp_path / "run", duration=2.0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "completed" and summary["ticks"] == 60
    assert "deadline_misses" in summary and "period_err_p99_ms" in summary
    assert summary["driver"]["sent"] > 0  # bus_errors may be > 0 on a loaded box: a late emulator reply is retried
    assert summary["emulator"]["packets"] > 100 and summary["emulator"]["bad_checksum"] == 0
    assert summary["shield"]["calls"] == 60
    rows = _rows(out)
    assert len(rows) == 60
    moved = max(abs(a - b) for a, b in zip(rows[-1]["state"], rows[0]["state"]))
    assert moved > 0.02, "the emulated arm followed the policy"
    assert (out / "plots" / "joint_trajectories.png").exists()
    events = [json.loads(x)["event"] for x in (out / "events.jsonl").read_text().splitlines()]
    assert "driver_connected" in events and "driver_disconnected" in events


def test_bus_fault_drill_stops_the_run_and_names_the_servo(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DriverError, match=r"servo 3 \(elbow_flex\) does not answer") as err:
        # a generous staleness limit, so the I/O thread's diagnosis (3 timed-out reads) lands first on a busy box
        # the fault comes 3 s after the emulator starts: after the connect even when Ray starts beside it on a busy box
        main(_config(tmp_path, **{"emulator.faults": ["silent:3@3.0"], "driver.max_obs_age_s": 5.0}), out, duration=8.0)
    assert err.value.safe_state == "the servos hold their last goal"  # an arm's words, never "car braked"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"].startswith("DriverError") and 0 < summary["ticks"] < 240
    assert len(_rows(out)) == summary["ticks"]  # the log was flushed


def test_estop_message_disables_torque_and_stops(tmp_path):
    address = f"ipc://{tmp_path}/estop"
    out = tmp_path / "run"
    result = {}

    def deploy():
        try:
            main(_config(tmp_path, estop_address=address), out, duration=20.0)
        except DriverError as err:
            result["error"], result["type"] = str(err), type(err).__name__

    t = threading.Thread(target=deploy)
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "log.jsonl").exists():
        time.sleep(0.1)
    time.sleep(0.5)
    assert (out / "estop_address").read_text().strip() == address  # `rtctl estop RUN` finds it there
    with pytest.raises(ConfigError, match="in use by another running deploy"):
        main(_config(tmp_path, estop_address=address), tmp_path / "second", duration=5.0)
    assert not (tmp_path / "second").exists()  # refused before anything started
    assert send_estop(address)  # acknowledged
    t.join(timeout=60)
    assert "operator e-stop (message): torque disabled on ['shoulder_pan'" in result.get("error", ""), result
    assert result["type"] == "EStopped"  # a stop, not a fault: the CLI exits 5, not 3
    summary = json.loads((out / "summary.json").read_text())
    assert "e-stop" in summary["stopped_by"] and summary["ticks"] < 600
    assert not send_estop(address, timeout_s=0.2)  # nobody listens any more: not acknowledged


def test_config_errors_name_the_key_and_leave_no_run_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="driver.robot.port"):
        main(_config(tmp_path, **{"emulator.enabled": False}), out)
    with pytest.raises(ConfigError, match="driver.sign"):
        main(_config(tmp_path, **{"driver.sign": [1, 1]}), out)
    assert not out.exists()


def test_rtctl_estop_exits_nonzero_when_no_run_acknowledges(tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    (run / "estop_address").write_text(f"ipc://{tmp_path}/nobody\n")
    p = subprocess.run([sys.executable, "-m", "rtctl.cli", "estop", str(run)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "NOT acknowledged" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_a_missing_serial_port_or_a_used_folder_is_refused_before_anything_starts(tmp_path):
    from rtctl.runtime import ray_start

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"driver.robot.port.*does not exist"):
        main(_config(tmp_path, **{"emulator.enabled": False, "driver.robot.port": "/dev/ttyNOPE0"}), out)
    assert not out.exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "log.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="pick another --out"):
        main(_config(tmp_path, **{"actor": {"enabled": True}}), used)
    assert ray_start._pending is None  # refused before the policy actor (and Ray) were started
