"""The 1/10-scale car the vehicle shield protects: parameters, road, neighbour table, and the kinematic model.

`VehicleParams` is the one place the car's numbers live; a vehicle simulator should take the same dataclass
(the single-track dynamic fields are F1TENTH gym's defaults, from shared/research/safe_marl_cbf.md §4).

Kinematic bicycle referenced at the rear axle, in road coordinates (s along the road, y to the left of the
right road edge, ψ heading relative to the road, v ≥ 0 speed):
    ṡ = v cos ψ,  ẏ = v sin ψ,  ψ̇ = v κ,  v̇ = a,     κ = tan(δ) / wheelbase
The command is (a, δ); the shield works in curvature κ, an exact monotone reparametrisation of δ that
makes the model affine in the input. `bicycle_step` integrates it exactly for a tick of constant (a, κ).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class VehicleParams:
    # geometry (m): F1TENTH chassis; rear_overhang = rear axle to rear bumper
    length: float = 0.58
    width: float = 0.31
    wheelbase: float = 0.3302  # lf + lr
    rear_overhang: float = 0.125
    # limits the shield assumes (reliable on a lab floor, below the gym's theoretical a_max 9.51 m/s²)
    accel_max: float = 3.0
    brake_max: float = 4.0  # positive: the deceleration the car can always produce
    speed_max: float = 3.0
    steer_max: float = 0.4189
    steer_rate_max: float = 3.2
    # single-track dynamic model (F1TENTH gym defaults) for a simulator that wants more than kinematics
    mu: float = 1.0489
    c_sf: float = 4.718
    c_sr: float = 5.4562
    lf: float = 0.15875
    lr: float = 0.17145
    h_cg: float = 0.074
    mass: float = 3.74
    inertia_z: float = 0.04712
    v_switch: float = 7.319

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"VehicleParams.{f.name} must be a finite number > 0, got {v!r}")
        if self.rear_overhang >= self.length:
            raise ValueError("VehicleParams.rear_overhang must be < length")
        if self.steer_max >= math.pi / 2:
            raise ValueError("VehicleParams.steer_max must be < π/2 rad")

    @property
    def front_extent(self) -> float:
        """Rear axle to front bumper."""
        return self.length - self.rear_overhang

    @property
    def kappa_max(self) -> float:
        return math.tan(self.steer_max) / self.wheelbase

    def steer_to_kappa(self, steer):
        return np.tan(steer) / self.wheelbase

    def kappa_to_steer(self, kappa):
        return np.arctan(kappa * self.wheelbase)


@dataclass(frozen=True)
class Road:
    """Straight multi-lane road; lane 0 is the rightmost, y = 0 its right edge, lanes of equal width."""

    n_lanes: int = 3
    lane_width: float = 0.6

    def __post_init__(self) -> None:
        if not (isinstance(self.n_lanes, int) and 1 <= self.n_lanes <= 16):
            raise ValueError(f"Road.n_lanes must be an int in 1..16, got {self.n_lanes!r}")
        if not (math.isfinite(self.lane_width) and self.lane_width > 0):
            raise ValueError(f"Road.lane_width must be > 0, got {self.lane_width!r}")

    def lane_of(self, y):
        return np.clip(np.floor(np.asarray(y) / self.lane_width), 0, self.n_lanes - 1).astype(int)

    def centre(self, lane):
        return (np.asarray(lane) + 0.5) * self.lane_width


# Columns of the neighbour table (one row per neighbour, as known from V2V or perception): rear-axle
# position s, y, speed, acceleration, cooperative (runs this shield) 0/1, announced target lane (absolute
# index; −1 = none), message age (s), position / speed error bounds, present 0/1, heading to the road.
NB_S, NB_Y, NB_V, NB_A, NB_COOP, NB_LANE_TO, NB_AGE, NB_EPOS, NB_EVEL, NB_PRESENT, NB_PSI = range(11)
NB_COLS = 11
# Columns of the crossing-traffic table (intersection). D = distance of the crossing car's front bumper to
# the conflict zone along its own path; ZONE_S = ego-path coordinate of the zone entry; ZONE_LE / ZONE_LC =
# zone length along the ego path / along the crossing path; PRIO = 1 if ego must yield regardless.
CX_D, CX_V, CX_ZONE_S, CX_ZONE_LE, CX_ZONE_LC, CX_LEN, CX_PRIO, CX_AGE, CX_EPOS, CX_PRESENT = range(10)
CX_COLS = 10


_NB_FIELDS = {"s": None, "y": None, "v": None, "a": 0.0, "coop": 0.0, "lane_to": -1.0, "age": 0.0, "epos": 0.0,
              "evel": 0.0, "present": 1.0, "psi": 0.0}  # column order; None = required
_CX_FIELDS = {"d": None, "v": None, "zone_s": None, "zone_le": None, "zone_lc": None, "length": 0.58, "prio": 0.0,
              "age": 0.0, "epos": 0.0, "present": 1.0}


def _table(rows, spec, what):
    out = np.zeros((len(rows), len(spec)))
    for i, r in enumerate(rows):
        unknown = set(r) - set(spec)
        missing = [k for k, default in spec.items() if default is None and k not in r]
        if unknown or missing:
            raise ValueError(f"{what} {i}: unknown keys {sorted(unknown)}, missing keys {missing}; "
                             f"allowed: {list(spec)}")
        out[i] = [r.get(k, default) for k, default in spec.items()]
    return out


def neighbour_table(rows: list[dict]) -> np.ndarray:
    """The neighbour table from dicts with keys s, y, v and optional a, coop, lane_to, age, epos, evel, psi."""
    return _table(rows, _NB_FIELDS, "neighbour")


def crossing_table(rows: list[dict]) -> np.ndarray:
    """Crossing cars from dicts with keys d, v, zone_s, zone_le, zone_lc and optional length, prio, age, epos."""
    return _table(rows, _CX_FIELDS, "crossing car")


def bicycle_step(state, accel, kappa, dt, params: VehicleParams):
    """Exact integration of the rear-axle kinematic bicycle over dt with constant (a, κ).

    state (..., 4) = (s, y, ψ, v). The speed stays in [0, speed_max] (a car stops, it does not reverse);
    position follows the arc of curvature κ over the distance actually travelled."""
    state = np.asarray(state, dtype=float)
    s, y, psi, v = (state[..., i] for i in range(4))
    a = np.asarray(accel, dtype=float)
    k = np.asarray(kappa, dtype=float)
    # time until the speed hits 0 or speed_max, then constant speed
    t_stop = np.where(a < 0, np.minimum(dt, v / np.maximum(-a, 1e-12)), dt)
    t_cap = np.where(a > 0, np.minimum(dt, (params.speed_max - v) / np.maximum(a, 1e-12)), dt)
    t_acc = np.clip(np.minimum(t_stop, t_cap), 0.0, dt)
    v_end = np.clip(v + a * t_acc, 0.0, params.speed_max)
    dist = v * t_acc + 0.5 * a * t_acc ** 2 + np.where(a > 0, v_end * (dt - t_acc), 0.0)
    dist = np.maximum(dist, 0.0)
    psi_end = psi + k * dist
    small = np.abs(k) < 1e-9
    k_safe = np.where(small, 1.0, k)
    ds = np.where(small, dist * np.cos(psi), (np.sin(psi_end) - np.sin(psi)) / k_safe)
    dy = np.where(small, dist * np.sin(psi), (np.cos(psi) - np.cos(psi_end)) / k_safe)
    return np.stack((s + ds, y + dy, psi_end, v_end), axis=-1)


def footprint_extent(state, params: VehicleParams):
    """Axis-aligned extent (s_min, s_max, y_min, y_max) of the rotated body rectangle (contains it)."""
    state = np.asarray(state, dtype=float)
    s, y, psi = state[..., 0], state[..., 1], state[..., 2]
    c, sn = np.cos(psi), np.sin(psi)
    f, r, hw = params.front_extent, params.rear_overhang, 0.5 * params.width
    xs = [s + lo * c - side * sn for lo in (f, -r) for side in (hw, -hw)]
    ys = [y + lo * sn + side * c for lo in (f, -r) for side in (hw, -hw)]
    return np.min(xs, axis=0), np.max(xs, axis=0), np.min(ys, axis=0), np.max(ys, axis=0)


def pursuit_kappa(y, psi, v, y_target, kappa_max):
    """Pure pursuit towards the point one look-ahead (≥ 0.6 m, 0.8 s of travel) down the target lane
    centre; curvature clipped to ±kappa_max. Used for lane-keeping references and the fallback."""
    look = np.maximum(0.6, 0.8 * np.asarray(v, dtype=float))
    alpha = np.arctan2(np.asarray(y_target, dtype=float) - y, look) - psi
    return np.clip(2.0 * np.sin(alpha) / look, -kappa_max, kappa_max)
