"""The policy's observation: ego state + the nearest known cars (as received over V2V or perceived).

A pure function of what one car knows, so the trial's car process builds exactly what training saw:

    obs = observe(ego, ego_accel, remaining_m, nb, cx, n_lanes, lane_width, cfg, drive_lane)  # (B, obs_dim)

ego (B, 4) = (s, y, ψ, v) in the car's road frame (see `dynamics`), ego_accel (B,) its last commanded
acceleration, remaining_m (B,) the distance left to its goal along s, nb (B, N, NB_COLS) and cx
(B, M, CX_COLS) or None: the shield's tables (`tables.py`; rows with present = 0 are ignored), drive_lane
(B,) or None the lane each car is driving to (a latched lane change; None = the lane it is in).

Layout (all roughly in [−1, 1]):
  ego (9):        v / v_max, lateral offset from the lane centre / lane width, ψ, accel / a_max,
                  min(remaining, range) / range, lane index / (lanes − 1) (0 with one lane),
                  lane to the left exists, lane to the right exists, lane driving to − lane in
  lanes × 4, for the lane to the right, the ego's lane and the lane to the left: bumper gap to the
                  nearest car ahead in it / range (1 = none in range), that car's (v − v_ego) / v_max, the
                  gap to the nearest car behind / range, its (v − v_ego) / v_max; all 0 where the lane
                  does not exist. A car is in the lane its rear axle is in. (The lane choice a policy
                  has to learn, in the form it is made in; without these it learned only the
                  acceleration bins in 340k steps.)
  k_neighbours × 8, nearest |Δs| first among those within `range_m`:
                  Δs / range, Δy / lane width, (v − v_ego) / v_max, a / a_max, cooperative,
                  announced lane change (−1 right, 0 none, +1 left), min(age, 1 s), present
  k_crossing × 6, soonest first:
                  distance to the zone / range, v / v_max, ego distance to the zone entry / range,
                  priority, min(age, 1 s), present
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tables import (CX_AGE, CX_D, CX_PRESENT, CX_PRIO, CX_V, CX_ZONE_S, NB_A, NB_AGE, NB_COOP, NB_LANE_TO,
                     NB_PRESENT, NB_S, NB_V, NB_Y)

EGO_DIM, LANE_FEAT, NB_FEAT, CX_FEAT = 9, 12, 8, 6


@dataclass(frozen=True)
class ObsConfig:
    k_neighbours: int = 6
    k_crossing: int = 2
    range_m: float = 10.0
    speed_max: float = 3.0
    accel_max: float = 3.0
    front_extent: float = 0.455  # ego rear axle to front bumper (CarParams.front_extent)
    car_length: float = 0.58  # bumper gap = Δs − length (every car of the sim is the same body)


def obs_dim(cfg: ObsConfig) -> int:
    return EGO_DIM + LANE_FEAT + NB_FEAT * cfg.k_neighbours + CX_FEAT * cfg.k_crossing


def observe(ego, ego_accel, remaining_m, nb, cx, n_lanes: int, lane_width: float,
            cfg: ObsConfig = ObsConfig(), drive_lane=None) -> np.ndarray:
    ego = np.asarray(ego, dtype=float)
    nb = np.asarray(nb, dtype=float)
    B = ego.shape[0]
    s, y, psi, v = (ego[:, i] for i in range(4))
    R, vmax, amax = cfg.range_m, cfg.speed_max, cfg.accel_max
    lane = np.clip(np.floor(y / lane_width), 0, n_lanes - 1)
    out = np.zeros((B, obs_dim(cfg)), dtype=np.float32)
    out[:, 0] = v / vmax
    out[:, 1] = (y - (lane + 0.5) * lane_width) / lane_width
    out[:, 2] = psi
    out[:, 3] = np.asarray(ego_accel, dtype=float) / amax
    out[:, 4] = np.minimum(np.asarray(remaining_m, dtype=float), R) / R
    out[:, 5] = lane / max(n_lanes - 1, 1)
    out[:, 6] = lane < n_lanes - 1
    out[:, 7] = lane > 0
    if drive_lane is not None:
        out[:, 8] = np.asarray(drive_lane, dtype=float) - lane
    ds = nb[..., NB_S] - s[:, None]
    ok = (nb[..., NB_PRESENT] > 0) & (np.abs(ds) <= R)
    out[:, EGO_DIM:EGO_DIM + LANE_FEAT] = lane_features(ds, ok, nb, v, lane, n_lanes, lane_width, cfg)
    # neighbours: nearest first among the present ones in range
    k = min(cfg.k_neighbours, nb.shape[1])
    order = np.argsort(np.where(ok, np.abs(ds), np.inf), axis=1, kind="stable")[:, :k]
    take = (lambda a: np.take_along_axis(a, order, axis=1))
    okk = take(ok)
    lane_to = take(nb[..., NB_LANE_TO])
    n_lane = np.clip(np.floor(take(nb[..., NB_Y]) / lane_width), 0, n_lanes - 1)
    feats = np.stack((take(ds) / R, (take(nb[..., NB_Y]) - y[:, None]) / lane_width,
                      (take(nb[..., NB_V]) - v[:, None]) / vmax, take(nb[..., NB_A]) / amax, take(nb[..., NB_COOP]),
                      np.where(lane_to >= 0, np.sign(lane_to - n_lane), 0.0),
                      np.minimum(take(nb[..., NB_AGE]), 1.0), np.ones_like(ds[:, :k])), axis=-1)
    base = EGO_DIM + LANE_FEAT
    out[:, base:base + NB_FEAT * k] = np.where(okk[..., None], feats, 0.0).reshape(B, -1)
    if cx is not None and cfg.k_crossing:
        cx = np.asarray(cx, dtype=float)
        ok = (cx[..., CX_PRESENT] > 0) & (cx[..., CX_D] <= R)
        k = min(cfg.k_crossing, cx.shape[1])
        order = np.argsort(np.where(ok, cx[..., CX_D], np.inf), axis=1, kind="stable")[:, :k]
        take = (lambda a: np.take_along_axis(a, order, axis=1))
        ego_to_zone = take(cx[..., CX_ZONE_S]) - (s[:, None] + cfg.front_extent)
        feats = np.stack((np.clip(take(cx[..., CX_D]), -R, R) / R, take(cx[..., CX_V]) / vmax,
                          np.clip(ego_to_zone, -R, R) / R, take(cx[..., CX_PRIO]),
                          np.minimum(take(cx[..., CX_AGE]), 1.0), np.ones_like(ego_to_zone)), axis=-1)
        base = EGO_DIM + LANE_FEAT + NB_FEAT * cfg.k_neighbours
        out[:, base:base + CX_FEAT * k] = np.where(take(ok)[..., None], feats, 0.0).reshape(B, -1)
    return out


def lane_features(ds, ok, nb, v, lane, n_lanes: int, lane_width: float, cfg: ObsConfig) -> np.ndarray:
    """(B, 12): per lane (right, own, left) the gap ahead, the lead's relative speed, the gap behind, the
    follower's relative speed (see the module docstring)."""
    R, vmax = cfg.range_m, cfg.speed_max
    n_lane = np.clip(np.floor(nb[..., NB_Y] / lane_width), 0, n_lanes - 1)
    dv = (nb[..., NB_V] - v[:, None]) / vmax
    out = np.zeros((ds.shape[0], 3, 4), dtype=np.float32)
    for j, off in enumerate((-1, 0, 1)):
        target = lane + off
        exists = (target >= 0) & (target < n_lanes)
        inl = ok & (n_lane == target[:, None])
        for side, sign in ((0, 1.0), (2, -1.0)):
            d = np.where(inl & (sign * ds > 0), sign * ds, np.inf)
            k = np.argmin(d, axis=1)
            dmin = np.take_along_axis(d, k[:, None], 1)[:, 0]
            has = np.isfinite(dmin)
            out[:, j, side] = np.where(has, np.clip((dmin - cfg.car_length) / R, 0.0, 1.0), 1.0)
            out[:, j, side + 1] = np.where(has, np.take_along_axis(dv, k[:, None], 1)[:, 0], 0.0)
        out[:, j] *= exists[:, None]
    return out.reshape(ds.shape[0], -1)
