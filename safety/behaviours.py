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


def behaviour_references(shield, states, behaviours=DEFAULT_BEHAVIOURS, target_speed=2.0, speed_gain=1.5):
    """states (B, 4) → u_ref (B, K, 2) as (a, δ), target lane (B, K), and whether that lane exists (B, K)."""
    p, road = shield.params, shield.road
    X = np.asarray(states, dtype=float)
    y, psi, v = X[:, None, 1], X[:, None, 2], X[:, None, 3]
    lane = road.lane_of(X[:, 1])[:, None]
    offset = np.array([b.lane_offset for b in behaviours])[None, :]
    target = lane + offset
    exists = (target >= 0) & (target < road.n_lanes)
    target = np.clip(target, 0, road.n_lanes - 1)
    fixed = np.array([np.nan if b.accel is None else b.accel for b in behaviours])[None, :]
    a = np.where(np.isnan(fixed), np.clip(speed_gain * (target_speed - v), -p.brake_max, p.accel_max), fixed)
    kappa = pursuit_kappa(y, psi, v, road.centre(target), shield.k.kappa_max)
    stop = np.array([b.stop for b in behaviours])[None, :]
    fa, fd = shield.fallback_command(y, psi, v)
    a = np.where(stop, fa, a)
    delta = np.where(stop, fd, p.kappa_to_steer(kappa))
    return np.stack(np.broadcast_arrays(a, delta), axis=-1), target, exists


def action_mask(shield, states, neighbours=None, crossing=None, behaviours=DEFAULT_BEHAVIOURS,
                target_speed=2.0):
    """For B agents (states (B, 4); neighbours (B, N, cols) or one shared (N, cols) table; crossing alike)
    returns mask (B, K) bool, the shielded command of every behaviour (B, K, 2), and the intervention
    (B, K): the weighted size of the change, √(w_a Δa² + w_κ Δκ²) (1.0 ≈ a full-range change)."""
    X = np.asarray(states, dtype=float)
    B, K = X.shape[0], len(behaviours)
    u_ref, target, exists = behaviour_references(shield, X, behaviours, target_speed)
    rep = (lambda t: None if t is None else (np.repeat(np.asarray(t, dtype=float), K, axis=0)
                                             if np.ndim(t) == 3 else t))
    u, info = shield.filter_batch(np.repeat(X, K, axis=0), u_ref.reshape(B * K, 2), rep(neighbours),
                                  rep(crossing), target.reshape(-1))
    u = u.reshape(B, K, 2)
    stop = np.array([b.stop for b in behaviours])[None, :]
    changes = np.array([b.lane_offset != 0 for b in behaviours])[None, :]
    admitted = info.target_ok.reshape(B, K) | ~changes  # a refused lane change keeps the lane: not allowed
    mask = ((info.status.reshape(B, K) == 0) & exists & admitted) | stop
    wb = shield.params.wheelbase
    dk = (np.tan(u[..., 1]) - np.tan(u_ref[..., 1])) / wb
    w = shield.weights
    intervention = np.sqrt(w[0] * (u[..., 0] - u_ref[..., 0]) ** 2 + w[1] * dk ** 2)
    return mask, u, intervention
