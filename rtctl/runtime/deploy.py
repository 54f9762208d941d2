"""`rtctl deploy CONFIG`: a policy on a LeRobot robot (real, or the servo-bus emulator) under rtctl's tick.

Same runtime as `rtctl run` (tick, chunk scheduler, Ray policy actor, shield, run folder with summary.json
and deadline_misses); what deploy adds: the LeRobot driver (`rtctl.drivers.lerobot_robot`), optionally the
Feetech emulator process it talks to, a target schedule (the task input of camera-less policies), and the
operator e-stop (a line ``e`` on the terminal, or ``rtctl estop RUN``: `rtctl.runtime.estop`, one acknowledged
address per run), which disables torque and stops the run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import numpy as np
from pydantic import Field

from rtctl.config import ConfigError, StrictModel, load_config
from rtctl.runtime.estop import EstopListeners, check_free, send_estop  # noqa: F401  (send_estop: the operator side, re-exported)
from rtctl.runtime.policies import resolve_checkpoint
from rtctl.report.runfolder import RunFolder, check_out_dir, default_run_dir
from rtctl.runtime.drivers import make_driver, register_driver
from rtctl.runtime.runner import RunConfig, execute
from rtctl.runtime.shield import make_shield

SO_ARMS = ("so100_follower", "so101_follower")
TICKS_PER_RAD = 4096 / (2 * math.pi)


class DeployRobotConfig(StrictModel):
    """The LeRobot robot config (``--robot.*`` in lerobot's tools)."""

    type: str = "so101_follower"
    port: Optional[str] = None  # e.g. /dev/ttyACM0 (lerobot-find-port); set by the emulator when it runs
    id: str = "so101"
    calibration_dir: Optional[str] = None  # default: lerobot's ~/.cache/huggingface/lerobot/calibration/robots/<name>
    use_degrees: bool = True
    max_relative_target: Optional[float] = Field(None, gt=0.0)
    fields: dict[str, Any] = Field(default_factory=dict)  # any other field of the robot's config class


class CameraConfig(StrictModel):
    kind: Literal["synthetic"] = "synthetic"
    key: str = "image"  # observation key
    height: int = Field(96, ge=8, le=2160)
    width: int = Field(96, ge=8, le=3840)
    fps: float = Field(30.0, gt=0.0, le=240.0)
    max_age_s: float = Field(0.5, gt=0.0, le=10.0)


class LeRobotDriverConfig(StrictModel):
    type: Literal["lerobot"] = "lerobot"
    robot: DeployRobotConfig = DeployRobotConfig()
    dry_run: bool = False  # read and log, never send a goal
    on_disconnect: Literal["hold", "disable"] = "hold"  # torque at the end of the run
    watchdog_s: float = Field(0.2, gt=0.0, le=10.0)  # no command for this long: hold the last goal
    max_obs_age_s: float = Field(0.5, gt=0.0, le=10.0)
    bus_retries: int = Field(2, ge=0, le=10)  # a failed joint read is retried this often before it is a fault
    connect_retries: int = Field(2, ge=0, le=10)
    # When the I/O thread writes each command: "auto" = a fixed delay after its tick's scheduled start,
    # learned from the ticks (keeps tick jitter off the bus), "now" = as soon as it is posted, or seconds.
    send_delay: Union[Literal["auto", "now"], Annotated[float, Field(ge=0.0, le=1.0)]] = "auto"
    read_block_s: float = Field(0.01, gt=0.0, le=0.5)  # serial read timeout: the SDK sleeps, not spins
    zero_ticks: Optional[list[float]] = None  # per joint: encoder ticks at 0 rad (default 2047)
    sign: Optional[list[Literal[-1, 1]]] = None
    # Task input for policies without vision: target xyz (m) per segment, cycled every target_period_s.
    targets: list[list[float]] = Field(default_factory=lambda: [[0.2, 0.0, 0.15]])
    target_period_s: float = Field(5.0, gt=0.0, le=3600.0)
    camera: Optional[CameraConfig] = None


class EmulatorConfig(StrictModel):
    enabled: bool = False
    start_rad: list[float] = Field(default_factory=lambda: [0.0, -0.9, 0.9, 0.7, 0.0, 0.3])
    tau_s: float = Field(0.05, gt=0.0, le=2.0)
    # KIND[:ID]@SECONDS, e.g. silent:3@5, close@8; a hand pushing a joint: push:ID:OFFSET_DEG:DURATION_S@SECONDS
    faults: list[str] = Field(default_factory=list)


class EstopConfig(StrictModel):
    key: bool = True  # a line "e" on stdin (only when stdin is a terminal)
    # "auto": this run's own ipc address (written to RUN/estop_address, used by `rtctl estop RUN`); or a
    # ZeroMQ address; None: no message e-stop. A taken address is refused (rtctl.runtime.estop).
    address: Optional[str] = "auto"


class DeployConfig(RunConfig):
    """`rtctl run`'s sections (tick, policy, actor, scheduler, shield, …) with a LeRobot driver."""

    driver: LeRobotDriverConfig = LeRobotDriverConfig()  # type: ignore[assignment]
    emulator: EmulatorConfig = EmulatorConfig()
    estop: EstopConfig = EstopConfig()


class TargetSchedule:
    """``{"target": [x, y, z, 1]}``, cycling through the configured targets."""

    def __init__(self, targets: list[list[float]], period_s: float) -> None:
        self.targets = [np.array([*t, 1.0]) for t in targets]
        self.period_ns, self.t0 = int(period_s * 1e9), time.monotonic_ns()

    def __call__(self) -> dict[str, np.ndarray]:
        k = (time.monotonic_ns() - self.t0) // self.period_ns
        return {"target": self.targets[int(k) % len(self.targets)]}


def main(config_path: str | Path, out_dir: Optional[str | Path] = None, duration: Optional[float] = None,
         resolve_policy: Optional[Callable[[Any], Any]] = None) -> Path:
    """``resolve_policy`` makes a ``policy.train_config``'s checkpoint (the CLI passes the trainers' one)."""
    cfg = load_config(config_path, DeployConfig, {"duration_s": duration} if duration is not None else None)
    d, emu_cfg = cfg.driver, cfg.emulator
    for key, values in (("zero_ticks", d.zero_ticks), ("sign", d.sign), ("start_rad", emu_cfg.start_rad)):
        if values is not None and len(values) != 6 and (key == "start_rad" or d.robot.type in SO_ARMS):
            raise ConfigError(f"config error in {config_path}: key '{'emulator' if key == 'start_rad' else 'driver'}.{key}' needs 6 values, got {len(values)}")
    if isinstance(d.send_delay, float) and d.send_delay >= 1.0 / cfg.tick.rate_hz:
        raise ConfigError(f"config error in {config_path}: key 'driver.send_delay' = {d.send_delay} s must be "
                          f"shorter than one tick ({1.0 / cfg.tick.rate_hz:.4f} s), or 'auto' / 'now'")
    if any(len(t) != 3 for t in d.targets) or not d.targets:
        raise ConfigError(f"config error in {config_path}: key 'driver.targets' must be a list of [x, y, z]")
    if not emu_cfg.enabled and not d.robot.port:
        raise ConfigError(f"config error in {config_path}: key 'driver.robot.port' is required (or enable the emulator)")
    if not emu_cfg.enabled and not Path(d.robot.port).exists():
        raise ConfigError(f"config error in {config_path}: key 'driver.robot.port' = {d.robot.port!r} does not exist "
                          f"(is the arm plugged in? `lerobot-find-port` lists the ports)")
    if cfg.actor.enabled:
        from rtctl.runtime.ray_start import cluster_address, probe_head

        probe_head(cluster_address(cfg.actor.address))  # a wrong address: one line now, before any folder
    out = check_out_dir(out_dir if out_dir else default_run_dir("deploy"))
    cfg.policy = resolve_checkpoint(cfg.policy, resolve_policy)
    from rtctl.runtime.actor_latency import resolve_extra_latency
    from rtctl.runtime.policies import check_checkpoint
    from rtctl.runtime.ray_start import prestart

    resolve_extra_latency(cfg.policy, cfg.actor)
    check_checkpoint(cfg.policy, cfg.tick.rate_hz, 6 if cfg.driver.robot.type in SO_ARMS else None)  # 5 joints + gripper
    check_free(cfg.estop.address)
    shield = make_shield(cfg.shield, cfg.driver.robot.type, cfg.tick.rate_hz)
    prestart(cfg)  # Ray and the policy actor start while the emulator and the driver come up (−1.5 s measured)
    emulator = _start_emulator(cfg) if emu_cfg.enabled else None
    estop: Optional[EstopListeners] = None
    try:
        if emulator is not None:
            d.robot.port = emulator.path  # the emulator's pseudo-terminal is the arm's serial port
        driver = make_driver(cfg)
        estop = EstopListeners(cfg.estop.address, cfg.estop.key, driver.estop, robot_kind="arm")

        def attach(folder: RunFolder) -> None:
            driver.on_event = folder.event
            estop.write_address(folder.path)

        def extra() -> dict:
            bus_emulator = None
            if emulator is not None:
                emulator.stop()
                # the goals as the emulator received them (its clock is the driver's): bus-level truth
                log = emulator.keep_goal_log(out / "emulator_goals.jsonl")
                if log is not None:
                    from rtctl.drivers.bus_stats import log_summary

                    bus_emulator = log_summary(log, 1.0 / cfg.tick.rate_hz)
            return {"driver": {**driver.counts, "port": driver.port, "dry_run": d.dry_run},
                    "emulator": emulator.counts if emulator is not None else None, "bus_emulator": bus_emulator}

        return execute(cfg, driver, shield, out, on_folder=attach, extra_summary=extra)
    finally:
        from rtctl.runtime.ray_start import cancel_prestart

        cancel_prestart()  # no-op when execute() took the prestarted actor over
        if estop is not None:
            estop.close()
        if emulator is not None:
            emulator.stop()


def _start_emulator(cfg: DeployConfig) -> Any:
    from rtctl.drivers.emulators.feetech import EmulatorProcess

    r, d = cfg.driver.robot, cfg.driver
    cal = Path(r.calibration_dir or "") / f"{r.id}.json"
    if not r.calibration_dir or not cal.is_file():
        raise ConfigError(f"config error: the emulator needs driver.robot.calibration_dir with {r.id}.json (not found: {cal})")
    zero = d.zero_ticks or [2047.0] * 6
    sign = d.sign or [1] * 6
    start = [int(round(z + s * q * TICKS_PER_RAD)) for z, s, q in zip(zero, sign, cfg.emulator.start_rad)]
    try:
        return EmulatorProcess(str(cal), start, cfg.emulator.tau_s, cfg.emulator.faults)
    except RuntimeError as err:
        raise ConfigError(f"config error in emulator: {err} (faults: {cfg.emulator.faults})") from None


def _build_lerobot(cfg: DeployConfig) -> Any:
    from rtctl.drivers.lerobot_robot import LeRobotRobotDriver, robot_from_config

    d, r = cfg.driver, cfg.driver.robot
    fields = {"port": r.port, "id": r.id, "calibration_dir": r.calibration_dir, "use_degrees": r.use_degrees,
              "max_relative_target": r.max_relative_target, **r.fields}
    try:
        robot = robot_from_config(r.type, fields)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config error: key 'driver.robot': {err}") from None
    cameras = {}
    if d.camera is not None:
        from rtctl.drivers.camera import CameraReader, SyntheticCamera

        c = d.camera
        cameras[c.key] = CameraReader(SyntheticCamera(c.height, c.width, c.fps), c.key, c.max_age_s)
    return LeRobotRobotDriver(robot, cfg.tick.rate_hz, zero_ticks=d.zero_ticks, sign=d.sign,
                              extra_obs=TargetSchedule(d.targets, d.target_period_s), cameras=cameras,
                              dry_run=d.dry_run, on_disconnect=d.on_disconnect, watchdog_s=d.watchdog_s,
                              max_obs_age_s=d.max_obs_age_s, bus_retries=d.bus_retries,
                              connect_retries=d.connect_retries, send_delay=d.send_delay,
                              read_block_s=d.read_block_s, name=f"lerobot/{r.type}")


register_driver("lerobot", LeRobotDriverConfig, _build_lerobot, in_run=False)  # built by rtctl deploy
