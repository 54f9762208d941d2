"""The shield composed with the car sim: action masks, shielded behaviour commands, intervention signal.

`ShieldedController` is the `controller` a `CarsVecEnv` takes: every behaviour of every agent goes
through `rtctl.safety.action_mask` (one vectorised `VehicleShield.filter_batch` call), which gives the
mask, the shielded command of each behaviour and the size of the shield's change (the intervention the
reward penalises). `UnshieldedController` is the `no_shield` ablation: the behaviours' reference commands
(gap keeping included) unchanged, every behaviour allowed whose target lane exists.

`behaviour_command(shield, state, behaviour, neighbours, crossing)` is the same mapping for one car (what a
trial's car process calls at its control rate): behaviour index → shielded (accel m/s², steer rad), both
relative to a straight road (add the road curvature with `rtctl.sim.vehicles.dynamics.steer_on_road`).
"""
from __future__ import annotations

import numpy as np

from rtctl.safety import DEFAULT_BEHAVIOURS, Road, VehicleParams, VehicleShield, action_mask, behaviour_references
from rtctl.safety.vehicle import VehicleShieldConfig
from rtctl.sim.vehicles.dynamics import CarParams
from rtctl.sim.vehicles.tracks import Track

BEHAVIOURS = DEFAULT_BEHAVIOURS
BEHAVIOUR_NAMES = tuple(b.name for b in BEHAVIOURS)


def vehicle_params(p: CarParams) -> VehicleParams:
    """The shield's car from the sim's car (the same numbers, two dataclasses: sim may not import safety)."""
    return VehicleParams(length=p.length, width=p.width, wheelbase=p.wheelbase, rear_overhang=p.rear_overhang,
                         accel_max=p.accel_max, brake_max=p.brake_max, speed_max=p.speed_max,
                         steer_max=p.steer_max, steer_rate_max=p.steer_rate_max)


def make_shield(track: Track, params: CarParams, dt: float | None = None) -> VehicleShield:
    """A shield for one car on `track` (one lane per path at the intersection) at the policy rate."""
    cfg = VehicleShieldConfig(dt=params.policy_dt if dt is None else dt)
    return VehicleShield(vehicle_params(params), Road(track.n_lanes, track.lane_width), cfg)


class _Behaviours:
    lane_offsets = np.array([b.lane_offset for b in BEHAVIOURS])
    stop_index = next(i for i, b in enumerate(BEHAVIOURS) if b.stop)
    names = BEHAVIOUR_NAMES


class BestEffortRear:
    """The shield, except that a behaviour whose QP needed only its best-effort rows dropped (rows towards
    a following car, which the follower's own shield keeps) counts as solved, not relaxed.

    `action_mask` allows only status "ok"; with V2V ages, the rear rows of a stopped car with a stopped
    follower close behind are infeasible whatever the car does (the follower is advanced by the message
    age), so every behaviour but the emergency stop was masked and the pair never moved again — measured:
    a lane-keeping heuristic completed 15 % of highway-medium routes that way. Every hard row (cars ahead,
    lane edges, crossing traffic) still holds for the returned command."""

    def __init__(self, shield: VehicleShield) -> None:
        self._shield = shield

    def __getattr__(self, name):
        return getattr(self._shield, name)

    def filter_batch(self, *args, **kw):
        u, info = self._shield.filter_batch(*args, **kw)
        info.status = np.where((info.status == 1) & (info.slack == 0.0), 0, info.status).astype(info.status.dtype)
        return u, info


class ShieldedController(_Behaviours):
    def __init__(self, shield: VehicleShield, target_speed: float = 2.0) -> None:
        self.shield, self.target_speed = shield, target_speed
        self._masking = BestEffortRear(shield)

    def __call__(self, ego, nb, cx, lanes=None):
        return action_mask(self._masking, ego, nb, cx, BEHAVIOURS, self.target_speed, lanes)


class UnshieldedController(_Behaviours):
    def __init__(self, shield: VehicleShield, target_speed: float = 2.0) -> None:
        self.shield, self.target_speed = shield, target_speed  # the shield only lends its road and car

    def __call__(self, ego, nb, cx, lanes=None):
        u, _, exists = behaviour_references(self.shield, ego, BEHAVIOURS, self.target_speed, neighbours=nb,
                                            lanes=lanes)
        return exists | (self.lane_offsets == 0)[None, :], u, np.zeros(exists.shape)


def behaviour_command(shield: VehicleShield, state, behaviour: int, neighbours=None, crossing=None,
                      target_speed: float = 2.0, lane: int | None = None):
    """One car: (s, y, ψ, v) and the chosen behaviour index → ((accel, steer), allowed, intervention);
    `lane`: the lane it is driving to (see `behaviour_references`)."""
    if not (isinstance(behaviour, (int, np.integer)) and 0 <= behaviour < len(BEHAVIOURS)):
        raise ValueError(f"behaviour must be an index in 0..{len(BEHAVIOURS) - 1}, got {behaviour!r}")
    x = np.asarray(state, dtype=float).reshape(1, 4)
    add = (lambda t: None if t is None else np.asarray(t, dtype=float)[None])
    mask, u, interv = action_mask(BestEffortRear(shield), x, add(neighbours), add(crossing), BEHAVIOURS,
                                  target_speed, None if lane is None else [lane])
    return u[0, behaviour], bool(mask[0, behaviour]), float(interv[0, behaviour])
