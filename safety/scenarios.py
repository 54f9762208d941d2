"""Randomised closed-loop episodes that check a shield never lets its system leave the safe set.

Used by the property tests and by `rtctl bench shield`. Initial states are drawn from the certified set
(every barrier ≥ its margin), nominal commands are random, extreme or non-finite, and the system is
stepped with its nominal model (plus bounded error); a violation is a real collision / boundary crossing,
measured on geometry the shield does not see in that form.

- `vehicle_episodes`: E episodes of C cars on a straight road, every car shielded (decentralised: each
  sees the others only through the neighbour table, optionally `lag` ticks old), stepped with the exact
  kinematic bicycle. Violation: two bodies' extents overlap, or a body leaves the road.
- `arm_episodes`: the arm follows its targets with a random error within the tracking bound; spheres
  covering the links (from the model file) are checked against obstacles, the workspace box, each other
  and the joint ranges along each tick's motion.
"""
from __future__ import annotations

import numpy as np

from .arm import _curv_weights
from .vehicle_model import NB_COLS, bicycle_step, footprint_extent, pursuit_kappa


# -- vehicles ----------------------------------------------------------------------------------------------
def _viable_starts(shield, E, C, rng):
    """E episodes of C cars, lane-centred and aligned, every same-lane pair at a safe stopping gap."""
    p, road, cfg = shield.params, shield.road, shield.config
    out = np.zeros((E, C, 4))
    filled = 0
    while filled < E:
        n = 4 * (E - filled) + 16
        lane = rng.integers(0, road.n_lanes, (n, C))
        s = rng.uniform(0.0, 3.0 * C, (n, C))
        v = rng.uniform(0.0, p.speed_max, (n, C))
        ok = np.ones(n, dtype=bool)
        for i in range(C):
            for j in range(C):
                if i == j:
                    continue
                same = lane[:, i] == lane[:, j]
                behind = s[:, i] < s[:, j]  # i follows j
                gap = (s[:, j] - p.rear_overhang) - (s[:, i] + p.front_extent) - 2 * cfg.pos_error
                stop = np.maximum(v[:, i] ** 2 - v[:, j] ** 2, 0.0) / (2 * p.brake_max)
                h = (gap - cfg.standstill_gap - cfg.headway * v[:, i] - stop
                     - (cfg.headway + v[:, i] / p.brake_max) * cfg.vel_error)
                ok &= ~(same & behind) | (h > 0.05)
        good = np.flatnonzero(ok)[: E - filled]
        X = np.stack((s, road.centre(lane), np.zeros_like(s), v), axis=-1)
        out[filled:filled + good.size] = X[good]
        filled += good.size
    return out


def _neighbour_tables(X, accel, lane_to, others, lag_states, lag_s):
    """Per car, the table of the other cars of its episode as its V2V messages show them."""
    E, C, _ = X.shape
    src = lag_states  # what the messages say (possibly older than X)
    nb = np.zeros((E, C, C - 1, NB_COLS))
    nb[..., 0] = src[:, others, 0]
    nb[..., 1] = src[:, others, 1]
    nb[..., 2] = src[:, others, 3]
    nb[..., 3] = accel[:, others]
    nb[..., 4] = 1.0  # cooperative: every car runs the shield
    nb[..., 5] = lane_to[:, others]
    nb[..., 6] = lag_s
    nb[..., 9] = 1.0
    nb[..., 10] = src[:, others, 2]
    return nb.reshape(E * C, C - 1, NB_COLS)


def vehicle_episodes(shield, episodes, steps=50, cars=4, rng=None, lag=0, nonfinite_rate=0.02):
    """Run `episodes` random episodes at once; returns counts and the smallest clearances seen."""
    rng = rng or np.random.default_rng(0)
    p, road, dt = shield.params, shield.road, shield.config.dt
    E, C = episodes, cars
    X = _viable_starts(shield, E, C, rng)
    others = np.array([[j for j in range(C) if j != i] for i in range(C)])
    history = [X.copy()] * (lag + 1)
    accel = np.zeros((E, C))
    target = road.lane_of(X[..., 1])
    lane_to = np.full((E, C), -1.0)
    counts = {"violations": 0, "relaxed": 0, "fallbacks": 0, "calls": 0, "collisions": 0, "off_road": 0}
    min_gap, min_edge = np.inf, np.inf
    for t in range(steps):
        # random nominal commands: accelerations beyond the limits, lane changes, some non-finite
        change = rng.random((E, C)) < 0.05
        target = np.where(change, np.clip(target + rng.choice([-1, 1], (E, C)), 0, road.n_lanes - 1), target)
        a_nom = rng.uniform(-p.brake_max - 2.0, p.accel_max + 2.0, (E, C))
        k_nom = pursuit_kappa(X[..., 1], X[..., 2], X[..., 3], road.centre(target), p.kappa_max)
        d_nom = p.kappa_to_steer(k_nom) + rng.normal(0.0, 0.05, (E, C))
        wild = rng.random((E, C)) < 0.05
        d_nom = np.where(wild, rng.uniform(-1.0, 1.0, (E, C)), d_nom)
        bad = rng.random((E, C)) < nonfinite_rate
        a_nom = np.where(bad, rng.choice([np.nan, np.inf, -np.inf], (E, C)), a_nom)
        nb = _neighbour_tables(X, accel, lane_to, others, history[0], lag * dt)
        u, info = shield.filter_batch(X.reshape(E * C, 4), np.stack((a_nom, d_nom), -1).reshape(E * C, 2),
                                      nb, None, target.reshape(-1))
        counts["calls"] += E * C
        counts["relaxed"] += int(np.count_nonzero(info.status == 1))
        counts["fallbacks"] += int(np.count_nonzero(info.status == 2))
        u = u.reshape(E, C, 2)
        accel = u[..., 0]
        # what each car broadcasts next: the target lane its shield admitted, if any
        lane_to = np.where(info.target_ok.reshape(E, C), target, -1.0)
        X = bicycle_step(X, u[..., 0], p.steer_to_kappa(u[..., 1]), dt, p)
        history = history[1:] + [X.copy()]
        s_lo, s_hi, y_lo, y_hi = footprint_extent(X, p)
        edge = np.minimum(y_lo, road.n_lanes * road.lane_width - y_hi)
        off = edge < 0
        min_edge = min(min_edge, float(edge.min()))
        hit = np.zeros((E, C), dtype=bool)
        for i in range(C):
            for j in range(i + 1, C):
                lat = (y_lo[:, i] < y_hi[:, j]) & (y_lo[:, j] < y_hi[:, i])
                gap = np.maximum(s_lo[:, i] - s_hi[:, j], s_lo[:, j] - s_hi[:, i])
                min_gap = min(min_gap, float(np.where(lat, gap, np.inf).min()))
                clash = lat & (gap < 0)
                hit[:, i] |= clash
                hit[:, j] |= clash
        counts["collisions"] += int(np.count_nonzero(hit))
        counts["off_road"] += int(np.count_nonzero(off))
        counts["violations"] += int(np.count_nonzero(hit | off))
    counts["min_gap_m"] = min_gap
    counts["min_edge_m"] = min_edge
    counts["episodes"] = E
    return counts


