"""The Feetech bus emulator answers the real scservo_sdk: ping, model/firmware reads, read/write, sync
read/write, sign-magnitude registers, limits, torque and dynamics, checksums, and the three faults."""
import importlib.util
import json
import os
import termios
import time
from pathlib import Path

import pytest
import scservo_sdk as scs
import serial

from rtctl.drivers.emulators.feetech import EmulatorProcess, Fault, PtyEmulator, checksum, packet, so101_bus
from rtctl.drivers.emulators.sts3215 import CONTROL_TABLE, Servo

ROOT = Path(__file__).resolve().parents[1]
CAL = json.loads((ROOT / "configs/calibration/so101_emulated.json").read_text())


@pytest.fixture
def emu():
    e = PtyEmulator(so101_bus(CAL)).start()
    yield e
    e.stop()


@pytest.fixture
def sdk(emu):
    port = scs.PortHandler(emu.path)
    assert port.openPort()
    port.setPacketTimeoutMillis(1000)
    yield port, scs.PacketHandler(0)
    if port.is_open:
        port.closePort()


def _lerobot_sts_table() -> dict:
    """lerobot's STS/SMS control table, loaded from the installed file alone (its package pulls torch)."""
    spec = importlib.util.find_spec("lerobot")
    path = Path(spec.submodule_search_locations[0]) / "motors" / "feetech" / "tables.py"
    mod_spec = importlib.util.spec_from_file_location("lerobot_feetech_tables_data", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def test_register_table_is_lerobots_sts3215_table():
    tables = _lerobot_sts_table()
    assert CONTROL_TABLE == tables.MODEL_CONTROL_TABLE["sts3215"]
    assert tables.MODEL_NUMBER_TABLE["sts3215"] == 777


def test_packets_carry_the_protocol_checksum():
    pkt = packet(1, scs.INST_READ, bytes([56, 2]))
    assert pkt == bytes([0xFF, 0xFF, 1, 4, 2, 56, 2, (~(1 + 4 + 2 + 56 + 2)) & 0xFF])
    assert checksum(pkt[2:-1]) == pkt[-1]


def test_ping_model_number_and_firmware(sdk):
    port, ph = sdk
    for sid in range(1, 7):
        model, comm, err = ph.ping(port, sid)
        assert (model, comm, err) == (777, scs.COMM_SUCCESS, 0)
        assert ph.read1ByteTxRx(port, sid, 0)[:2] == (3, scs.COMM_SUCCESS)
        assert ph.read1ByteTxRx(port, sid, 1)[:2] == (10, scs.COMM_SUCCESS)
    assert ph.ping(port, 7)[1] == scs.COMM_RX_TIMEOUT  # no servo with id 7


def test_calibration_is_preloaded_with_sign_magnitude_homing_offset(sdk):
    port, ph = sdk
    raw, comm, _ = ph.read2ByteTxRx(port, 1, CONTROL_TABLE["Homing_Offset"][0])
    assert comm == scs.COMM_SUCCESS and raw == (1023 | 1 << 11)  # -1023, sign bit 11
    assert ph.read2ByteTxRx(port, 1, 9)[0] == CAL["shoulder_pan"]["range_min"]
    assert ph.read2ByteTxRx(port, 1, 11)[0] == CAL["shoulder_pan"]["range_max"]


def test_configuration_writes_are_acknowledged_and_stored(sdk, emu):
    port, ph = sdk
    for name, value in (("Return_Delay_Time", 0), ("Acceleration", 254), ("Maximum_Acceleration", 254),
                        ("Operating_Mode", 0), ("P_Coefficient", 16), ("I_Coefficient", 0), ("D_Coefficient", 32),
                        ("Lock", 0)):
        addr, size = CONTROL_TABLE[name]
        comm, err = ph.write1ByteTxRx(port, 6, addr, value)
        assert (comm, err) == (scs.COMM_SUCCESS, 0)
        assert emu.bus.servos[6].get(name) == value
    assert ph.write2ByteTxRx(port, 6, CONTROL_TABLE["Max_Torque_Limit"][0], 500) == (scs.COMM_SUCCESS, 0)
    assert emu.bus.servos[6].get("Max_Torque_Limit") == 500


def test_sync_write_moves_joints_with_torque_on_only_and_sync_read_reports_them(sdk, emu):
    port, ph = sdk
    reader = scs.GroupSyncRead(port, ph, 56, 2)
    for sid in range(1, 7):
        reader.addParam(sid)
    assert reader.txRxPacket() == scs.COMM_SUCCESS
    start = {sid: reader.getData(sid, 56, 2) for sid in range(1, 7)}
    writer = scs.GroupSyncWrite(port, ph, 42, 2)
    goal = {sid: start[sid] + 300 for sid in range(1, 6)}
    for sid, g in goal.items():
        writer.addParam(sid, [scs.SCS_LOBYTE(g), scs.SCS_HIBYTE(g)])
    assert writer.txPacket() == scs.COMM_SUCCESS
    time.sleep(0.3)
    assert reader.txRxPacket() == scs.COMM_SUCCESS
    assert all(reader.getData(sid, 56, 2) == start[sid] for sid in range(1, 6)), "torque off: no motion"
    for sid in range(1, 6):
        assert ph.write1ByteTxRx(port, sid, 40, 1) == (scs.COMM_SUCCESS, 0)  # torque on: holds where it is
    assert writer.txPacket() == scs.COMM_SUCCESS
    time.sleep(0.5)  # 10 time constants of the first-order joint
    assert reader.txRxPacket() == scs.COMM_SUCCESS
    for sid in range(1, 6):
        assert abs(reader.getData(sid, 56, 2) - goal[sid]) <= 2, sid
        servo = emu.bus.servos[sid]
        assert round(servo.actual) - servo.get("Homing_Offset") == servo.get("Present_Position")


def test_goal_is_clamped_to_the_position_limits(sdk, emu):
    port, ph = sdk
    assert ph.write1ByteTxRx(port, 2, 40, 1) == (scs.COMM_SUCCESS, 0)
    assert ph.write2ByteTxRx(port, 2, 42, 4000) == (scs.COMM_SUCCESS, 0)
    assert emu.bus.servos[2].get("Goal_Position") == CAL["shoulder_lift"]["range_max"]


def test_first_order_dynamics_of_one_servo():
    now = [0.0]
    s = Servo(1, actual=1000.0, tau_s=0.1, v_max=1e9, clock=lambda: now[0])
    s.write(40, bytes([1]))
    s.write(42, (2000).to_bytes(2, "little"))
    now[0] = 0.1
    s.update()
    assert s.actual == pytest.approx(2000 - 1000 * 2.718281828 ** -1, abs=1e-6)
    slow = Servo(1, actual=1000.0, tau_s=0.01, v_max=100.0, clock=lambda: now[0])
    slow.write(40, bytes([1]))
    slow.write(42, (2000).to_bytes(2, "little"))
    now[0] += 1.0
    slow.update()
    assert slow.actual == pytest.approx(1100.0)  # speed-limited


def test_bad_checksum_instructions_are_dropped_and_broadcast_ping_answers_all(emu):
    ser = serial.Serial(emu.path, 1_000_000, timeout=0.3)
    try:
        bad = bytearray(packet(1, scs.INST_PING))
        bad[-1] ^= 0xFF
        ser.write(bytes(bad))
        assert ser.read(6) == b""
        assert emu.bus.counts["bad_checksum"] == 1
        ser.write(packet(scs.BROADCAST_ID, scs.INST_PING))
        replies = ser.read(36)
        assert replies == b"".join(packet(sid, 0) for sid in range(1, 7))
    finally:
        ser.close()


def test_faults_silent_servo_corrupted_packet_and_closed_port(sdk, emu):
    port, ph = sdk
    emu.silence(3)
    assert ph.read2ByteTxRx(port, 3, 56)[1] == scs.COMM_RX_TIMEOUT
    assert ph.read2ByteTxRx(port, 2, 56)[1] == scs.COMM_SUCCESS
    emu.silence(3, False)
    emu.corrupt(4, count=1)
    assert ph.read2ByteTxRx(port, 4, 56)[1] == scs.COMM_RX_CORRUPT
    assert ph.read2ByteTxRx(port, 4, 56)[1] == scs.COMM_SUCCESS  # only the next one was broken
    emu.close_port()
    # pyserial reports the far end closing as SerialException on write/read, or as termios.error when the
    # SDK's flush (tcdrain) sees it first — which one depends on timing; the driver maps both to DriverError
    with pytest.raises((serial.SerialException, termios.error)):
        ph.read2ByteTxRx(port, 1, 56)


def test_fault_spec_parsing():
    assert Fault.parse("silent:3@5") == Fault(5.0, "silent", 3)
    assert Fault.parse("close@0.5") == Fault(0.5, "close", None)
    for bad in ("silent@5", "close:2@1", "melt:1@2", "silent:3"):
        with pytest.raises(ValueError):
            Fault.parse(bad)


def test_emulator_process_takes_commands_and_exits_when_stdin_closes():
    emu = EmulatorProcess(str(ROOT / "configs/calibration/so101_emulated.json"), faults=["silent:2@0"])
    try:
        assert os.path.exists(emu.path)
        port = scs.PortHandler(emu.path)
        assert port.openPort()
        ph = scs.PacketHandler(0)
        assert ph.ping(port, 1)[:2] == (777, scs.COMM_SUCCESS)
        assert ph.ping(port, 2)[1] == scs.COMM_RX_TIMEOUT  # the scheduled fault
        assert emu.command("silent:1") == {"ok": "silent:1"}
        assert ph.ping(port, 1)[1] == scs.COMM_RX_TIMEOUT  # the fault commanded now
        regs = emu.command("dump")
        assert regs["3"]["Homing_Offset"] == CAL["elbow_flex"]["homing_offset"] and regs["3"]["Model_Number"] == 777
        assert "error" in emu.command("melt:1")
        port.closePort()
    finally:
        emu.stop()  # closes its stdin
    assert emu.proc.returncode == 0
    assert emu.counts["packets"] == 4  # ping 1, its model read, ping 2, ping 1


def test_push_fault_spec_parsing_and_one_line_errors():
    assert Fault.parse("push:1:35:1.5@10") == Fault(10.0, "push", 1, 35.0, 1.5)
    assert Fault.parse("push:2:-20:0.5@0") == Fault(0.0, "push", 2, -20.0, 0.5)
    for bad in ("push:1@10", "push:1:35@10", "push:1:35:0@10", "push:1:400:1@10", "push:x:35:1@10",
                "push@10", "silent:1:35:1@10", "push:1:35:1.5"):
        with pytest.raises(ValueError) as err:
            Fault.parse(bad)
        assert "\n" not in str(err.value) and repr(bad) in str(err.value)


def test_push_holds_the_joint_off_its_goal_then_releases_it():
    now = [0.0]
    s = Servo(1, actual=2000.0, tau_s=0.05, v_max=1e9, clock=lambda: now[0])
    s.write(40, bytes([1]))  # torque on: holds 2000
    s.push(35 * 4096 / 360, duration_s=1.5)
    pushed = 2000 + 35 * 4096 / 360
    for t in (0.1, 0.7, 1.4):
        now[0] = t
        s.write(42, (2000).to_bytes(2, "little"))  # the host keeps commanding the old goal
        assert s.get("Present_Position") == round(pushed), t  # the hand wins
    now[0] = 1.5 + 0.5  # released at 1.5 s: 10 time constants of tracking since
    s.update()
    assert s.pushed_until is None and abs(s.actual - 2000) < 1.0


def test_push_through_the_stdin_channel_and_as_a_scheduled_fault():
    emu = EmulatorProcess(str(ROOT / "configs/calibration/so101_emulated.json"), faults=["push:2:-20:60@0"])
    try:
        start = emu.command("dump")
        mid = (CAL["shoulder_lift"]["range_min"] + CAL["shoulder_lift"]["range_max"]) // 2  # its start pose
        assert abs(start["2"]["Present_Position"] - (mid - 20 * 4096 / 360)) <= 1  # the scheduled push
        assert emu.command("push:1:35:60") == {"ok": "push:1:35:60"}  # held for the rest of the test
        after = emu.command("dump")
        assert abs(after["1"]["Present_Position"] - start["1"]["Present_Position"] - round(35 * 4096 / 360)) <= 1
        assert after["2"]["Present_Position"] == start["2"]["Present_Position"]  # still held
        assert after["3"]["Present_Position"] == start["3"]["Present_Position"]
        assert "error" in emu.command("push:1:35")
    finally:
        emu.stop()


def test_goal_log_records_sync_and_single_writes_and_is_flushed_while_serving(tmp_path):
    log = tmp_path / "goals.jsonl"
    emu = EmulatorProcess(str(ROOT / "configs/calibration/so101_emulated.json"), goal_log=str(log))
    try:
        port = scs.PortHandler(emu.path)
        assert port.openPort()
        ph = scs.PacketHandler(0)
        writer = scs.GroupSyncWrite(port, ph, 42, 2)
        for sid in (1, 2, 3):
            writer.addParam(sid, [scs.SCS_LOBYTE(2000 + sid), scs.SCS_HIBYTE(2000 + sid)])
        for _ in range(3):
            assert writer.txPacket() == scs.COMM_SUCCESS
        assert ph.write2ByteTxRx(port, 4, 42, 2100) == (scs.COMM_SUCCESS, 0)
        assert ph.write1ByteTxRx(port, 4, 40, 1) == (scs.COMM_SUCCESS, 0)  # not a goal: not logged
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(log.read_text().splitlines()) < 4:
            time.sleep(0.05)  # the emulator is still running: the lines are there because it flushed
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        assert [x["ids"] for x in lines] == [[1, 2, 3]] * 3 + [[4]]
        assert lines[0]["goal"] == [2001, 2002, 2003] and lines[3]["goal"] == [2100]
        assert all(a["t_ns"] <= b["t_ns"] for a, b in zip(lines, lines[1:]))
        assert 0 < time.monotonic_ns() - lines[-1]["t_ns"] < 60e9  # the host's monotonic clock
        port.closePort()
    finally:
        emu.stop()
    assert emu.counts["goals"] == 4
