"""The 1/10-scale car plant: parameters and a vectorised kinematic-bicycle step in road coordinates.

State of one car, last axis of every state array (STATE_DIM = 5):
    S      arc length along the road's reference line (m); never wrapped, so it measures progress
    Y      lateral position of the rear axle, left of the road's right edge (m)
    PSI    heading relative to the road (rad)
    V      speed (m/s), 0 ≤ v ≤ speed_max (a car stops, it does not reverse)
    STEER  actual front-wheel angle (rad), rate-limited towards the command
Command: (accel m/s², steer rad). Steering is *absolute* (the wheel angle); a controller that works as if
the road were straight (the shield) adds the road's curvature with `steer_on_road`.

Road curvature (the oval): the reference line has curvature κ_r(s) (> 0 turning left) and sits at lateral
position y_ref, so a point at y moves along the reference line at ṡ = v cos ψ / (1 − κ_r (y − y_ref)) and
the heading relative to the road turns at ψ̇ = v κ − κ_r ṡ. On straight roads κ_r = 0 and the step is the
exact arc of the rear-axle bicycle (as `rtctl.safety.vehicle_model.bicycle_step`).
The numbers are the F1TENTH-like car of `rtctl.safety.VehicleParams` (this package may not import safety;
`tests/test_cars_env.py` checks that the two agree).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

S, Y, PSI, V, STEER = range(5)
STATE_DIM = 5


@dataclass(frozen=True)
class CarParams:
    length: float = 0.58
    width: float = 0.31
    wheelbase: float = 0.3302
    rear_overhang: float = 0.125  # rear axle to rear bumper
    accel_max: float = 3.0
    brake_max: float = 4.0  # positive deceleration
    speed_max: float = 3.0
    steer_max: float = 0.4189
    steer_rate_max: float = 3.2  # rad/s, the servo
    control_dt: float = 0.02  # low-level control (50 Hz)
    policy_dt: float = 0.1  # behaviour choice + shield (10 Hz)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"CarParams.{f.name} must be a finite number > 0, got {v!r}")
        if self.rear_overhang >= self.length:
            raise ValueError("CarParams.rear_overhang must be < length")
        n = self.policy_dt / self.control_dt
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"CarParams.policy_dt ({self.policy_dt}) must be a multiple of control_dt "
                             f"({self.control_dt})")

    @property
    def front_extent(self) -> float:
        return self.length - self.rear_overhang

    @property
    def substeps(self) -> int:
        return int(round(self.policy_dt / self.control_dt))

    @property
    def kappa_max(self) -> float:
        return math.tan(self.steer_max) / self.wheelbase


def steer_on_road(steer_rel, kappa_road, params: CarParams):
    """Wheel angle that follows the road curvature kappa_road (at the car's lateral position) plus the
    curvature a straight-road controller asked for with steer_rel; clipped to the steering lock."""
    k = np.tan(np.asarray(steer_rel, dtype=float)) / params.wheelbase + kappa_road
    return np.clip(np.arctan(k * params.wheelbase), -params.steer_max, params.steer_max)


def step(state, accel, steer, params: CarParams, dt: float | None = None, kappa_ref=0.0, y_ref=0.0):
    """Advance cars by dt (default control_dt) under a constant (accel, steer command).

    state (..., 5); accel, steer broadcast to state[..., 0]; kappa_ref = curvature of the road's reference
    line at each car (0 on straight roads), y_ref its lateral position. Returns the new state array."""
    dt = params.control_dt if dt is None else dt
    x = np.asarray(state, dtype=float)
    s, y, psi, v, d0 = (x[..., i] for i in range(STATE_DIM))
    cmd = np.clip(np.asarray(steer, dtype=float), -params.steer_max, params.steer_max)
    rate = params.steer_rate_max * dt
    d1 = d0 + np.clip(cmd - d0, -rate, rate)
    a = np.clip(np.asarray(accel, dtype=float), -params.brake_max, params.accel_max)
    # time until the speed hits 0 or speed_max, then constant speed (as the shield's one-tick model)
    t_stop = np.where(a < 0, np.minimum(dt, v / np.maximum(-a, 1e-12)), dt)
    t_cap = np.where(a > 0, np.minimum(dt, (params.speed_max - v) / np.maximum(a, 1e-12)), dt)
    t_acc = np.clip(np.minimum(t_stop, t_cap), 0.0, dt)
    v1 = np.clip(v + a * t_acc, 0.0, params.speed_max)
    dist = np.maximum(v * t_acc + 0.5 * a * t_acc ** 2 + np.where(a > 0, v1 * (dt - t_acc), 0.0), 0.0)
    kappa = np.tan(0.5 * (d0 + d1)) / params.wheelbase  # the servo moves during the tick: mean angle
    turn = kappa * dist
    chord = dist * np.sinc(turn / (2.0 * np.pi))  # exact arc chord: 2 sin(turn/2)/κ
    mid = psi + 0.5 * turn
    dy = chord * np.sin(mid)
    ds = chord * np.cos(mid) / (1.0 - kappa_ref * (y + 0.5 * dy - y_ref))
    return np.stack((s + ds, y + dy, psi + turn - kappa_ref * ds, v1, d1), axis=-1)


def lane_keep_steer(y, psi, v, y_target, params: CarParams):
    """Pure pursuit (road-relative) on a lateral target, look-ahead max(0.6 m, 0.8 s): scripted cars."""
    look = np.maximum(0.6, 0.8 * np.asarray(v, dtype=float))
    alpha = np.arctan2(np.asarray(y_target, dtype=float) - y, look) - psi
    kappa = np.clip(2.0 * np.sin(alpha) / look, -params.kappa_max, params.kappa_max)
    return np.arctan(kappa * params.wheelbase)


def world_corners(x, y, yaw, params: CarParams):
    """Body rectangle corners in the world (..., 4, 2) from the rear-axle pose."""
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    lo = np.array([params.front_extent, params.front_extent, -params.rear_overhang, -params.rear_overhang])
    la = 0.5 * params.width * np.array([1.0, -1.0, -1.0, 1.0])
    px = x[..., None] + lo * c - la * s
    py = y[..., None] + lo * s + la * c
    return np.stack((px, py), axis=-1)


def rectangles_overlap(ca, cb):
    """Separating-axis test of two sets of convex quadrilaterals (..., 4, 2) → bool (...)."""
    sep = np.zeros(ca.shape[:-2], dtype=bool)
    for corners in (ca, cb):
        for e in (1, 2):  # two edge directions per rectangle
            axis = corners[..., e, :] - corners[..., e - 1, :]
            n = np.stack((-axis[..., 1], axis[..., 0]), axis=-1)[..., None, :]
            pa = np.sum(ca * n, axis=-1)
            pb = np.sum(cb * n, axis=-1)
            sep |= (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~sep
