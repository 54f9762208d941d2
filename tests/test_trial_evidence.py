"""A trial's processes keep their evidence whatever stops them (issue 13): a car that gets SIGTERM brakes and
writes its final summary, a car whose disk fills stops safely with one line naming its folder, and `rtctl trial`
stopped by SIGTERM (or a terminal's Ctrl-C, which reaches every process of the group) leaves a complete run
folder and no process behind. SIGKILL of a car: tests/test_trial_e2e.py (test_killed_car_...)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rtctl.config import ConfigError, load_config
from rtctl.report.runfolder import RunLogError, read_events, read_log_checked
from rtctl.vehicles.trial.config import TrialConfig
from rtctl.vehicles.trial.launch import main


def write_config(tmp_path, **over):
    cfg = {"mode": "sim", "duration_s": 3.0, "plots": False,
           "cars": [{"id": "car0", "target_speed": 1.6}, {"id": "car1", "target_speed": 1.4},
                    {"id": "car2", "target_speed": 1.8}],
           "v2v": {"curve": True}, "sim": {"scenario": "highway-low", "seed": 1}, "startup_timeout_s": 60.0}
    cfg.update(over)
    p = tmp_path / "trial.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def own_summary(run, name):
    return json.loads((run / name / "summary.json").read_text())


def world_speeds(run, car):
    names = own_summary(run, "world")["names"]
    rows, torn = read_log_checked(run / "world")
    assert rows and not torn
    return [r["v"][names.index(car)] for r in rows]


def test_fault_keys_name_a_process_of_the_trial(tmp_path):
    for faults, match in (({"term": {"car9": 1.0}}, "faults.term"), ({"disk_full": {"op": 1.0}}, "faults.disk_full"),
                          ({"term": {"car0": -1.0}}, "faults.term")):
        with pytest.raises(ConfigError, match=match):
            load_config(write_config(tmp_path, faults=faults), TrialConfig)
    with pytest.raises(ConfigError, match="world"):
        load_config(write_config(tmp_path, cars=[{"id": "world"}]), TrialConfig)
    cfg = load_config(write_config(tmp_path, faults={"term": {"world": 1.0}, "disk_full": {"car1": 2.0}}), TrialConfig)
    assert cfg.faults.term == {"world": 1.0} and cfg.faults.disk_full == {"car1": 2.0}


def test_sigterm_and_a_full_disk_stop_a_car_safely_and_the_trial_completes(tmp_path):
    # seed 1: the three cars in one lane, car1 in front, car0 behind it, car2 last
    cfg = write_config(tmp_path, faults={"term": {"car0": 1.0}, "disk_full": {"car1": 1.0}})
    with pytest.raises(RunLogError, match=r"cannot write the run log in .*cars/car1"):
        main(cfg, tmp_path / "run")  # exit 4 in the CLI: part of the evidence could not be written
    run = tmp_path / "run"
    s = json.loads((run / "summary.json").read_text())  # the launcher's folder is complete all the same
    assert s["terminated"]["car0"] >= 1.0 and s["exit_codes"] == {"car0": 0, "car1": 0, "car2": 0, "world": 0}
    assert s["collisions"] == 0, s["collision_events"]

    car0 = own_summary(run, "cars/car0")
    assert car0["stopped_by"] == car0["fault"] == "terminated (SIGTERM)"
    assert s["child_faults"]["car0"] == "terminated (SIGTERM)"
    brake = [e for e in read_events(run / "cars" / "car0") if e["event"] == "brake"]
    assert len(brake) == 1 and brake[0]["reason"] == "terminated (SIGTERM)" and brake[0]["t"] >= 1.0
    v0 = world_speeds(run, "car0")
    assert max(v0) > 0.3 and v0[-1] < 0.05  # drove, then braked to a stop

    car1 = own_summary(run, "cars/car1")  # the one line names the folder; the car stopped (and braked)
    assert car1["fault"].startswith("cannot write the run log in") and "car1" in car1["fault"]
    assert car1["stopped_by"] == car1["fault"] == s["child_faults"]["car1"]
    rows, _ = read_log_checked(run / "cars" / "car1")
    assert rows  # the rows written before the disk filled are kept
    v1 = world_speeds(run, "car1")
    assert max(v1) > 0.3 and v1[-1] < 0.05

    car2 = own_summary(run, "cars/car2")  # the others ran the trial to its end
    assert car2["fault"] is None and car2["stopped_by"] == "end of trial" and car2["ticks"] > 50
    assert own_summary(run, "world")["stopped_by"] == "stopped by the launcher (end)"


def descendants(pid):
    """Every live process below ``pid`` (from /proc; zombies are not running)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(d.name)] = int(fields[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        todo += list(kids - out)
        out |= kids
    return out


def running(pid):
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", ["SIGTERM to rtctl trial", "Ctrl-C to the process group"])
def test_rtctl_trial_stopped_by_a_signal_leaves_a_complete_folder_and_no_process(tmp_path, how):
    cfg = write_config(tmp_path, duration_s=60.0, cars=[{"id": "car0", "target_speed": 1.6},
                                                        {"id": "car1", "target_speed": 1.4}])
    run = tmp_path / "run"
    trial = subprocess.Popen([sys.executable, "-m", "rtctl.cli", "trial", str(cfg), "--out", str(run)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        running_files = [run / "world" / "summary.json", run / "cars" / "car0" / "summary.json",
                         run / "cars" / "car1" / "summary.json"]
        deadline = time.monotonic() + 120
        while not all(p.is_file() for p in running_files):  # partial summaries: every process is in its loop
            assert trial.poll() is None, trial.communicate()
            assert time.monotonic() < deadline, "the trial did not start"
            time.sleep(0.1)
        children = descendants(trial.pid)
        pids = {own_summary(run, n)["pid"] for n in ("world", "cars/car0", "cars/car1")}
        assert pids <= children
        if how.startswith("SIGTERM"):
            os.kill(trial.pid, signal.SIGTERM)
        else:
            os.killpg(trial.pid, signal.SIGINT)  # what a terminal does: every process of the group gets it
        out, err = trial.communicate(timeout=120)
    finally:
        if trial.poll() is None:
            trial.kill()
            trial.wait()
    assert trial.returncode == 0, err
    assert f"run folder: {run}" in out
    s = json.loads((run / "summary.json").read_text())
    assert s["estop"]["source"] == ("SIGTERM" if how.startswith("SIGTERM") else "SIGINT")
    assert s["exit_codes"] == {"car0": 0, "car1": 0, "world": 0} and s["child_faults"] == {}
    for cid in ("car0", "car1"):  # the children ignored the Ctrl-C: the launcher's e-stop stopped them
        car = own_summary(run, f"cars/{cid}")
        assert car["stopped_by"] == "end of trial" and car["fault"] is None and car["estop_at_s"] is not None
        rows, torn = read_log_checked(run / "cars" / cid)
        assert rows and not torn and rows[-1]["v"] < 0.05
    assert own_summary(run, "world")["stopped_by"] == "stopped by the launcher (end)"
    deadline = time.monotonic() + 30  # nothing the launcher started outlives it (the resource tracker included)
    while any(running(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if running(p)]


def test_a_full_disk_under_the_world_ends_the_trial_and_every_car_brakes(tmp_path):
    cfg = write_config(tmp_path, duration_s=30.0, faults={"disk_full": {"world": 1.0}},
                       cars=[{"id": "car0", "target_speed": 1.6}, {"id": "car1", "target_speed": 1.4}])
    with pytest.raises(RunLogError, match=r"cannot write the run log in .*world"):
        main(cfg, tmp_path / "run")
    run = tmp_path / "run"
    s = json.loads((run / "summary.json").read_text())
    world = own_summary(run, "world")
    assert world["stopped_by"] == world["fault"] == s["child_faults"]["world"]
    assert s["exit_codes"] == {"car0": 0, "car1": 0, "world": 0}
    for cid in ("car0", "car1"):  # the trial ended with its world, not at 30 s; each car braked on its way out
        car = own_summary(run, f"cars/{cid}")  # the launcher's stop, or (on a slow machine) its driver first
        assert car["stopped_by"] == "stopped by the launcher (end)" or "silent" in car["stopped_by"], car
        assert car["ticks"] < 30 * 50
