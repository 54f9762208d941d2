"""`LeRobotRobotDriver`: any LeRobot `Robot` (so101_follower first) behind rtctl's `Driver` protocol.

One I/O thread owns the robot (its serial bus): it sends the newest command the tick posted, then reads the
joints, and hands the observation back through a `LatestValue`. The tick's `read()`/`write()` only touch
those slots, so the tick never waits on serial I/O. Every bus write is timestamped: `bus_stats()` gives the
write intervals and each command's age from its tick's start (`rtctl.drivers.bus_stats`).

Bus timing rules, each measured at the emulator's receipt of the goals (`rtctl deploy`, ``bus_emulator``):
a stamped command is written at a fixed delay after its tick's scheduled start (`SendSchedule`), so the
tick's start jitter and the variance of its work before `write()` stay off the bus (``send_delay="now"``
writes on post); the joints are read right after the write, so the bus is free when the next command comes;
the keep-alive read (no command posted) waits 1.5 periods, so a tick a little late does not find the bus
busy; the port blocks in select() while a reply is on its way (the SDK opens it non-blocking and polls it
in a loop, which spins a core and the GIL against the tick and the servo side); and the command posted last
before `disconnect()` is still written. A command replaced by a newer one before its write is counted
(``replaced``), never queued. The same thread runs the watchdog (no new command for
``watchdog_s`` → it stops sending and the servos hold their last goal; it resumes on the next command), the
operator e-stop (torque off on every servo that answers, then the driver faults) and the fault diagnosis
(which servo went silent or sends corrupted packets; whether the port itself is gone). A fault becomes a
`DriverError` raised by the next `read()`, so the run loop stops safely and says why.

Units (lerobot 0.4.4, checked in the installed code): `SOFollowerConfig.use_degrees` defaults to True, so
arm joints arrive in degrees around the middle of the calibrated range (``MotorNormMode.DEGREES``); with
``use_degrees=False`` they are −100..100 over the calibrated range (``RANGE_M100_100``); the gripper is
0..100 (``RANGE_0_100``) either way. Every mode is affine in the raw encoder ticks, so `JointMap` maps
calibrated units ↔ ticks ↔ radians with ``rad = sign · (ticks − zero_ticks) · 2π / resolution``;
``zero_ticks`` (default 2047, the half-turn pose lerobot's calibration homes to) and ``sign`` are per joint.
"""
from __future__ import annotations

import logging
import math
import termios
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import numpy as np

from rtctl.drivers.base import DriverError, DriverSpec, EStopped, LatestValue
from rtctl.drivers.bus_stats import BusStats, SendSchedule

log = logging.getLogger(__name__)
# lerobot config-type names whose classes live in a module with another name
ROBOT_MODULES = {"so100_follower": "so_follower", "so101_follower": "so_follower"}
# A vanished serial port surfaces as OSError (pyserial's SerialException) or, from tcflush/tcdrain on a
# hung-up tty, as termios.error (not an OSError).
PORT_ERRORS = (OSError, termios.error)


def robot_from_config(robot_type: str, fields: Mapping[str, Any]) -> Any:
    """Build a LeRobot robot from its registered config type (``--robot.type``) and config fields."""
    import importlib
    from pathlib import Path

    from lerobot.robots import RobotConfig, make_robot_from_config

    module = ROBOT_MODULES.get(robot_type, robot_type)
    try:
        importlib.import_module(f"lerobot.robots.{module}")
    except ModuleNotFoundError:
        pass  # make_robot_from_config knows more types than module names; let it say what is missing
    try:
        cls = RobotConfig.get_choice_class(robot_type)
    except KeyError:
        known = ", ".join(sorted(RobotConfig.get_known_choices()))
        raise ValueError(f"unknown LeRobot robot type {robot_type!r} (known: {known})") from None
    fields = dict(fields)
    if fields.get("calibration_dir") is not None:
        fields["calibration_dir"] = Path(fields["calibration_dir"])
    return make_robot_from_config(cls(**fields))


