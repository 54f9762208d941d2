"""The LeRobot driver over lerobot's unmodified so101_follower, against the Feetech emulator on a pty:
connect with the shipped calibration (no prompts), units, I/O-thread hand-off, dry run, watchdog, e-stop,
torque policy, and the three bus faults."""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from rtctl.drivers.base import DriverError
from rtctl.drivers.bus_stats import KEYS
from rtctl.drivers.camera import CameraReader, SyntheticCamera
from rtctl.drivers.emulators.feetech import EmulatorProcess
from rtctl.drivers.lerobot_robot import JointMap, LeRobotRobotDriver, robot_from_config

ROOT = Path(__file__).resolve().parents[1]
CAL_DIR = ROOT / "configs/calibration"
CAL = json.loads((CAL_DIR / "so101_emulated.json").read_text())
POSE = np.array([0.3, -0.5, 0.5, 0.4, 0.1, 0.6])


def _robot(port, **fields):
    return robot_from_config("so101_follower", {"port": port, "id": "so101_emulated", "calibration_dir": str(CAL_DIR),
                                                 **fields})


class Rig:
    """Emulator process + driver; records the driver's events."""

    def __init__(self, calibration=str(CAL_DIR / "so101_emulated.json"), connect=True, robot_fields=None, **kw):
        self.emu = EmulatorProcess(calibration)
        self.events = []
        self.driver = LeRobotRobotDriver(_robot(self.emu.path, **(robot_fields or {})), 30.0,
                                         on_event=lambda kind, **f: self.events.append((kind, f)), **kw)
        if connect:
            self.driver.connect()

    def kinds(self):
        return [k for k, _ in self.events]

    def registers(self, name):
        return {int(sid): regs[name] for sid, regs in self.emu.command("dump").items()}

    def run_until_fault(self, timeout_s=5.0):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.driver.read()
            self.driver.write(POSE)
            time.sleep(0.01)
        raise AssertionError("no DriverError")

    def close(self):
        try:
            self.driver.disconnect()
        except DriverError:
            pass
        self.emu.stop()


@pytest.fixture
def rig_factory():
    rigs = []

    def make(**kw):
        rigs.append(Rig(**kw))
        return rigs[-1]
    yield make
    for r in rigs:
        r.close()


def _drive(driver, q, ticks=45):
    for _ in range(ticks):
        driver.read()
        driver.write(q)
        time.sleep(1 / 30)
    return driver.read()["state"]


@pytest.mark.parametrize("use_degrees", [True, False])
def test_joint_map_agrees_with_lerobots_own_normalisation(use_degrees):
    robot = _robot("/dev/null", use_degrees=use_degrees)  # not connected: only the bus maths
    bus = robot.bus
    jm = JointMap.from_bus(bus)
    rng = np.random.default_rng(0)
    for _ in range(20):
        ticks = {bus.motors[m].id: int(rng.integers(CAL[m]["range_min"], CAL[m]["range_max"] + 1)) for m in bus.motors}
        norm = bus._normalize(dict(ticks))
        q = jm.to_rad({f"{bus._id_to_name(i)}.pos": v for i, v in norm.items()})
        expect = np.array([(ticks[bus.motors[m].id] - 2047) * 2 * np.pi / 4096 for m in bus.motors])
        assert np.allclose(q, expect, atol=1e-9)
        back = bus._unnormalize({bus.motors[m[:-4]].id: v for m, v in jm.from_rad(q).items()})
        assert all(abs(back[i] - ticks[i]) <= 1 for i in ticks)  # lerobot truncates to whole ticks
    assert jm.low[0] == pytest.approx((795 - 2047) * 2 * np.pi / 4096)
    assert jm.high[5] == pytest.approx((3185 - 2047) * 2 * np.pi / 4096)


