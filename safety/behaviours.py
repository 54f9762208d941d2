"""Discrete driving behaviours, their reference commands, and the shield's action mask over them.

A MARL policy picks a behaviour (research note §3: emergency stop, keep lane, change left/right, accel
bins); each behaviour gives a reference (a, δ) — a fixed acceleration or speed tracking, and pure pursuit
on its target lane's centre. `action_mask` runs every behaviour of every agent through
`VehicleShield.filter_batch` in one vectorised call: a behaviour is allowed when its QP is feasible
without relaxation and, for a lane change, the target lane is admitted (emergency stop always is), and the size of the shield's change to its reference is
the intervention signal for a reward penalty.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vehicle_model import pursuit_kappa


@dataclass(frozen=True)
class Behaviour:
    name: str
    lane_offset: int = 0  # +1 = one lane to the left (higher y), −1 = right
    accel: float | None = None  # fixed acceleration; None = track the target speed
    stop: bool = False  # emergency stop: full braking in lane, always allowed


DEFAULT_BEHAVIOURS = (
    Behaviour("emergency_stop", stop=True),
    Behaviour("keep_lane"),
    Behaviour("change_left", lane_offset=1),
    Behaviour("change_right", lane_offset=-1),
    *(Behaviour(f"accel_{a:+.1f}", accel=a) for a in (-2.0, -1.0, 0.0, 1.0, 2.0)),
)


# Gap keeping of the speed-tracking behaviours (IDM's interaction term, Treiber et al. 2000): a lane
# keeper that drove up to the shield's last-moment stop sat ~0.25 m behind a parked car, too close to
# steer out with the shield's heading bound, so it stayed there for good (~70 % of routes of a
# lane-changing heuristic on highway-medium ended that way). From a standstill the shielded lane change
# clears a parked car from 1.8 m back and not from 1.5 m (measured), hence the 2 m standstill gap.
STANDSTILL_GAP_M, HEADWAY_S, COMFORT_ACCEL, COMFORT_BRAKE = 2.0, 0.5, 1.5, 2.0


def lead_gap(shield, states, lanes, neighbours):
    """Bumper gap to, and speed of, the nearest present neighbour ahead whose rear axle is in `lanes`
    (B, K) → gap (B, K) (inf when none), speed (B, K). neighbours: (B, N, cols) or one shared (N, cols)."""
    from .vehicle_model import NB_EPOS, NB_PRESENT, NB_S, NB_V, NB_Y

    X = np.asarray(states, dtype=float)
    nb = np.asarray(neighbours, dtype=float)
    if nb.ndim == 2:
        nb = np.broadcast_to(nb, (X.shape[0],) + nb.shape)
    p = shield.params
    ds = nb[..., NB_S] - X[:, None, 0]  # (B, N)
    gap = ds - p.front_extent - p.rear_overhang - nb[..., NB_EPOS]
    ahead = (nb[..., NB_PRESENT] > 0) & (ds > 0)
    n_lane = shield.road.lane_of(nb[..., NB_Y])  # (B, N)
    inl = ahead[:, None, :] & (n_lane[:, None, :] == lanes[..., None])  # (B, K, N)
    g = np.where(inl, gap[:, None, :], np.inf)
    j = np.argmin(g, axis=-1)
    gmin = np.take_along_axis(g, j[..., None], -1)[..., 0]
    vl = np.take_along_axis(np.broadcast_to(nb[:, None, :, NB_V], g.shape), j[..., None], -1)[..., 0]
    return gmin, vl


def follow_accel(v, gap, v_lead):
    """IDM's interaction term: ≤ 0 closer than the desired gap s* = s0 + v·T + v·Δv / (2√(a·b))."""
    want = STANDSTILL_GAP_M + v * HEADWAY_S + v * (v - v_lead) / (2.0 * np.sqrt(COMFORT_ACCEL * COMFORT_BRAKE))
    return COMFORT_ACCEL * (1.0 - (np.maximum(want, 0.0) / np.maximum(gap, 1e-3)) ** 2)


