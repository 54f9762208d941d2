"""A scripted lane-changing driver over the MARL behaviours: the demonstrator for the actor's warm start.

`scripted_actions(obs, mask)` is a pure function of what the trained actor itself sees (the observation of
`rtctl.sim.vehicles.observe` and the shield's action mask), so the same rule runs in the vectorised sim, in a
trial car process, and as a behaviour-cloning target:

- a lane change in progress carries on (keep lane), unless the lane it goes to turns out blocked and the
  one it is leaving has more room, or the shield refuses it now: then it turns back (or brakes);
- otherwise, with the car ahead in its lane closer than LOOK_M, it changes to the adjacent lane with the
  most room ahead (at least SWITCH_MARGIN_M more, and a car behind there at least REAR_GAP_M back);
- else it keeps its lane (gap keeping at the target speed).
A MOBIL-like rule without politeness terms (Kesting et al. 2007); on highway-medium with the shield and
delayed V2V it completes ~0.9 of routes (the `scripted` rows of `rtctl bench marl`).
"""
from __future__ import annotations

import numpy as np

from rtctl.sim.vehicles.observe import EGO_DIM, ObsConfig

from rtctl.vehicles.control import BEHAVIOUR_NAMES

KEEP, LEFT, RIGHT = (BEHAVIOUR_NAMES.index(n) for n in ("keep_lane", "change_left", "change_right"))
STOP, SOFT_BRAKE = BEHAVIOUR_NAMES.index("emergency_stop"), BEHAVIOUR_NAMES.index("accel_-1.0")
LOOK_M, SWITCH_MARGIN_M, REAR_GAP_M = 6.0, 1.0, 0.8


def scripted_actions(obs: np.ndarray, mask: np.ndarray, cfg: ObsConfig = ObsConfig()) -> np.ndarray:
    """obs (..., obs_dim), mask (..., K) bool → behaviour indices (...)."""
    o = np.asarray(obs, dtype=float)
    m = np.asarray(mask, dtype=bool)
    shape = o.shape[:-1]
    o, m = o.reshape(-1, o.shape[-1]), m.reshape(-1, m.shape[-1])
    R = cfg.range_m
    lanes = o[:, EGO_DIM:EGO_DIM + 12].reshape(-1, 3, 4)  # right, own, left × (ahead, dv, behind, dv)
    ahead, behind = lanes[..., 0] * R, lanes[..., 2] * R  # bumper gaps (m); R where the lane is free
    exists = np.stack((o[:, 7] > 0, np.ones(len(o), bool), o[:, 6] > 0), axis=1)
    changing = np.abs(o[:, 8]) > 0.5
    rows = np.arange(len(o))
    best, room = np.full(len(o), KEEP), ahead[:, 1].copy()
    for side, action in ((2, LEFT), (0, RIGHT)):
        better = (exists[:, side] & m[:, action] & (ahead[:, 1] < LOOK_M) & (behind[:, side] > REAR_GAP_M)
                  & (ahead[:, side] > room + SWITCH_MARGIN_M))
        best = np.where(better, action, best)
        room = np.where(better, ahead[:, side], room)
    back = np.where(o[:, 8] > 0, RIGHT, LEFT)
    # a lane change carries on unless the lane it goes to turned out blocked (a parked car comes into
    # sensor range only 5 m out) and the lane it is leaving has more room: then it turns back
    to = np.clip(1 + np.sign(o[:, 8]).astype(int), 0, 2)
    blocked = (ahead[rows, to] < LOOK_M - 2.0) & (ahead[:, 1] > ahead[rows, to] + SWITCH_MARGIN_M)
    best = np.where(changing, np.where(blocked & m[rows, back], back, KEEP), best)
    fallback = np.where(changing & m[rows, back], back, np.where(m[:, SOFT_BRAKE], SOFT_BRAKE, STOP))
    return np.where(m[rows, best], best, fallback).reshape(shape)


def scripted_policy(obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`scripted_actions` as a rollout act function: (actions, log-probabilities = 0)."""
    return scripted_actions(obs, mask), np.zeros(np.shape(obs)[:-1], dtype=np.float32)
