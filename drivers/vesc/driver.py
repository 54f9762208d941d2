"""`VescDriver`: a 1/10-scale car's VESC over a serial port, behind the `Driver` protocol.

One I/O thread owns the port (pyserial). Each cycle (`io_hz`) it turns the newest command (a m/s², δ rad)
into a motor or brake current through the car's `Calibration` at the measured speed, sends it with the servo
position and a COMM_GET_VALUES request, and decodes whatever replies have arrived. The tick never waits:
`write()` posts the command, `read()` returns the newest observation (`state` = x, y, yaw, v in the track
frame; `vesc` = the last values reply) or raises `DriverError` when the thread has lost the controller:
no valid reply for `timeout_s` (silent controller, or only CRC-broken frames), the port closed, or the pose
source silent for `pose_timeout_s`. On any fault and on `disconnect()` the driver commands full brake current;
the firmware's own command timeout brakes the car if even that cannot be sent.

The pose comes from a plug-in (`rtctl.drivers.pose`); without one the driver dead-reckons from the wheel
speed and the commanded steering (good for a few metres only).

Bus timing (`bus_stats()`, `rtctl.drivers.bus_stats`): every motor-command frame written is timestamped.
The thread re-sends the newest command every cycle (the firmware brakes without one), so intervals are
between motor-command frames (period = 1/`io_hz`); ``sent`` counts posted commands that reached the bus at
least once, their age is tick start → their first frame, and ``replaced`` those overwritten before any.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Optional

import numpy as np
import serial

from rtctl.drivers.base import DriverError, DriverSpec, LatestValue
from rtctl.drivers.bus_stats import BusStats
from rtctl.drivers.pose import PoseSource
from rtctl.drivers.vesc import codec
from rtctl.drivers.vesc.calibration import Calibration

WHEELBASE = 0.3302


class VescDriver:
    def __init__(self, port: str, calibration: Calibration | None = None, pose: PoseSource | None = None,
                 rate_hz: float = 50.0, io_hz: float = 100.0, baudrate: int = 115200, timeout_s: float = 0.3,
                 pose_timeout_s: float = 0.3, accel_limits: tuple[float, float] = (-4.0, 3.0),
                 steer_max: float = 0.4189, initial_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.port, self.baudrate = port, baudrate
        self.cal = calibration or Calibration()
        self.pose_source = pose
        self.io_period = 1.0 / io_hz
        self.timeout_s, self.pose_timeout_s = timeout_s, pose_timeout_s
        self.spec = DriverSpec(name=f"vesc:{port}", action_names=("accel", "steer"),
                               action_low=np.array([accel_limits[0], -steer_max]),
                               action_high=np.array([accel_limits[1], steer_max]),
                               observation_shapes={"state": (4,)}, units="m, rad, m/s, m/s²", rate_hz=rate_hz)
        # (command, stamp_ns, post_ns); version 0 is the initial zero command, not a posted one
        self._cmd: LatestValue[tuple[np.ndarray, int, int]] = LatestValue((np.zeros(2), 0, 0))
        self._bus = BusStats(self.io_period)
        self._obs: LatestValue[dict] = LatestValue()
        self._fault: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ser: serial.Serial | None = None
        self.decoder = codec.FrameDecoder()
        self._pose = initial_pose
        self._pose_t = time.monotonic_ns()
        self._pose_seen = pose is None
        self.stats = {"replies": 0, "sent": 0, "write_timeouts": 0}

    # -- Driver protocol ----------------------------------------------------------------------------------
    def connect(self) -> None:
        try:
            # pyserial raises a write timeout after the bytes went out if the thread was descheduled for
            # longer than the timeout (GIL, a busy computer): keep it long, and let the reply timeout judge
            self._ser = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=1.0)
        except (serial.SerialException, OSError) as err:
            raise DriverError(f"VESC port {self.port} cannot be opened: {err}") from None
        self._last_reply = time.monotonic()
        self._thread = threading.Thread(target=self._io_loop, name=f"vesc-io:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + max(1.0, 3 * self.timeout_s)
        while self._obs.get()[0] is None or not self._pose_seen:  # connect may wait: no tick runs yet
            if self._fault:
                raise DriverError(self._fault)
            if time.monotonic() > deadline:
                self.disconnect()
                what = ("sent no valid COMM_GET_VALUES reply" if self._obs.get()[0] is None
                        else "got no pose from its pose source")
                raise DriverError(f"VESC on {self.port} {what} within {max(1.0, 3 * self.timeout_s):.1f} s "
                                  f"(CRC errors: {self.decoder.crc_errors})")
            time.sleep(0.005)

    def read(self) -> dict[str, Any]:
        if self._fault:
            raise DriverError(self._fault)
        obs, _ = self._obs.get()
        if obs is None:
            raise DriverError(f"VESC driver on {self.port}: read() before connect()")
        silent = time.monotonic() - self._last_reply
        if silent > 2 * self.timeout_s:  # the I/O thread itself is stuck (e.g. in a write)
            raise DriverError(f"VESC on {self.port}: no reply for {silent:.2f} s (I/O thread stuck)")
        return obs

    def write(self, action: np.ndarray, stamp_ns: Optional[int] = None) -> np.ndarray:
        """Post (accel, steer); ``stamp_ns`` is the start of the control tick it belongs to (None = now)."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"VescDriver.write: expected 2 finite values (accel, steer), got {a!r}")
        applied = self.spec.clip(a)
        now = time.monotonic_ns()
        self._cmd.put((applied, now if stamp_ns is None else int(stamp_ns), now))
        self._bus.post()
        return applied

    def bus_stats(self) -> dict:
        """Command timing at the bus write (`rtctl.drivers.bus_stats.KEYS`; module docstring), ms."""
        return self._bus.summary()

    def io_thread_ids(self) -> list[int]:
        """Native ids of the I/O thread (for CPU placement: it writes while the tick sleeps)."""
        t = self._thread
        return [t.native_id] if t is not None and t.is_alive() and t.native_id is not None else []

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._brake()
        if self._ser is not None:
            try:
                self._ser.close()
            except (serial.SerialException, OSError):
                pass
            self._ser = None
        if self.pose_source is not None:
            self.pose_source.close()
            self.pose_source = None

    # -- I/O thread ---------------------------------------------------------------------------------------
    def _send(self, payload: bytes) -> bool:
        try:
            self._ser.write(codec.frame(payload))
        except serial.SerialTimeoutException:
            self.stats["write_timeouts"] += 1  # a stuck port shows as missing replies
            return False
        self.stats["sent"] += 1
        return True

    def _brake(self) -> None:
        """Best effort: full brake current, steering centred."""
        if self._ser is None:
            return
        try:
            self._send(codec.set_current_brake(self.cal.max_brake_current))
        except (serial.SerialException, OSError, ValueError):
            pass

    def _io_loop(self) -> None:
        values: codec.VescValues | None = None
        sent_version = 0
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                v = self.cal.speed(values.rpm) if values else 0.0
                (command, stamp_ns, post_ns), version = self._cmd.get()
                accel, steer = command
                mode, amps = self.cal.current_for(float(accel), v)
                if self._send(codec.set_current(amps) if mode == "current" else codec.set_current_brake(amps)):
                    new = version != sent_version
                    if new:
                        self._bus.take(version)
                        sent_version = version
                    self._bus.wrote(time.monotonic_ns(), stamp_ns, post_ns, new=new)
                self._send(codec.set_servo_pos(self.cal.servo_for(float(steer))))
                self._send(codec.get_values())
                data = self._ser.read(self._ser.in_waiting or 1)
                for payload in self.decoder.feed(data):
                    if payload[0] == codec.COMM_GET_VALUES:
                        try:
                            values = codec.parse_values(payload)
                        except codec.VescProtocolError:
                            continue
                        self._last_reply = now
                        self.stats["replies"] += 1
                        self._publish(values, float(steer))
                if now - self._last_reply > self.timeout_s:
                    crc = f", {self.decoder.crc_errors} frames with a bad CRC" if self.decoder.crc_errors else ""
                    self._fail(f"VESC on {self.port} stopped answering: no valid reply for "
                               f"{now - self._last_reply:.2f} s{crc}")
                    return
                if self.pose_source is not None and time.monotonic_ns() - self._pose_t > self.pose_timeout_s * 1e9:
                    self._fail(f"pose source silent for more than {self.pose_timeout_s} s")
                    return
                next_t = max(next_t + self.io_period, time.monotonic())  # after a stall: no burst of catch-up frames
                time.sleep(max(0.0, next_t - time.monotonic()))
        except (serial.SerialException, OSError) as err:
            self._fail(f"VESC port {self.port} closed or failed: {err}")
        except Exception as err:  # a bug must still brake the car and reach the tick as a DriverError
            self._fail(f"VESC I/O thread crashed: {type(err).__name__}: {err}")

    def _fail(self, reason: str) -> None:
        self._fault = reason
        self._brake()

    def _publish(self, values: codec.VescValues, steer: float) -> None:
        v = max(self.cal.speed(values.rpm), 0.0)
        now = time.monotonic_ns()
        pose = self.pose_source.poll() if self.pose_source is not None else None
        if pose is not None:
            self._pose, self._pose_t, self._pose_seen = (pose.x, pose.y, pose.yaw), pose.t_ns, True
        elif self.pose_source is None:  # dead reckoning from wheel speed and commanded steering
            x, y, yaw = self._pose
            dt = (now - self._pose_t) * 1e-9
            ds = v * dt
            self._pose = (x + ds * math.cos(yaw), y + ds * math.sin(yaw), yaw + ds * math.tan(steer) / WHEELBASE)
            self._pose_t = now
        x, y, yaw = self._pose
        self._obs.put({"state": np.array([x, y, yaw, v]), "t_ns": self._pose_t,
                       "vesc": {"erpm": values.rpm, "v_in": values.v_in, "motor_current": values.avg_motor_current,
                                "temp_fet": values.temp_fet, "fault_code": values.fault_code,
                                "tachometer": values.tachometer}})