def test_unmodified_so101_connects_without_prompts_and_tracks_commands(rig_factory, monkeypatch):
    def no_prompt(*a, **k):
        raise AssertionError("lerobot asked for input")
    monkeypatch.setattr("builtins.input", no_prompt)
    rig = rig_factory()
    d = rig.driver
    assert d.robot.is_connected and d.robot.is_calibrated
    assert d.spec.action_names == ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
    assert set(rig.registers("Return_Delay_Time").values()) == {0}  # lerobot's configure()
    assert set(rig.registers("P_Coefficient").values()) == {16}
    assert rig.registers("Max_Torque_Limit")[6] == 500
    assert set(rig.registers("Torque_Enable").values()) == {1}
    state = _drive(d, POSE)
    assert np.allclose(state, POSE, atol=0.01), state
    assert d.counts["sent"] > 0 and d.counts["reads"] > d.counts["sent"] // 2
    assert d.last_sent is not None and np.allclose(d.last_sent, POSE, atol=0.002)
    assert "driver_connected" in rig.kinds()


def test_write_clips_to_the_calibrated_range(rig_factory):
    d = rig_factory().driver
    applied = d.write(np.array([5.0, 0, 0, 0, 0, -1.0]))
    assert applied[0] == pytest.approx(d.spec.action_high[0]) and applied[5] == pytest.approx(d.spec.action_low[5])
    with pytest.raises(ValueError):
        d.write(np.array([np.nan, 0, 0, 0, 0, 0]))


def test_dry_run_logs_but_never_moves_the_arm(rig_factory):
    rig = rig_factory(dry_run=True)
    goals = rig.registers("Goal_Position")
    start = rig.driver.read()["state"]
    state = _drive(rig.driver, POSE, ticks=15)
    assert rig.driver.counts["dry_run"] > 0 and rig.driver.counts["sent"] == 0
    assert rig.registers("Goal_Position") == goals
    assert np.allclose(state, start)


def test_watchdog_holds_the_last_goal_when_the_tick_stalls_and_resumes(rig_factory):
    rig = rig_factory(watchdog_s=0.1)
    _drive(rig.driver, POSE, ticks=5)
    time.sleep(0.4)  # the tick stalls
    assert rig.driver.counts["watchdog_holds"] == 1 and "watchdog_hold" in rig.kinds()
    state = rig.driver.read()["state"]
    assert np.allclose(state, POSE, atol=0.01)  # holding the last goal, still reading
    _drive(rig.driver, POSE * 0.5, ticks=3)
    assert "watchdog_release" in rig.kinds()


def test_operator_estop_disables_torque_and_faults_the_driver(rig_factory):
    rig = rig_factory()
    _drive(rig.driver, POSE, ticks=3)
    rig.driver.estop("key")
    with pytest.raises(DriverError, match="e-stop"):
        rig.run_until_fault()
    assert set(rig.registers("Torque_Enable").values()) == {0}


@pytest.mark.parametrize("policy,torque", [("hold", 1), ("disable", 0)])
def test_torque_policy_on_disconnect(rig_factory, policy, torque):
    rig = rig_factory(on_disconnect=policy)
    _drive(rig.driver, POSE, ticks=3)
    rig.driver.disconnect()
    assert set(rig.registers("Torque_Enable").values()) == {torque}
    assert not rig.driver.robot.is_connected


def test_silent_servo_is_named_and_the_others_hold(rig_factory):
    rig = rig_factory()
    _drive(rig.driver, POSE, ticks=3)
    rig.emu.command("silent:3")
    with pytest.raises(DriverError, match=r"servo 3 \(elbow_flex\) does not answer") as err:
        rig.run_until_fault()
    assert rig.emu.path in str(err.value)
    assert "driver_fault" in rig.kinds()
    torque = rig.registers("Torque_Enable")
    assert all(torque[i] == 1 for i in (1, 2, 4, 5, 6))  # the others hold


