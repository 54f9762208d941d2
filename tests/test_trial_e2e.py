"""Multi-process sim trials over real sockets on 127.0.0.1: one process per car (driver over ZeroMQ to the sim
world, scripted policy, CBF shield, CURVE-authenticated V2V), the operator e-stop, and a car process killed
mid-trial. Replayed and spoofed V2V messages are rejected by the bus itself: tests/test_v2v_bus.py
(test_replayed_frame_is_rejected, test_curve_binds_ids_to_keys_and_rejects_spoofing) covers them, and every
car here runs that same V2VNode with CURVE keys (its drop counters are in the report)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from rtctl.config import ConfigError, load_config
from rtctl.report.runfolder import read_events, read_log, read_log_checked
from rtctl.safety.vehicle_model import Road
from rtctl.vehicles.trial.config import TrialConfig
from rtctl.vehicles.trial.glue import neighbour_rows
from rtctl.vehicles.trial.launch import main
from rtctl.v2v.neighbours import Neighbour, VehicleState


def write_config(tmp_path, **over):
    cfg = {"mode": "sim", "duration_s": 4.0,
           "cars": [{"id": "car0", "target_speed": 1.6}, {"id": "car1", "target_speed": 1.4},
                    {"id": "car2", "target_speed": 1.8}],
           "v2v": {"curve": True, "injection": {"kind": "truncated_gaussian"}},
           "sim": {"scenario": "highway-low", "seed": 1}, "startup_timeout_s": 60.0}
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    p = tmp_path / "trial.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="rates.policy_hz"):
        load_config(write_config(tmp_path, rates={"policy_hz": 7.0}), TrialConfig)
    with pytest.raises(ConfigError, match="faults.kill|not in the trial"):
        load_config(write_config(tmp_path, faults={"kill": {"car9": 1.0}}), TrialConfig)
    with pytest.raises(ConfigError, match="scenario"):
        load_config(write_config(tmp_path, sim={"scenario": "roundabout"}), TrialConfig)
    with pytest.raises(ConfigError, match="port"):
        load_config(write_config(tmp_path, mode="hardware"), TrialConfig)


def test_old_messages_widen_the_margin():
    state = VehicleState(np.array([5.0, 1.5, 0.0]), np.array([1.0, 0.0]), np.zeros(2), 1)
    fresh, old = (Neighbour("car1", state, age, 0.02) for age in (0.1, 2.0))
    rows = neighbour_rows([fresh, old], Road(), 4.0, lambda d: d, stale_margin_mps=0.3)
    assert rows[0, 7] == pytest.approx(0.02 + 0.03) and rows[1, 7] == pytest.approx(0.02 + 0.6)
    assert rows[1, 6] == 2.0 and rows[1, 2] == 1.0 and rows[0, 5] == -1.0  # age kept, speed, no lane change


def test_marl_actor_reads_the_trainers_observation_and_the_shields_mask(tmp_path):
    from dataclasses import asdict

    import torch

    from rtctl.policies.marl_actor import MaskedActor, export_actor
    from rtctl.safety.behaviours import DEFAULT_BEHAVIOURS
    from rtctl.safety.vehicle import VehicleShield
    from rtctl.sim.vehicles.observe import ObsConfig, obs_dim
    from rtctl.sim.vehicles.tracks import Track
    from rtctl.vehicles.trial.policy import PolicyInput, load_policy

    torch.manual_seed(0)
    actor = MaskedActor(obs_dim(ObsConfig()), len(DEFAULT_BEHAVIOURS), [16])
    path = export_actor(tmp_path / "policy.pt", actor, [b.name for b in DEFAULT_BEHAVIOURS], asdict(ObsConfig()),
                        "highway-low", "test")
    policy = load_policy("marl", str(path))
    make_input = PolicyInput(policy, VehicleShield(), Track("straight", 3), goal_s=30.0)
    nb = neighbour_rows([Neighbour("car1", VehicleState(np.array([4.6, 0.3, 0.0]), np.zeros(2), np.zeros(2), 1),
                                   0.1, 0.02)], Road(), 4.0, lambda d: d, 0.3)
    obs = make_input(np.array([4.0, 0.3, 0.0, 1.5]), 0.0, nb, 0)  # a stopped car 0.6 m ahead, same lane
    assert obs["observation"].shape == (obs_dim(ObsConfig()),) and obs["action_mask"][0]
    b = int(policy.predict_chunk(obs).actions[0, 0])
    assert obs["action_mask"][b]  # the actor only picks what the shield allows


def test_three_car_trial_with_operator_estop(tmp_path):
    run = main(write_config(tmp_path, faults={"estop_at_s": 1.2}), tmp_path / "run", duration=2.5)
    s = json.loads((run / "summary.json").read_text())
    assert s["collisions"] == 0, s["collision_events"]
    assert (run / "keys" / "public" / "car0.key").is_file()  # CURVE keys made for the run
    assert s["estop"]["source"] == "scheduled"
    for cid in ("car0", "car1", "car2"):
        car = s["per_car"][cid]
        assert car["fault"] is None and car["ticks"] > 50 and car["estop_at_s"] is not None
        assert car["peak_rss_mb"] > 10
        assert "spoofed" not in car["v2v_drops"] and "unknown_sender" not in car["v2v_drops"]
        peers = s["message_age_s"][cid]
        assert set(peers) == {"car0", "car1", "car2"} - {cid}  # every car heard every other over CURVE
        assert all(0 < p["p50"] < 1.0 for p in peers.values())
        last = read_log(run / "cars" / cid)[-1]
        assert last["v"] < 0.05 and last["behaviour"] == 0  # stopped, in emergency stop
        assert any(e["event"] == "estop" for e in read_events(run / "cars" / cid))
        own = json.loads((run / "cars" / cid / "summary.json").read_text())
        assert own["v2v"]["estop"] == "op"  # latched from the operator's authenticated broadcast
    assert all((run / p).is_file() for p in s["plots"])


def test_intersection_trial_yields_to_crossing_cars_and_red_light_runners(tmp_path):
    """Three cars on three approaches of the 4-way intersection, two red-light runners on the fourth: each
    car process builds its crossing-traffic rows from V2V (agents on other paths) and its sensors (the
    humans), yields by the map's right of way, and every car gets through without a collision."""
    run = main(write_config(tmp_path, sim={"scenario": "intersection", "seed": 0}, plots=False),
               tmp_path / "run", duration=12.0)
    s = json.loads((run / "summary.json").read_text())
    assert s["collisions"] == 0, s["collision_events"]
    world = json.loads((run / "world" / "summary.json").read_text())
    assert all(t is not None for t in world["completed_at_s"].values()), world["completed_at_s"]
    yielded = [s["per_car"][c]["interventions"] for c in ("car1", "car2")]
    assert all(n > 0 for n in yielded)  # lower-ranked paths held for crossing traffic