@dataclass(frozen=True)
class JointMap:
    """Per joint: rad = scale · calibrated_unit + offset (both affine; see the module docstring)."""

    names: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray
    low: np.ndarray  # rad at the calibrated range ends
    high: np.ndarray

    @classmethod
    def from_bus(cls, bus: Any, zero_ticks: Optional[Sequence[float]] = None,
                 sign: Optional[Sequence[float]] = None) -> "JointMap":
        from lerobot.motors import MotorNormMode

        names = tuple(bus.motors)
        n = len(names)
        zero = np.full(n, 2047.0) if zero_ticks is None else np.asarray(zero_ticks, float)
        sgn = np.ones(n) if sign is None else np.asarray(sign, float)
        if zero.shape != (n,) or sgn.shape != (n,) or not np.all(np.abs(sgn) == 1):
            raise ValueError(f"JointMap: zero_ticks and sign need {n} values (sign ±1) for motors {names}")
        scale, offset, low, high = (np.zeros(n) for _ in range(4))
        for k, name in enumerate(names):
            motor, cal = bus.motors[name], bus.calibration.get(name)
            if cal is None:
                raise ValueError(f"JointMap: no calibration for motor '{name}'")
            res = bus.model_resolution_table[motor.model]
            lo, hi, inv = cal.range_min, cal.range_max, bool(bus.apply_drive_mode and cal.drive_mode)
            mode = motor.norm_mode
            if mode is MotorNormMode.DEGREES:
                t_per_u, t0 = (res - 1) / 360.0, (lo + hi) / 2.0
            elif mode is MotorNormMode.RANGE_M100_100:
                t_per_u, t0 = (hi - lo) / 200.0 * (-1 if inv else 1), (lo + hi) / 2.0
            elif mode is MotorNormMode.RANGE_0_100:
                t_per_u, t0 = ((hi - lo) / 100.0, lo) if not inv else (-(hi - lo) / 100.0, hi)
            else:
                raise ValueError(f"JointMap: motor '{name}' uses {mode}, which has no radian mapping")
            rad_per_tick = sgn[k] * 2.0 * math.pi / res
            scale[k], offset[k] = rad_per_tick * t_per_u, rad_per_tick * (t0 - zero[k])
            ends = sorted(rad_per_tick * (np.array([lo, hi]) - zero[k]))
            low[k], high[k] = ends
        return cls(names, scale, offset, low, high)

    def to_rad(self, values: Mapping[str, float]) -> np.ndarray:
        return np.array([values[f"{m}.pos"] for m in self.names], float) * self.scale + self.offset

    def from_rad(self, q: np.ndarray) -> dict[str, float]:
        u = (np.asarray(q, float) - self.offset) / self.scale
        return {f"{m}.pos": float(v) for m, v in zip(self.names, u)}


def _port_of(robot: Any) -> str:
    return str(getattr(getattr(robot, "config", None), "port", "?"))


