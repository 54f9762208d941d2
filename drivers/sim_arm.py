"""`SimArmDriver`: the SO-101 MuJoCo env behind the `Driver` protocol.

The simulation runs in lock-step with the tick: `write()` applies the command and advances the physics by
one control period, so the sim takes about 0.1–0.3 ms of the tick's budget and sim time equals tick time.
Episode boundaries are a sim-only notion: the runtime calls `reset_episode()` when `episode_done`.
A fault can be injected (`fail_read_at_tick`, `fail_write_at_tick`) to exercise the runtime's safe stop,
and a disturbance (`pushes`): a joint pushed by an offset from where it is and held there for a while, as a
hand would, then released (the servo tracks its goal again). Push times count in control ticks from
connect(), across episodes; each start/end is reported through ``on_event`` and kept in ``push_log``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from rtctl.drivers.base import DriverError, DriverSpec
from rtctl.sim.arm_env import JOINT_NAMES, ArmParams, SO101Env


@dataclass(frozen=True)
class Push:
    joint: int  # index in JOINT_NAMES
    offset_rad: float
    start_s: float  # since connect()
    duration_s: float


class SimArmDriver:
    def __init__(self, task: str = "reach", rate_hz: float = 30.0, seed: int = 0, image: bool = False,
                 episode_s: Optional[float] = None, params: Optional[ArmParams] = None,
                 fail_read_at_tick: Optional[int] = None, fail_write_at_tick: Optional[int] = None,
                 pushes: Sequence[Push] = (), on_event: Optional[Callable[..., None]] = None) -> None:
        self.task, self.rate_hz, self.seed, self.image = task, rate_hz, seed, image
        self.episode_s, self.params = episode_s, params
        self.fail_read_at_tick, self.fail_write_at_tick = fail_read_at_tick, fail_write_at_tick
        self.env: Optional[SO101Env] = None
        self._obs: Optional[dict[str, Any]] = None
        self.last_info: dict[str, Any] = {}
        self.episode_done = False
        self.episode = -1
        self.ticks = 0
        self.pushes = sorted(pushes, key=lambda p: p.start_s)
        self.push_log: list[dict[str, Any]] = []
        self._pushing: Optional[tuple[Push, int]] = None  # (push, end tick)
        self.on_event = on_event or (lambda kind, **fields: None)
        env = SO101Env(task=task, control_hz=rate_hz, episode_s=episode_s, image=image, params=params)
        shapes = {k: tuple(v.shape) for k, v in env.observation_space.spaces.items()}
        self.spec = DriverSpec(
            name=f"sim_arm/{task}", action_names=tuple(JOINT_NAMES),
            action_low=env.action_space.low.copy(), action_high=env.action_space.high.copy(),
            observation_shapes=shapes, units="rad", rate_hz=rate_hz,
        )
        self._env_proto = env

    def connect(self) -> None:
        self.env = self._env_proto
        self.reset_episode()

    def reset_episode(self, seed: Optional[int] = None) -> dict[str, Any]:
        if self.env is None:
            raise DriverError("SimArmDriver: reset_episode() before connect()")
        self.episode += 1
        if self._pushing is not None:  # reset() releases every held joint
            self.push_log[-1]["end_tick"] = self.ticks
            self._pushing = None
        obs, info = self.env.reset(seed=self.seed + self.episode if seed is None else seed)
        self._obs, self.last_info = obs, info
        self.episode_done = False
        return self.read()

    def read(self) -> dict[str, Any]:
        if self.env is None or self._obs is None:
            raise DriverError("SimArmDriver: read() while not connected")
        if self.fail_read_at_tick is not None and self.ticks >= self.fail_read_at_tick:
            raise DriverError(f"SimArmDriver: injected read failure at tick {self.ticks}")
        return {**self._obs, "t_ns": time.monotonic_ns()}

    def write(self, action: np.ndarray, stamp_ns: Optional[int] = None) -> np.ndarray:
        if self.env is None:
            raise DriverError("SimArmDriver: write() while not connected")
        if self.fail_write_at_tick is not None and self.ticks >= self.fail_write_at_tick:
            raise DriverError(f"SimArmDriver: injected write failure at tick {self.ticks}")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.spec.action_dim,) or not np.all(np.isfinite(a)):
            raise ValueError(f"SimArmDriver.write: expected {self.spec.action_dim} finite values, got {a!r}")
        applied = self.spec.clip(a)
        self._apply_pushes()
        self._obs, _, terminated, truncated, self.last_info = self.env.step(applied)
        self.episode_done = bool(terminated or truncated)
        self.ticks += 1
        return applied

    def _apply_pushes(self) -> None:
        """Start/end pushes due at this tick (before the physics step, so the next read sees them)."""
        if self._pushing is not None and self.ticks >= self._pushing[1]:
            push = self._pushing[0]
            self.env.hold_joint(push.joint, None)
            self._pushing = None
            self.push_log[-1]["end_tick"] = self.ticks
            self.on_event("push_end", joint=JOINT_NAMES[push.joint], tick=self.ticks, t_ns=time.monotonic_ns())
        if self._pushing is None and self.pushes and self.ticks >= round(self.pushes[0].start_s * self.rate_hz):
            push = self.pushes.pop(0)
            at = self.env.joint_position(push.joint) + push.offset_rad
            self.env.hold_joint(push.joint, at)
            self._pushing = (push, self.ticks + max(1, round(push.duration_s * self.rate_hz)))
            self.push_log.append({"joint": push.joint, "start_tick": self.ticks, "end_tick": None, "position": at,
                                  "offset_rad": push.offset_rad, "episode": self.episode})
            self.on_event("push_start", joint=JOINT_NAMES[push.joint], offset_rad=push.offset_rad, tick=self.ticks,
                          t_ns=time.monotonic_ns())

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env = None
