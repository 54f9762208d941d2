"""A VESC on a pseudo-terminal, driving a first-order 1/10-scale car, for tests and dry runs.

    python -m rtctl.drivers.vesc.emulator --body car0 [--pose-bind tcp://127.0.0.1:*] [--mute-after 2.0]

prints one JSON line {"port": "/dev/pts/N", "pose_endpoint": ..., "status_endpoint": ...} and then serves the
VESC UART protocol on that port until SIGTERM: motor commands (duty, current, brake current, RPM), the
steering servo, COMM_ALIVE and COMM_GET_VALUES. Like the firmware, it brakes when no motor command arrived
for `--timeout` seconds. The plant is the calibration's model (speed first-order in the commanded current)
with a first-order steering servo and a kinematic bicycle for the pose, which it publishes like a
motion-capture bridge (`rtctl.drivers.pose`), so a driver under test gets its pose the way a real car does.

Faults for tests: `--mute-after S` stops replying after S seconds (the host sees a silent controller),
`--corrupt-after S` sends replies with a broken CRC.

Bus-level truth: `--command-log PATH` appends every motor and servo command received, one JSON line
{"t_ns", "cmd", "value"} (cmd: current, brake, duty, rpm or servo; t_ns = time.monotonic_ns() when its bytes
were read, the driver's clock on this host), flushed every 0.25 s (`rtctl.drivers.emulators.jsonl_log`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import sys
import time
import tty

import zmq

from rtctl.drivers.emulators.jsonl_log import JsonlLog
from rtctl.drivers.pose import encode_pose
from rtctl.drivers.vesc import codec
from rtctl.drivers.vesc.calibration import Calibration

WHEELBASE = 0.3302


class Plant:
    """Speed, steering and pose of the emulated car."""

    def __init__(self, cal: Calibration, steer_tau: float = 0.05, speed_tau: float = 0.3) -> None:
        self.cal = cal
        self.steer_tau, self.speed_tau = steer_tau, speed_tau
        self.x = self.y = self.yaw = self.v = self.steer = 0.0
        self.dist = 0.0
        self.mode, self.value = "brake", 0.0
        self.servo = cal.servo_center

    def command(self, mode: str, value: float) -> None:
        self.mode, self.value = mode, value

    def step(self, dt: float) -> None:
        c = self.cal
        if self.mode in ("current", "brake"):
            a = c.accel_of(self.mode, self.value, self.v)
        else:  # duty or rpm: the firmware's speed loop, seen from outside as a first-order lag
            target = self.value * 3.0 if self.mode == "duty" else c.speed(self.value)
            a = (target - self.v) / self.speed_tau
        self.v = max(0.0, self.v + a * dt)  # the car does not reverse in this model
        target_steer = c.steer_of(self.servo)
        self.steer += (target_steer - self.steer) * min(1.0, dt / self.steer_tau)
        ds = self.v * dt
        self.dist += ds
        self.x += ds * math.cos(self.yaw)
        self.y += ds * math.sin(self.yaw)
        self.yaw += ds * math.tan(self.steer) / WHEELBASE

    def values(self) -> codec.VescValues:
        erpm = self.v * self.cal.erpm_per_mps
        tacho = int(self.dist * self.cal.erpm_per_mps / 60.0 * 6)
        amps = self.value if self.mode == "current" else (-self.value if self.mode == "brake" else 0.0)
        return codec.VescValues(temp_fet=31.5, temp_motor=28.0, avg_motor_current=amps, avg_input_current=amps * 0.3,
                                duty_now=min(self.v / 6.0, 0.95), rpm=erpm, v_in=12.1, tachometer=tacho,
                                tachometer_abs=tacho)


def serve(args: argparse.Namespace) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline: bytes 0x03 must not become ^C
    port = os.ttyname(slave)
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(args.pose_bind)
    status = ctx.socket(zmq.PUB)  # the plant's true speed, for tests that check the car really brakes
    status.setsockopt(zmq.LINGER, 0)
    status.bind("tcp://127.0.0.1:*")
    print(json.dumps({"port": port, "pose_endpoint": pub.getsockopt(zmq.LAST_ENDPOINT).decode(),
                      "status_endpoint": status.getsockopt(zmq.LAST_ENDPOINT).decode()}), flush=True)

    cal = Calibration.load(args.calibration) if args.calibration else Calibration()
    plant = Plant(cal)
    plant.x, plant.y, plant.yaw = args.start
    decoder = codec.FrameDecoder()
    log = JsonlLog(args.command_log) if args.command_log else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = last = last_cmd = last_pose = time.monotonic()
    while not stop:
        ready, _, _ = select.select([master], [], [], 0.002)
        now = time.monotonic()
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # no client has the port open
                data = b""
            rx_ns = time.monotonic_ns()
            for payload in decoder.feed(data):
                try:
                    cmd, value = codec.parse_command(payload)
                except codec.VescProtocolError:
                    continue  # the firmware ignores what it does not know
                if cmd == codec.COMM_GET_VALUES:
                    muted = args.mute_after is not None and now - t0 > args.mute_after
                    if not muted:
                        packet = codec.frame(codec.encode_values(plant.values()))
                        if args.corrupt_after is not None and now - t0 > args.corrupt_after:
                            packet = packet[:-3] + bytes((packet[-3] ^ 0xFF,)) + packet[-2:]
                        os.write(master, packet)
                    continue
                if cmd == codec.COMM_SET_SERVO_POS:
                    plant.servo = value
                    if log is not None:
                        log.record(t_ns=rx_ns, cmd="servo", value=value)
                    continue
                last_cmd = now
                mode = {codec.COMM_SET_CURRENT: "current", codec.COMM_SET_CURRENT_BRAKE: "brake",
                        codec.COMM_SET_DUTY: "duty", codec.COMM_SET_RPM: "rpm"}.get(cmd)
                if mode is not None:
                    plant.command(mode, value)
                    if log is not None:
                        log.record(t_ns=rx_ns, cmd=mode, value=value)
        if now - last_cmd > args.timeout:
            plant.command("brake", args.timeout_brake_current)  # the firmware's command timeout
        plant.step(now - last)
        last = now
        if now - last_pose >= 0.01:
            pub.send(encode_pose(args.body, plant.x, plant.y, plant.yaw, time.monotonic_ns()), zmq.NOBLOCK)
            status.send(json.dumps({"v": plant.v, "mode": plant.mode, "value": plant.value}).encode(), zmq.NOBLOCK)
            last_pose = now
        if log is not None:
            log.flush_due()
    if log is not None:
        log.close()
    pub.close(linger=0)
    status.close(linger=0)
    ctx.term()
    os.close(master)
    os.close(slave)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--body", default="car0", help="pose stream body id")
    p.add_argument("--pose-bind", default="tcp://127.0.0.1:*")
    p.add_argument("--calibration", default=None, help="YAML calibration used as the plant")
    p.add_argument("--timeout", type=float, default=0.5, help="s without a motor command before braking")
    p.add_argument("--timeout-brake-current", type=float, default=20.0)
    p.add_argument("--start", type=lambda t: tuple(float(v) for v in t.split(",")), default=(0.0, 0.0, 0.0),
                   help="initial pose x,y,yaw in the track frame")
    p.add_argument("--mute-after", type=float, default=None)
    p.add_argument("--corrupt-after", type=float, default=None)
    p.add_argument("--command-log", default=None, help="append every motor/servo command received (JSON lines)")
    serve(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
