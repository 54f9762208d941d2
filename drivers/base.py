"""The `Driver` protocol: one interface for simulated and real robots.

Shaped after LeRobot's `Robot` (`connect()`, `get_observation() -> dict`, `send_action(dict) -> dict` that
returns what was actually sent, `disconnect()`, `observation_features`/`action_features`) with three changes
that the control tick needs:

* actions and observations are numpy arrays in SI units (radians, metres), named by `DriverSpec`, not
  per-motor dicts in calibrated units; a LeRobot-backed driver maps units through the robot's calibration;
* `write()` returns the command actually applied (after clipping), which the scheduler uses to roll the
  state forward — the same contract as LeRobot's `send_action` return value;
* `read()` and `write()` must not block on I/O. A hardware driver owns one I/O thread that talks to the
  bus and exchanges values with the tick through a latest-value slot (`LatestValue`): `read()` returns the
  newest observation the thread has, `write()` posts the command the thread sends next. A driver whose
  thread has not heard from the device within its own timeout raises `DriverError` from `read()`.

From the lerobot 0.4.4 spike: `Robot`'s abstract members are action_features, observation_features,
calibrate, configure, connect, disconnect, get_observation, is_calibrated, is_connected and
`send_action(dict) -> dict`; `SO101FollowerConfig` has port, disable_torque_on_disconnect,
max_relative_target, cameras, use_degrees, id, calibration_dir; the Feetech bus needs `scservo_sdk`
(lerobot's `feetech` extra). Motor keys are ``"<motor>.pos"`` in calibrated units (−100..100, gripper
0..100; degrees with use_degrees), which the LeRobot driver maps to radians through the calibration.

Observation keys used by the arm: ``state`` (joint positions, rad, arm joints then gripper), ``target``
(task input, the stand-in for vision: target xyz in metres + an "active" flag), optionally ``image``
(H×W×3 uint8), and ``t_ns`` (time.monotonic_ns() of the measurement).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Generic, Mapping, Optional, Protocol, TypeVar, runtime_checkable

import numpy as np


class DriverError(RuntimeError):
    """A driver lost its device (read/write failed, timed out, port closed). The runtime stops safely."""


class EStopped(DriverError):
    """The operator's e-stop stopped the device (torque off / brakes): a stop, not a fault (CLI exit 5)."""


@dataclass(frozen=True)
class DriverSpec:
    """What a driver reads and accepts. Limits are in the driver's units (SI)."""

    name: str
    action_names: tuple[str, ...]
    action_low: np.ndarray
    action_high: np.ndarray
    observation_shapes: Mapping[str, tuple[int, ...]]
    units: str = "rad"
    rate_hz: float = 30.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def clip(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, self.action_low, self.action_high)


@runtime_checkable
class Driver(Protocol):
    spec: DriverSpec

    def connect(self) -> None: ...

    def read(self) -> dict[str, Any]:
        """Newest observation; never waits on a bus. Raises DriverError if the device is gone."""

    def write(self, action: np.ndarray, stamp_ns: Optional[int] = None) -> np.ndarray:
        """Post ``action``; return the command actually applied (clipped to the limits). ``stamp_ns`` is the
        start (time.monotonic_ns()) of the control tick the command belongs to, None = the time of this call;
        a driver with an I/O thread measures each command's age at the bus write from it (``bus_stats()``)."""

    def disconnect(self) -> None: ...


@runtime_checkable
class EpisodicDriver(Driver, Protocol):
    """A simulated driver that runs episodes (the sim arm): the control loop ends an episode when
    ``episode_done``, scores it from ``last_info`` (``success``, and for pop-up targets ``target_events``:
    appear/end step, position, hit; ``gripper_pos``/``gripper_vel`` for the motion cross-check) and the
    ``task`` name, then calls ``reset_episode()``. A hardware driver has none of these and runs one long
    episode."""

    task: str
    episode_done: bool
    last_info: Mapping[str, Any]

    def reset_episode(self) -> Any: ...


T = TypeVar("T")


class LatestValue(Generic[T]):
    """Single-slot hand-off between an I/O thread and the tick: writers overwrite, readers never wait."""

    def __init__(self, value: T | None = None) -> None:
        self._lock = threading.Lock()
        self._value = value
        self._version = 0

    def put(self, value: T) -> None:
        with self._lock:
            self._value = value
            self._version += 1

    def get(self) -> tuple[T | None, int]:
        with self._lock:
            return self._value, self._version
