"""Scripted human-driven cars: IDM car following in their lane, one hard-brake event, red-light running.

`human_commands(scn, cars, alive, t_s)` gives the (accel, absolute steer) of every human of a batch of
episodes at time t_s; the caller steps them with `dynamics.step` at the control rate. Humans see cars
ahead on their own path (any kind, perfect knowledge) and nothing else: they never yield to crossing
traffic, which is what makes them non-cooperative at the intersection.
"""
from __future__ import annotations

import numpy as np

from .dynamics import PSI, S, V, Y, lane_keep_steer, steer_on_road
from .scenarios import Scenario

IDM_ACCEL, IDM_DECEL, IDM_HEADWAY_S, IDM_GAP_M = 1.5, 2.0, 0.6, 0.3


def human_commands(scn: Scenario, cars: np.ndarray, alive: np.ndarray, t_s) -> tuple[np.ndarray, np.ndarray]:
    """cars (E, C, 5), alive (E, C) bool, t_s scalar or (E,) → accel (E, H), steer (E, H). The scripts
    (scn.human_speed, brake_at_s, ...) are (H,) or stacked per episode (E, H) (`vec_env.stack_scenarios`)."""
    p, track = scn.params, scn.track
    h = scn.humans
    me = cars[:, h]  # (E, H, 5)
    ds = track.wrap(cars[:, None, :, S] - me[..., None, S])  # (E, H, C): others relative to each human
    # a car is in the way when its body reaches into the human's: a driver brakes for a nose poking into
    # the lane, not only for cars whose rear axle is in it (measured: agents stopped mid-lane-change were
    # hit side-on by humans that ignored them, 1 episode in 50 of highway-medium under a PGD attack)
    sin = np.sin(cars[..., PSI])
    centre = cars[..., Y] + 0.5 * (p.front_extent - p.rear_overhang) * sin  # (E, C) lateral body centre
    half = 0.5 * p.width * np.cos(cars[..., PSI]) + 0.5 * (p.front_extent + p.rear_overhang) * np.abs(sin)
    same_lane = np.abs(centre[:, None, :] - me[..., None, Y]) < half[:, None, :] + 0.5 * p.width + 0.05
    same_path = scn.path[None, h, None] == scn.path[None, None, :]
    ahead = same_path & same_lane & (ds > 0) & alive[:, None, :]
    gap = np.where(ahead, ds - p.length, np.inf).min(axis=2)
    lead = np.argmin(np.where(ahead, ds, np.inf), axis=2)
    v = me[..., V]
    v_lead = np.take_along_axis(cars[..., V], lead, axis=1)
    v_lead = np.where(np.isfinite(gap), v_lead, v)
    want = IDM_GAP_M + v * IDM_HEADWAY_S + v * (v - v_lead) / (2.0 * np.sqrt(IDM_ACCEL * IDM_DECEL))
    free = 1.0 - (v / scn.human_speed) ** 4
    a = IDM_ACCEL * (free - (np.maximum(want, 0.0) / np.maximum(gap, 1e-3)) ** 2)
    t = np.asarray(t_s, dtype=float).reshape(-1, 1)
    braking = (t >= scn.brake_at_s) & (t < scn.brake_at_s + scn.brake_for_s)
    a = np.where(braking, -p.brake_max, np.clip(a, -p.brake_max, p.accel_max))
    lane_y = track.lane_centre(track.lane_of(scn.cars[..., h, Y]))  # the lane each started in
    steer = lane_keep_steer(me[..., Y], me[..., PSI], v, lane_y, p)
    return a, steer_on_road(steer, track.kappa_at(me[..., S], me[..., Y]), p)