def test_killed_car_goes_stale_and_the_follower_keeps_its_gap(tmp_path):
    # seed 1: all three agents in the left lane, car2 (fastest) behind car0, car1 in front
    run = main(write_config(tmp_path, faults={"kill": {"car0": 1.0}}, plots=False), tmp_path / "run", duration=3.5)
    s = json.loads((run / "summary.json").read_text())
    assert s["collisions"] == 0, s["collision_events"]
    assert s["killed"]["car0"] >= 1.0 and s["per_car"]["car0"]["summary"].startswith("partial")
    # SIGKILL keeps the evidence written so far: whole rows, the events file, the partial summary (with its pid)
    rows, _ = read_log_checked(run / "cars" / "car0")
    assert rows and all("t" in r and "v" in r for r in rows)
    assert (run / "cars" / "car0" / "events.jsonl").is_file()
    partial = json.loads((run / "cars" / "car0" / "summary.json").read_text())
    assert partial["stopped_by"] == "running (partial summary)" and partial["pid"] == s["pids"]["car0"]
    follower = s["per_car"]["car2"]
    assert follower["fault"] is None and follower["interventions"] > 0
    ages = s["message_age_s"]["car2"]
    assert ages["car0"]["max"] > 1.5 > ages["car1"]["max"]  # car0 went stale, car1 kept talking
    margins = s["age_margin_max_m"]["car2"]
    assert margins["car0"] > margins["car1"] + 0.3  # the stale car's margin widened with its age
    world = read_log(run / "world")[-1]
    names = json.loads((run / "world" / "summary.json").read_text())["names"]
    s0, s2 = world["s"][names.index("car0")], world["s"][names.index("car2")]
    assert s2 < s0 and world["v"][names.index("car0")] < 0.05  # the dead car braked; the follower stayed behind


def test_hardware_mode_drives_an_emulated_vesc_car(tmp_path):
    """One car in hardware mode: VESC driver on the emulator's pseudo-terminal, pose from its mocap stream."""
    emu = subprocess.Popen([sys.executable, "-m", "rtctl.drivers.vesc.emulator", "--body", "car0",
                            "--start", "2.6,1.5,0.0"], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(emu.stdout.readline())
        cfg = {"mode": "hardware", "duration_s": 2.0, "sim": {"scenario": "highway-low", "seed": 1},
               "plots": False, "cars": [{"id": "car0", "port": info["port"], "target_speed": 1.2,
                         "pose": {"kind": "zmq", "endpoint": info["pose_endpoint"]}}]}
        p = tmp_path / "cars.yaml"
        p.write_text(yaml.safe_dump(cfg))
        run = main(p, tmp_path / "run")
    finally:
        emu.kill()
        emu.wait(timeout=10)
    s = json.loads((run / "summary.json").read_text())
    car = s["per_car"]["car0"]
    assert car["fault"] is None and car["ticks"] > 50 and car["distance_m"] > 0.3, car
    assert s["collisions"] is None and car["peak_rss_mb"] > 10  # no sim world: collisions are not observed
    rows = read_log(run / "cars" / "car0")
    assert abs(rows[-1]["y"] - 1.5) < 0.1 and max(r["v"] for r in rows) > 0.5  # kept its lane, drove
