"""`SimArmDriver`: the SO-101 MuJoCo env behind the `Driver` protocol.

The simulation runs in lock-step with the tick: `write()` applies the command and advances the physics by
one control period, so the sim takes about 0.1–0.3 ms of the tick's budget and sim time equals tick time.
Episode boundaries are a sim-only notion: the runtime calls `reset_episode()` when `episode_done`.
A fault can be injected (`fail_read_at_tick`, `fail_write_at_tick`) to exercise the runtime's safe stop.
"""
from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from rtctl.drivers.base import DriverError, DriverSpec
from rtctl.sim.arm_env import JOINT_NAMES, ArmParams, SO101Env


class SimArmDriver:
    def __init__(self, task: str = "reach", rate_hz: float = 30.0, seed: int = 0, image: bool = False,
                 episode_s: Optional[float] = None, params: Optional[ArmParams] = None,
                 fail_read_at_tick: Optional[int] = None, fail_write_at_tick: Optional[int] = None) -> None:
        self.task, self.rate_hz, self.seed, self.image = task, rate_hz, seed, image
        self.episode_s, self.params = episode_s, params
        self.fail_read_at_tick, self.fail_write_at_tick = fail_read_at_tick, fail_write_at_tick
        self.env: Optional[SO101Env] = None
        self._obs: Optional[dict[str, Any]] = None
        self.last_info: dict[str, Any] = {}
        self.episode_done = False
        self.episode = -1
        self.ticks = 0
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

    def write(self, action: np.ndarray) -> np.ndarray:
        if self.env is None:
            raise DriverError("SimArmDriver: write() while not connected")
        if self.fail_write_at_tick is not None and self.ticks >= self.fail_write_at_tick:
            raise DriverError(f"SimArmDriver: injected write failure at tick {self.ticks}")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.spec.action_dim,) or not np.all(np.isfinite(a)):
            raise ValueError(f"SimArmDriver.write: expected {self.spec.action_dim} finite values, got {a!r}")
        applied = self.spec.clip(a)
        self._obs, _, terminated, truncated, self.last_info = self.env.step(applied)
        self.episode_done = bool(terminated or truncated)
        self.ticks += 1
        return applied

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env = None
