"""Crossing traffic at an intersection, projected onto the ego's path as a pseudo-vehicle.

A crossing car that will be in the conflict zone while the ego could be (arrival-time windows overlap),
or that has priority (a red-light runner, an uncooperative car), becomes a pseudo-vehicle *standing at
the zone entry* on the ego's path until it has cleared the zone; the ego's front-gap barrier then makes
it stop before the zone. Standing (not moving with the crossing car as in an ETA-ratio projection) is
the conservative variant: the pseudo-vehicle never jumps backwards, so the barrier stays valid as the
crossing car's estimate changes. Message age shrinks the crossing car's distance (it may have driven
v·age + ½a·age² since) and so makes its arrival earlier; position error works the same way.

If the ego can no longer stop before the zone (its barrier is already negative) and the crossing car is
not in the zone yet and has no priority, the ego is committed and goes: a cooperative crossing car running
the same rule sees the ego arriving first and yields.
"""
from __future__ import annotations

import numpy as np

from .vehicle_model import (CX_AGE, CX_D, CX_EPOS, CX_LEN, CX_PRESENT, CX_PRIO, CX_V, CX_ZONE_LC,
                            CX_ZONE_LE, CX_ZONE_S)


def earliest_time(dist, v, accel, v_max):
    """Shortest time to cover `dist` from speed v accelerating at `accel` up to v_max (0 if dist ≤ 0)."""
    dist = np.maximum(dist, 0.0)
    v = np.minimum(v, v_max)
    t1 = (v_max - v) / accel
    d1 = 0.5 * (v + v_max) * t1
    t_acc = (np.sqrt(v * v + 2.0 * accel * dist) - v) / accel
    return np.where(dist <= d1, t_acc, t1 + (dist - d1) / v_max)


def crossing_gaps(s, v, cx, params, cfg):
    """Ego rear-axle position s and speed v (shape (B,)), crossing table cx (B, C, CX_COLS).

    Returns (gap, use): gap (B, C) from the ego's front bumper to the zone entry (error-tightened), and
    use (B, C) whether the ego must yield to that car now."""
    s = np.asarray(s, dtype=float)[..., None]
    v = np.asarray(v, dtype=float)[..., None]
    d, vc = cx[..., CX_D], np.maximum(cx[..., CX_V], 0.0)
    zs, zle, zlc = cx[..., CX_ZONE_S], cx[..., CX_ZONE_LE], cx[..., CX_ZONE_LC]
    age, epos = np.maximum(cx[..., CX_AGE], 0.0), np.maximum(cx[..., CX_EPOS], 0.0)
    a_c = cfg.cross_accel_max
    cleared = d + epos < -(zlc + cx[..., CX_LEN])
    ego_past = s - params.rear_overhang > zs + zle
    d_now = d - epos - vc * age - 0.5 * a_c * age * age
    vc_now = np.minimum(vc + a_c * age, cfg.cross_speed_max)
    t_cross = earliest_time(d_now, vc_now, a_c, cfg.cross_speed_max)
    t_ego = earliest_time(zs + zle + params.rear_overhang - s, v, params.accel_max, params.speed_max)
    prio = cx[..., CX_PRIO] > 0
    conflict = prio | (t_cross <= t_ego + cfg.yield_buffer_s)
    gap = zs - (s + params.front_extent) - cfg.pos_error
    h_stop = gap - cfg.standstill_gap - cfg.headway * v - v * v / (2.0 * params.brake_max)
    committed = (h_stop < 0) & (d_now > 0) & ~prio
    use = (cx[..., CX_PRESENT] > 0) & ~cleared & ~ego_past & conflict & ~committed
    return gap, use