def test_corrupted_packets_one_is_retried_a_stream_is_a_fault(rig_factory):
    rig = rig_factory()
    rig.emu.command("corrupt_once:4")
    _drive(rig.driver, POSE, ticks=5)
    assert rig.driver.counts["bus_errors"] >= 1 and "bus_error_recovered" in rig.kinds()
    rig.emu.command("corrupt:4")
    with pytest.raises(DriverError, match=r"servo 4 \(wrist_flex\) sends corrupted packets"):
        rig.run_until_fault()


def test_closed_port_is_reported_as_such(rig_factory):
    rig = rig_factory(on_disconnect="disable")
    rig.emu.command("close")
    with pytest.raises(DriverError, match=r"serial port .* closed or unplugged"):
        rig.run_until_fault()
    with pytest.raises(DriverError, match="disconnect failed"):
        rig.driver.disconnect()
    assert not rig.driver.robot.bus.port_handler.is_open  # the port is released either way


def test_servos_without_the_calibration_get_the_file_written_without_prompts(rig_factory, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda *a: (_ for _ in ()).throw(AssertionError("prompt")))
    rig = rig_factory(calibration=None)  # factory-fresh EEPROM
    assert "calibration_written" in rig.kinds()
    assert rig.registers("Homing_Offset")[1] == CAL["shoulder_pan"]["homing_offset"]
    assert rig.driver.robot.is_calibrated


def test_missing_calibration_file_says_how_to_calibrate(rig_factory, tmp_path):
    rig = rig_factory(connect=False, robot_fields={"calibration_dir": str(tmp_path)})
    with pytest.raises(DriverError, match="lerobot-calibrate"):
        rig.driver.connect()
    assert not rig.driver.robot.bus.port_handler.is_open


def test_camera_frames_come_with_the_observation(rig_factory):
    rig = rig_factory(cameras={"image": CameraReader(SyntheticCamera(32, 32, fps=60.0), "image")})
    obs = rig.driver.read()
    assert obs["image"].shape == (32, 32, 3) and obs["state"].shape == (6,)


def test_a_broken_answer_while_connecting_is_retried_a_missing_servo_is_not(rig_factory):
    rig = rig_factory(connect=False)
    rig.emu.command("corrupt_once:5")  # lerobot's handshake ping of servo 5 gets a bad checksum
    rig.driver.connect()
    assert "connect_retry" in rig.kinds() and rig.driver.robot.is_connected
    gone = rig_factory(connect=False)
    gone.emu.command("silent:3")
    with pytest.raises(DriverError, match=r"(?s)connect failed after 3 tries: .*Missing motor IDs:\s+- 3 "):
        gone.driver.connect()


def test_bus_stats_account_for_every_command_and_match_the_goals_the_emulator_received(rig_factory):
    rig = rig_factory()
    d = rig.driver
    for k in range(20):  # a tick's rhythm, each command stamped with its "tick start"
        stamp = time.monotonic_ns()
        d.read()
        d.write(POSE * (k % 2), stamp_ns=stamp)
        time.sleep(1 / 30)
    for k in range(5):  # a burst: a newer command may replace one the I/O thread has not sent yet
        d.write(POSE * (0.1 * k))
    d.disconnect()
    stats = d.bus_stats()
    assert set(stats) == set(KEYS)
    assert stats["posted"] == 25 and stats["sent"] + stats["replaced"] == 25 and stats["sent"] >= 20
    assert stats["age_ms_max"] >= stats["age_ms_p50"] >= 0 and stats["interval_ms_p50"] > 0
    goal = rig.registers("Goal_Position")  # the last command went out although disconnect() followed it at once
    expect = 2047 + POSE * 0.4 * 4096 / (2 * np.pi)
    assert all(abs(goal[i + 1] - expect[i]) <= 2 for i in range(6)), (goal, expect)
    rig.emu.stop()
    lines = open(rig.emu.goal_log_path).read().splitlines()
    assert len(lines) == stats["sent"] == rig.emu.counts["goals"]


def test_send_delay_is_checked():
    with pytest.raises(ValueError, match="send_delay"):
        LeRobotRobotDriver(_robot("/dev/null"), 30.0, send_delay=0.05)