class LeRobotRobotDriver:
    """See the module docstring. ``extra_obs()`` is merged into every observation (e.g. the ``target``
    a camera-less policy takes as its task input); ``cameras`` are `CameraReader`s keyed by observation name."""

    def __init__(self, robot: Any, rate_hz: float = 30.0, *, zero_ticks: Optional[Sequence[float]] = None,
                 sign: Optional[Sequence[float]] = None,
                 extra_obs: Optional[Callable[[], Mapping[str, np.ndarray]]] = None, cameras: Optional[Mapping[str, Any]] = None,
                 dry_run: bool = False, on_disconnect: Literal["hold", "disable"] = "hold",
                 watchdog_s: float = 0.2, max_obs_age_s: float = 0.5, bus_retries: int = 2, connect_retries: int = 2,
                 read_block_s: float = 0.01, send_delay: Literal["auto", "now"] | float = "auto",
                 on_event: Optional[Callable[..., None]] = None, name: Optional[str] = None) -> None:
        self.robot, self.rate_hz = robot, rate_hz
        self.port = _port_of(robot)
        self.extra_obs = extra_obs or dict
        self.cameras = dict(cameras or {})
        self.dry_run, self.on_disconnect = dry_run, on_disconnect
        self.watchdog_s, self.max_obs_age_s, self.bus_retries = watchdog_s, max_obs_age_s, bus_retries
        self.connect_retries = connect_retries
        self.read_block_s = read_block_s
        fixed = isinstance(send_delay, (int, float)) and 0 <= send_delay < 1.0 / rate_hz
        if not (fixed or send_delay in ("auto", "now")):
            raise ValueError(f"send_delay must be 'auto', 'now' or seconds in [0, one period), got {send_delay!r}")
        self._schedule = (None if send_delay == "now" else
                          SendSchedule(1.0 / rate_hz, None if send_delay == "auto" else float(send_delay)))
        self.on_event = on_event or (lambda kind, **f: None)
        if hasattr(getattr(robot, "config", None), "disable_torque_on_disconnect"):
            robot.config.disable_torque_on_disconnect = on_disconnect == "disable"
        self.motors = [k.removesuffix(".pos") for k in robot.action_features if k.endswith(".pos")]
        self._map: Optional[JointMap] = None
        self._zero_ticks, self._sign = zero_ticks, sign
        self._obs: LatestValue[dict] = LatestValue()
        # (command, stamp_ns, post_ns, stamped: the tick gave its start)
        self._cmd: LatestValue[tuple[np.ndarray, int, int, bool]] = LatestValue()
        self._bus = BusStats(1.0 / rate_hz)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._estop: Optional[str] = None
        self._fault: Optional[DriverError] = None
        self._thread: Optional[threading.Thread] = None
        self.counts = {"sent": 0, "dry_run": 0, "reads": 0, "bus_errors": 0, "watchdog_holds": 0}
        self.last_sent: Optional[np.ndarray] = None
        self.last_bus_error: Optional[str] = None
        n = len(self.motors)
        shapes = {"state": (n,), **{k: np.shape(v) for k, v in self.extra_obs().items()}}
        # limits are refined from the calibration at connect(); until then the servo range
        self.spec = DriverSpec(name=name or f"lerobot/{getattr(robot, 'name', type(robot).__name__)}",
                               action_names=tuple(self.motors), action_low=np.full(n, -math.pi),
                               action_high=np.full(n, math.pi), observation_shapes=shapes, units="rad",
                               rate_hz=rate_hz, extra={"port": self.port, "dry_run": dry_run})

    # -- Driver protocol (tick side: never waits on the bus) --------------------------------------------
    def connect(self) -> None:
        robot = self.robot
        # lerobot's connect() pings and writes ~100 configuration registers without retries; one late or
        # broken answer (ConnectionError, or RuntimeError from its motor check) must not fail the start, so
        # it closes the port and connects again; a motor that is really missing fails every try.
        for attempt in range(1 + self.connect_retries):
            try:
                self._connect_robot()
                break
            except DriverError:
                self._close_quietly()
                raise
            except (ConnectionError, RuntimeError) as err:
                self._close_quietly()
                if attempt == self.connect_retries:
                    raise DriverError(f"{robot} on {self.port}: connect failed after {attempt + 1} tries: "
                                      f"{type(err).__name__}: {err}") from err
                self.on_event("connect_retry", port=self.port, error=" ".join(str(err).split()))
            except Exception as err:
                self._close_quietly()
                raise DriverError(f"{robot} on {self.port}: connect failed: {type(err).__name__}: {err}") from err
        if self._map is None and hasattr(robot, "bus"):
            self._map = JointMap.from_bus(robot.bus, self._zero_ticks, self._sign)
        if self._map is not None:
            self.spec = replace(self.spec, action_low=self._map.low.copy(), action_high=self._map.high.copy())
        try:
            self._obs.put(self._read_bus())
            for cam in self.cameras.values():
                cam.start()
            for cam in self.cameras.values():
                cam.wait_first()
        except DriverError:
            for cam in self.cameras.values():
                cam.stop()
            self._close_quietly()
            raise
        self._thread = threading.Thread(target=self._io_loop, name="lerobot-io", daemon=True)
        self._thread.start()
        self.on_event("driver_connected", port=self.port, dry_run=self.dry_run, motors=self.motors)

    def _connect_robot(self) -> None:
        robot = self.robot
        robot.connect(calibrate=False)  # never lerobot's interactive prompts; calibration handled here
        if not robot.is_calibrated:
            if not getattr(robot, "calibration", None):
                raise DriverError(
                    f"{robot} on {self.port}: no calibration file at {getattr(robot, 'calibration_fpath', '?')}; "
                    f"calibrate once with lerobot's own tool (lerobot-calibrate --robot.type=... --robot.port=... "
                    f"--robot.id=...), then point calibration_dir/id at it")
            robot.bus.write_calibration(robot.calibration)  # what lerobot does when you accept its file
            self.on_event("calibration_written", port=self.port)
        ser = getattr(getattr(getattr(robot, "bus", None), "port_handler", None), "ser", None)
        if ser is not None and self.read_block_s > 0:
            # scservo_sdk opens the port with timeout=0 and polls it in a tight loop until a status packet is
            # complete. A read timeout makes each poll wait in select() for the bytes instead (no CPU, no GIL);
            # the SDK's own packet timeout still decides when a servo is silent.
            ser.timeout = self.read_block_s

    def read(self) -> dict[str, Any]:
        if self._fault is not None:
            raise self._fault
        obs, _ = self._obs.get()
        if obs is None:
            raise DriverError(f"{self.spec.name}: read() before connect()")
        age_s = (time.monotonic_ns() - obs["t_ns"]) * 1e-9
        if age_s > self.max_obs_age_s:
            last = f"; last bus error: {self.last_bus_error}" if self.last_bus_error else ""
            raise DriverError(f"{self.spec.name} on {self.port}: no joint reading for {age_s * 1e3:.0f} ms "
                              f"(limit {self.max_obs_age_s * 1e3:.0f} ms){last}")
        out = {**obs, **self.extra_obs()}
        for name, cam in self.cameras.items():
            out[name] = cam.latest()[0]
        return out

    def write(self, action: np.ndarray, stamp_ns: Optional[int] = None) -> np.ndarray:
        """Post a command for the I/O thread; ``stamp_ns`` is the start of the control tick it belongs to
        (time.monotonic_ns(); None = now), from which its age at the bus write is measured."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.spec.action_dim,) or not np.all(np.isfinite(a)):
            raise ValueError(f"{self.spec.name}.write: expected {self.spec.action_dim} finite values, got {a!r}")
        applied = self.spec.clip(a)
        now = time.monotonic_ns()
        self._cmd.put((applied, now if stamp_ns is None else int(stamp_ns), now, stamp_ns is not None))
        self._bus.post()
        self._wake.set()
        return applied

    def bus_stats(self) -> dict:
        """Command timing at the bus write (`rtctl.drivers.bus_stats.KEYS`): posted/sent/replaced counts,
        write intervals and command age (tick start → bytes written), ms."""
        return self._bus.summary()

    @property
    def safe_state(self) -> str:
        """What the arm does after a fault stopped the run (the CLI's one line says it)."""
        if self._estop is not None:
            return "torque is off on every servo that answered (operator e-stop)"
        return "torque is off" if self.on_disconnect == "disable" else "the servos hold their last goal"

    def io_thread_ids(self) -> list[int]:
        """Native ids of the I/O thread (for CPU placement: it writes while the tick sleeps)."""
        t = self._thread
        return [t.native_id] if t is not None and t.is_alive() and t.native_id is not None else []

    def estop(self, reason: str = "operator") -> None:
        """Disable torque on every servo (done by the I/O thread at once); the driver then faults."""
        self._estop = reason
        self._wake.set()

    def disconnect(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for cam in self.cameras.values():
            cam.stop()
        if not getattr(self.robot, "is_connected", False):
            return
        try:
            self.robot.disconnect()  # disables torque first when on_disconnect == "disable"
            self.on_event("driver_disconnected", port=self.port, torque="off" if self.on_disconnect == "disable" else "held")
        except Exception as err:
            off = self._torque_off_best_effort() if self.on_disconnect == "disable" else []
            self._close_quietly()
            raise DriverError(f"{self.spec.name} on {self.port}: disconnect failed ({type(err).__name__}: {err}); "
                              f"port closed, torque off on {off or 'no servo'}") from err

    # -- the I/O thread ---------------------------------------------------------------------------------
    def _io_loop(self) -> None:
        sent_version, last_cmd_ns, holding = 0, time.monotonic_ns(), False
        poll_s = 1.5 / self.rate_hz  # keep-alive read only when the tick is really late (module docstring)
        try:
            while True:
                self._wake.wait(poll_s)
                self._wake.clear()
                if self._estop is not None:
                    off = self._torque_off_best_effort()
                    raise EStopped(f"operator e-stop ({self._estop}): torque disabled on {off} at {self.port}")
                cmd, version = self._cmd.get()
                if cmd is not None and version != sent_version and cmd[3] and self._schedule is not None:
                    wait_ns = self._schedule.release_ns(cmd[1], cmd[2]) - time.monotonic_ns()
                    if wait_ns > 0:
                        self._stop.wait(wait_ns * 1e-9)  # disconnect() cuts it short: the command goes at once
                        if self._estop is not None:
                            continue  # torque off first (top of the loop)
                        cmd, version = self._cmd.get()  # the newest command goes, never a stale one
                now = time.monotonic_ns()
                if cmd is not None and version != sent_version:
                    sent_version, last_cmd_ns = version, now
                    self._bus.take(version)
                    if holding:
                        holding = False
                        self.on_event("watchdog_release", port=self.port)
                    self._send(*cmd[:3])
                elif sent_version and not holding and (now - last_cmd_ns) * 1e-9 > self.watchdog_s:
                    holding = True  # the tick stalled: send nothing, the servos keep their last goal
                    self.counts["watchdog_holds"] += 1
                    self.on_event("watchdog_hold", port=self.port, stalled_ms=(now - last_cmd_ns) / 1e6)
                    log.warning("%s: no command for %.0f ms, holding the last goal", self.spec.name, (now - last_cmd_ns) / 1e6)
                if self._stop.is_set():  # checked after the send: the last command posted still goes out
                    break
                self._obs.put(self._read_bus())
        except DriverError as err:
            self._fault = err
        except Exception as err:  # a bug must stop the run loudly, not leave a dead thread behind
            self._fault = DriverError(f"{self.spec.name}: I/O thread failed: {type(err).__name__}: {err}")
        if self._fault is not None:
            self.on_event("driver_fault", port=self.port, error=str(self._fault))
            log.error("%s", self._fault)

    def _send(self, q: np.ndarray, stamp_ns: int, post_ns: int) -> None:
        action = self._map.from_rad(q) if self._map is not None else {f"{m}.pos": float(v) for m, v in zip(self.motors, q)}
        if self.dry_run:
            self.counts["dry_run"] += 1
            log.info("dry_run: would send %s", action)
            self.last_sent = np.asarray(q, float)
            return
        try:
            sent = self.robot.send_action(action)
        except PORT_ERRORS as err:  # a sync write gets no answer, so any failure is the port itself
            raise DriverError(self._port_message(err)) from err
        self._bus.wrote(time.monotonic_ns(), stamp_ns, post_ns)  # send_action returns once the bytes are written
        self.counts["sent"] += 1
        self.last_sent = self._map.to_rad(sent) if self._map is not None else np.asarray(q, float)

    def _read_bus(self) -> dict[str, Any]:
        err: Optional[Exception] = None
        for _ in range(1 + self.bus_retries):
            try:
                raw = self.robot.get_observation()
            except ConnectionError as e:  # the bus answered wrongly or not at all: retry, then diagnose
                err = e
                self.counts["bus_errors"] += 1
                self.last_bus_error = " ".join(str(e).split())
                continue
            except PORT_ERRORS as e:
                raise DriverError(self._port_message(e)) from e
            self.counts["reads"] += 1
            state = self._map.to_rad(raw) if self._map is not None else np.array([raw[f"{m}.pos"] for m in self.motors], float)
            if err is not None:
                self.on_event("bus_error_recovered", port=self.port, error=str(err).strip())
            frames = {k: v for k, v in raw.items() if not k.endswith(".pos")}  # the robot's own cameras (read_latest)
            return {**frames, "state": state, "t_ns": time.monotonic_ns()}
        raise DriverError(self._diagnose(err))

    def _diagnose(self, err: Optional[Exception]) -> str:
        """Name the servos at fault: read each one alone and sort the SDK's verdicts."""
        bus = getattr(self.robot, "bus", None)
        problems = []
        for name in (bus.motors if bus is not None else []):
            try:
                bus.read("Present_Position", name, normalize=False)
            except ConnectionError as e:
                text = str(e)
                what = ("does not answer (no status packet)" if "no status packet" in text else
                        "sends corrupted packets (bad checksum)" if "Incorrect status packet" in text else text.strip())
                problems.append(f"servo {bus.motors[name].id} ({name}) {what}")
            except PORT_ERRORS as e:
                return self._port_message(e)
        detail = "; ".join(problems) if problems else f"{err}".strip()
        return f"{self.spec.name}: bus fault on {self.port} after {1 + self.bus_retries} tries: {detail}"

    def _port_message(self, err: Exception) -> str:
        return f"{self.spec.name}: serial port {self.port} closed or unplugged ({type(err).__name__}: {err})"

    def _torque_off_best_effort(self) -> list[str]:
        bus = getattr(self.robot, "bus", None)
        off = []
        for name in (bus.motors if bus is not None else []):
            try:
                bus.disable_torque(name, num_retry=2)
                off.append(name)
            except Exception as err:  # keep going: every servo that answers must go limp
                log.error("torque off failed on %s: %s", name, err)
        return off

    def _close_quietly(self) -> None:
        port = getattr(getattr(self.robot, "bus", None), "port_handler", None)
        try:
            if port is not None and port.is_open:
                port.closePort()
        except Exception:  # the port may be gone already
            pass