def behaviour_references(shield, states, behaviours=DEFAULT_BEHAVIOURS, target_speed=2.0, speed_gain=1.5,
                         neighbours=None, lanes=None):
    """states (B, 4) → u_ref (B, K, 2) as (a, δ), target lane (B, K), and whether that lane exists (B, K).
    With `neighbours`, every behaviour but the emergency stop keeps at least the gap `follow_accel` asks
    for to the car ahead in its target lane (the shield alone keeps the one in the lane being left): an
    acceleration bin is "up to" its value, a brake bin still brakes as hard as it says.
    `lanes` (B,): the lane each car is driving to (a lane change in progress is latched, as in highway-env:
    keep lane then means "carry on into it"); default: the lane its rear axle is in."""
    p, road = shield.params, shield.road
    X = np.asarray(states, dtype=float)
    y, psi, v = X[:, None, 1], X[:, None, 2], X[:, None, 3]
    lane = (road.lane_of(X[:, 1]) if lanes is None else np.asarray(lanes, dtype=int).reshape(-1))[:, None]
    offset = np.array([b.lane_offset for b in behaviours])[None, :]
    target = lane + offset
    exists = (target >= 0) & (target < road.n_lanes)
    target = np.clip(target, 0, road.n_lanes - 1)
    fixed = np.array([np.nan if b.accel is None else b.accel for b in behaviours])[None, :]
    a = np.where(np.isnan(fixed), speed_gain * (target_speed - v), fixed)
    if neighbours is not None and np.size(neighbours):
        gap, v_lead = lead_gap(shield, X, target, neighbours)
        a = np.minimum(a, np.where(np.isfinite(gap), follow_accel(v, gap, v_lead), np.inf))
    a = np.clip(a, -p.brake_max, p.accel_max)
    kappa = pursuit_kappa(y, psi, v, road.centre(target), shield.k.kappa_max)
    stop = np.array([b.stop for b in behaviours])[None, :]
    fa, fd = shield.fallback_command(y, psi, v)
    a = np.where(stop, fa, a)
    delta = np.where(stop, fd, p.kappa_to_steer(kappa))
    return np.stack(np.broadcast_arrays(a, delta), axis=-1), target, exists


def action_mask(shield, states, neighbours=None, crossing=None, behaviours=DEFAULT_BEHAVIOURS,
                target_speed=2.0, lanes=None):
    """For B agents (states (B, 4); neighbours (B, N, cols) or one shared (N, cols) table; crossing alike)
    returns mask (B, K) bool, the shielded command of every behaviour (B, K, 2), and the intervention
    (B, K): the weighted size of the change, √(w_a Δa² + w_κ Δκ²) (1.0 ≈ a full-range change)."""
    X = np.asarray(states, dtype=float)
    B, K = X.shape[0], len(behaviours)
    u_ref, target, exists = behaviour_references(shield, X, behaviours, target_speed, neighbours=neighbours,
                                                  lanes=lanes)
    rep = (lambda t: None if t is None else (np.repeat(np.asarray(t, dtype=float), K, axis=0)
                                             if np.ndim(t) == 3 else t))
    u, info = shield.filter_batch(np.repeat(X, K, axis=0), u_ref.reshape(B * K, 2), rep(neighbours),
                                  rep(crossing), target.reshape(-1))
    u = u.reshape(B, K, 2)
    stop = np.array([b.stop for b in behaviours])[None, :]
    # a refused lane change keeps the lane: not allowed (nor is carrying on into a latched lane the shield
    # now refuses; what is left is turning back or stopping)
    changes = target != shield.road.lane_of(X[:, 1])[:, None]
    admitted = info.target_ok.reshape(B, K) | ~changes
    mask = ((info.status.reshape(B, K) == 0) & exists & admitted) | stop
    wb = shield.params.wheelbase
    dk = (np.tan(u[..., 1]) - np.tan(u_ref[..., 1])) / wb
    w = shield.weights
    intervention = np.sqrt(w[0] * (u[..., 0] - u_ref[..., 0]) ** 2 + w[1] * dk ** 2)
    return mask, u, intervention
