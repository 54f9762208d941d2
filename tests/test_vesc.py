"""VESC codec round trips and CRC, the calibration fit, and the driver against the pty emulator through pyserial
(pose over the emulated motion-capture stream), including the faults: silent controller, broken CRC, port
closed. Every wait has a deadline."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from rtctl.drivers.base import DriverError
from rtctl.drivers.bus_stats import KEYS
from rtctl.drivers.pose import ZmqPoseSource, decode_pose, encode_pose
from rtctl.drivers.vesc import codec
from rtctl.drivers.vesc.calibration import Calibration, fit_throttle
from rtctl.drivers.vesc.driver import VescDriver


def test_crc_matches_the_xmodem_check_value():
    assert codec.crc16(b"123456789") == 0x31C3
    assert codec.crc16(b"") == 0


def test_frame_layout_short_and_long():
    short = codec.frame(codec.set_current(1.5))
    assert short[0] == 2 and short[1] == 5 and short[-1] == 3
    assert short[2:7] == bytes((codec.COMM_SET_CURRENT,)) + (1500).to_bytes(4, "big", signed=True)
    assert int.from_bytes(short[7:9], "big") == codec.crc16(short[2:7])
    long = codec.frame(bytes(300))
    assert long[0] == 3 and int.from_bytes(long[1:3], "big") == 300 and len(long) == 3 + 300 + 3
    with pytest.raises(codec.VescProtocolError):
        codec.frame(b"")


@given(st.lists(st.binary(min_size=1, max_size=400), min_size=1, max_size=5), st.binary(max_size=20),
       st.integers(1, 17))
@settings(max_examples=60, deadline=None)
def test_decoder_recovers_payloads_from_noise_and_any_chunking(payloads, noise, chunk):
    wire = noise.replace(b"\x02", b"\x00").replace(b"\x03", b"\x00") + b"".join(codec.frame(p) for p in payloads)
    dec = codec.FrameDecoder()
    got = []
    for i in range(0, len(wire), chunk):
        got += dec.feed(wire[i:i + chunk])
    assert got == payloads


def test_decoder_drops_a_corrupt_crc_and_resyncs():
    good = codec.frame(codec.get_values())
    bad = bytearray(codec.frame(codec.set_rpm(1000)))
    bad[-2] ^= 0x55
    dec = codec.FrameDecoder()
    assert dec.feed(bytes(bad) + good) == [codec.get_values()]
    assert dec.crc_errors == 1


@pytest.mark.parametrize("build,cmd,value", [
    (lambda: codec.set_duty(-0.25), codec.COMM_SET_DUTY, -0.25),
    (lambda: codec.set_current(12.345), codec.COMM_SET_CURRENT, 12.345),
    (lambda: codec.set_current_brake(7.5), codec.COMM_SET_CURRENT_BRAKE, 7.5),
    (lambda: codec.set_rpm(-15000), codec.COMM_SET_RPM, -15000.0),
    (lambda: codec.set_servo_pos(0.531), codec.COMM_SET_SERVO_POS, 0.531),
    (codec.alive, codec.COMM_ALIVE, None),
    (codec.get_values, codec.COMM_GET_VALUES, None),
])
def test_commands_round_trip(build, cmd, value):
    got_cmd, got = codec.parse_command(build())
    assert got_cmd == cmd
    assert got == (None if value is None else pytest.approx(value, abs=1e-9))


def test_command_values_are_checked():
    for bad in (lambda: codec.set_duty(1.5), lambda: codec.set_servo_pos(-0.1), lambda: codec.set_current_brake(-1),
                lambda: codec.set_rpm(1e12), lambda: codec.parse_command(b"\x06\x00"),
                lambda: codec.parse_command(b"\xfe")):
        with pytest.raises(codec.VescProtocolError):
            bad()


def test_values_round_trip_and_older_firmware_replies():
    v = codec.VescValues(temp_fet=35.2, temp_motor=40.1, avg_motor_current=-3.25, avg_input_current=1.5, duty_now=0.123,
                         rpm=-4321.0, v_in=12.3, amp_hours=0.1234, tachometer=-77, tachometer_abs=77, fault_code=5,
                         controller_id=3, temp_mos2=33.3, avg_vq=1.234, status=2)
    payload = codec.encode_values(v)
    assert len(payload) == 74  # 1 + every field of commands.c's full mask
    assert codec.parse_values(payload) == v
    upto_fault = payload[:1 + 2 + 2 + 4 * 4 + 2 + 4 + 2 + 4 * 4 + 4 + 4 + 1]
    old = codec.parse_values(upto_fault)
    assert old.fault_code == 5 and old.rpm == -4321.0 and old.status == 0
    with pytest.raises(codec.VescProtocolError, match="ends before"):
        codec.parse_values(upto_fault[:-1])
    with pytest.raises(codec.VescProtocolError):
        codec.parse_values(b"\x05" + payload[1:])


def test_calibration_inverts_its_model_and_refuses_bad_files(tmp_path):
    cal = Calibration()
    for a, v in [(2.0, 1.0), (-3.0, 2.0), (0.0, 0.5)]:
        mode, amps = cal.current_for(a, v)
        assert cal.accel_of(mode, amps, v) == pytest.approx(a)
        assert mode == ("brake" if a < 0 else "current")
    assert cal.steer_of(cal.servo_for(0.1)) == pytest.approx(0.1)
    p = cal.save(tmp_path / "car_0.yaml", "fitted on test")
    assert Calibration.load(p) == cal
    (tmp_path / "bad.yaml").write_text("k_drive: 1.0\nk_drvie: 2.0\n")
    with pytest.raises(ValueError, match="unknown calibration keys"):
        Calibration.load(tmp_path / "bad.yaml")
    (tmp_path / "neg.yaml").write_text("k_drive: -1.0\n")
    with pytest.raises(ValueError, match="k_drive"):
        Calibration.load(tmp_path / "neg.yaml")


def test_throttle_fit_recovers_a_simulated_ramp():
    truth = Calibration(k_drive=0.42, k_brake=0.7, c0=0.15, c1=0.3)
    rows, v, dt = [], 0.0, 0.01
    for i in range(600):  # ramp the current up, hold, then brake
        t = i * dt
        mode, amps = ("current", min(10.0, 4.0 * t)) if t < 4.5 else ("brake", 6.0)
        rows.append({"t": t, "mode": mode, "amps": amps, "erpm": v * truth.erpm_per_mps})
        v = max(0.0, v + truth.accel_of(mode, amps, v) * dt)
    cal, diag = fit_throttle(rows)
    assert cal.k_drive == pytest.approx(0.42, rel=0.05) and cal.k_brake == pytest.approx(0.7, rel=0.05)
    assert cal.c1 == pytest.approx(0.3, abs=0.05) and diag["rows"] > 100
    with pytest.raises(ValueError, match="at least 10"):
        fit_throttle(rows[:5])


def test_pose_frames_are_validated():
    good = encode_pose("car0", 1.0, 2.0, 0.1, 5)
    assert decode_pose(good, "car0") == (1.0, 2.0, 0.1, 5)
    assert decode_pose(good, "car1") is None
    assert decode_pose(encode_pose("car0", float("nan"), 0, 0, 1), "car0") is None
    assert decode_pose(b"\xc1garbage", "car0") is None
    assert decode_pose(bytes(2000), "car0") is None


# -- the driver against the emulator on a pseudo-terminal ------------------------------------------------------
@pytest.fixture
def emulator():
    procs = []

    def start(*args):
        proc = subprocess.Popen([sys.executable, "-m", "rtctl.drivers.vesc.emulator", "--body", "car0", *args],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc, json.loads(proc.stdout.readline())

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def wait_for(cond, timeout_s=10.0, what=""):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def status_reader(endpoint):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    last = {}

    def latest():
        while sock.poll(0):
            last.update(json.loads(sock.recv()))
        return last
    return latest, sock


def test_driver_drives_the_emulated_car_through_pyserial(emulator):
    _, info = emulator()
    drv = VescDriver(info["port"], pose=ZmqPoseSource(info["pose_endpoint"], "car0"))
    latest, sock = status_reader(info["status_endpoint"])
    try:
        drv.connect()
        applied = drv.write(np.array([10.0, 0.0]))
        assert applied[0] == drv.spec.action_high[0]  # clipped to the car's limit
        drv.write(np.array([1.5, 0.0]))
        wait_for(lambda: drv.read()["state"][3] > 0.8, what="the car to speed up")
        obs = drv.read()
        assert obs["state"][0] > 0.05 and abs(obs["state"][1]) < 0.05  # pose from the emulated mocap stream
        assert obs["vesc"]["v_in"] == pytest.approx(12.1) and obs["vesc"]["fault_code"] == 0
        drv.write(np.array([-3.0, 0.0]))
        wait_for(lambda: drv.read()["state"][3] < 0.05, what="the car to brake")
        with pytest.raises(ValueError):
            drv.write(np.array([float("nan"), 0.0]))
        drv.write(np.array([1.5, 0.0]))
        wait_for(lambda: latest().get("v", 0) > 0.3, what="the car to move again")
    finally:
        drv.disconnect()
    wait_for(lambda: latest().get("mode") == "brake" and latest()["v"] < 0.01, what="braking after disconnect")
    sock.close()


@pytest.mark.parametrize("fault,match", [("--mute-after", "stopped answering"),
                                         ("--corrupt-after", "bad CRC")])
def test_silent_or_corrupt_controller_raises_driver_error_and_brakes(emulator, fault, match):
    _, info = emulator(fault, "0.6")
    drv = VescDriver(info["port"], timeout_s=0.2)
    latest, sock = status_reader(info["status_endpoint"])
    try:
        drv.connect()
        drv.write(np.array([2.0, 0.0]))
        with pytest.raises(DriverError, match=match):
            wait_for(lambda: drv.read() is None, what="a driver error")
        wait_for(lambda: latest().get("mode") == "brake", what="the brake command")
    finally:
        drv.disconnect()
        sock.close()


def test_port_closed_raises_driver_error(emulator):
    proc, info = emulator()
    drv = VescDriver(info["port"], timeout_s=0.3)
    try:
        drv.connect()
        proc.kill()
        proc.wait(timeout=10)
        with pytest.raises(DriverError, match="closed|stopped answering"):
            wait_for(lambda: drv.read() is None, what="a driver error")
    finally:
        drv.disconnect()
    with pytest.raises(DriverError, match="cannot be opened"):
        VescDriver("/dev/does-not-exist").connect()


def test_bus_stats_count_commands_and_match_the_emulator_command_log(emulator, tmp_path):
    log = tmp_path / "commands.jsonl"
    proc, info = emulator("--command-log", str(log))
    drv = VescDriver(info["port"], pose=ZmqPoseSource(info["pose_endpoint"], "car0"))
    try:
        drv.connect()
        for k in range(10):
            drv.write(np.array([0.5, 0.1 * (k % 2)]), stamp_ns=time.monotonic_ns())
            time.sleep(0.02)
        wait_for(lambda: drv.bus_stats()["sent"] + drv.bus_stats()["replaced"] == 10, what="every command handled")
    finally:
        drv.disconnect()
    stats = drv.bus_stats()
    assert set(stats) == set(KEYS) and stats["posted"] == 10 and stats["sent"] >= 1
    assert stats["age_ms_p99"] >= 0 and stats["interval_ms_p50"] > 0
    def motor_lines():
        return [x for x in map(json.loads, log.read_text().splitlines()) if x["cmd"] != "servo"]
    # every motor frame the driver timed, + the brake of disconnect(); flushed while the emulator still runs
    wait_for(lambda: len(motor_lines()) >= drv._bus.writes + 1, what="the command log to catch up")
    proc.terminate()
    proc.wait(timeout=10)
    motor = motor_lines()
    assert len(motor) == drv._bus.writes + 1
    assert motor[-1]["cmd"] == "brake" and any(x["cmd"] == "current" for x in motor)


def test_udp_pose_source_keeps_the_newest_valid_pose():
    import socket

    from rtctl.drivers.pose import make_pose_source

    src = make_pose_source("udp", "127.0.0.1:0", "car0")
    port = src.sock.getsockname()[1]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for frame in (encode_pose("car0", 1.0, 2.0, 0.0, 10), b"junk", encode_pose("car0", 3.0, 2.0, 0.0, 20),
                      encode_pose("car0", 9.0, 9.0, 0.0, 15), encode_pose("car1", 5.0, 5.0, 0.0, 30)):
            tx.sendto(frame, ("127.0.0.1", port))
        got = []
        wait_for(lambda: got.append(src.poll()) or src.rejected >= 2, what="the datagrams")
        pose = [p for p in got if p is not None][-1]
        assert (pose.x, pose.y) == (3.0, 2.0)  # the replayed older stamp (15 < 20) was ignored
    finally:
        tx.close()
        src.close()