# -- arm ---------------------------------------------------------------------------------------------------
def arm_violation(shield, q, obs):
    """True geometry check of one configuration against the shield's covering spheres (no margins)."""
    kin, c = shield.kin, shield.config
    if np.any(q < kin.lower - 1e-9) or np.any(q > kin.upper + 1e-9):
        return True
    T = kin.forward(q)
    P = kin.points(T, shield.sph_body, shield.sph_centre)
    r = shield.sph_radius
    if obs.shape[0]:
        k = shield.obs_sph
        d = np.linalg.norm(P[k][:, None, :] - obs[None, :, :3], axis=2)
        if np.any(d < r[k][:, None] + obs[None, :, 3]):
            return True
    k = shield.ws_sph
    box = np.array(c.workspace)
    if np.any(P[k] - r[k][:, None] < box[:, 0]) or np.any(P[k] + r[k][:, None] > box[:, 1]):
        return True
    a, b = shield.self_a, shield.self_b
    return bool(a.size and np.any(np.linalg.norm(P[a] - P[b], axis=1) < r[a] + r[b]))


def arm_start(shield, rng, n_obs):
    """A configuration and obstacles with every barrier at least its worst-case margin."""
    kin = shield.kin
    lo, hi = shield.q_lo + 0.1, shield.q_hi - 0.1
    e, d = shield.e_track, shield.speed * shield.config.dt
    w = _curv_weights(d + e)
    while True:
        q = rng.uniform(lo, hi)
        T = kin.forward(q)
        P = kin.points(T, shield.sph_body, shield.sph_centre)
        obs = np.column_stack((P[rng.choice(shield.obs_sph, n_obs)] + rng.normal(0, 0.08, (n_obs, 3)),
                               rng.uniform(0.02, 0.05, n_obs)))
        _, _, h, _, _, _, _, _, lev = shield._barriers(q, obs, {})
        if np.all(h >= lev @ e + 0.5 * (lev @ w) + 1e-3):
            return q, obs


def arm_episodes(shield, episodes, steps=40, rng=None, n_obs=2, substeps=4):
    """Returns counts (violations, relaxed, fallbacks, calls) over `episodes` random episodes."""
    rng = rng or np.random.default_rng(0)
    counts = {"violations": 0, "relaxed": 0, "fallbacks": 0, "calls": 0, "episodes": episodes}
    e = shield.e_track
    for _ in range(episodes):
        q, obs = arm_start(shield, rng, n_obs)
        shield.reset()
        u_prev, q_act = q.copy(), q.copy()
        goal = rng.uniform(shield.q_lo, shield.q_hi)
        mode = rng.integers(0, 3)
        bad = False
        for t in range(steps):
            if mode == 0:  # head for a goal (often through an obstacle)
                u_nom = u_prev + np.clip(goal - u_prev, -0.05, 0.05)
            elif mode == 1:  # jumps anywhere in the joint range
                u_nom = rng.uniform(shield.kin.lower - 0.5, shield.kin.upper + 0.5)
            else:  # jitter, sometimes non-finite
                u_nom = u_prev + rng.normal(0.0, 0.1, u_prev.shape)
                if rng.random() < 0.05:
                    u_nom[rng.integers(0, u_nom.size)] = rng.choice([np.nan, np.inf, -np.inf])
            u, info = shield.filter({"q": q_act, "u_prev": u_prev}, u_nom, {"obstacles": obs})
            counts["calls"] += 1
            counts["relaxed"] += info.status == "relaxed"
            counts["fallbacks"] += info.status == "fallback"
            q_next = u + rng.uniform(-1.0, 1.0, u.shape) * e  # arrives within the tracking error
            for s in np.linspace(0.0, 1.0, substeps + 1)[1:]:
                if arm_violation(shield, (1 - s) * q_act + s * q_next, obs):
                    bad = True
            u_prev, q_act = u, q_next
        counts["violations"] += bad
    return counts
