"""V2V <-> shield glue: own state as a V2V message, and the neighbour table the shield reads.

Trial messages carry the road frame of the shared road in `pose` (s, y, ψ) and `vel` (v cos ψ, v sin ψ); on
the straight highway that is also the world frame. The table rows (`rtctl.safety.vehicle_model` NB_* columns)
come from three sources: V2V neighbours with their message age — the position margin grows with age
(error bound + stale_margin_mps · age) and the shield itself advances rear cars by speed × age, so an old
message widens the gap the car keeps; a neighbour that stops talking (killed, out of range) stays in the
table with a growing age, never silently forgotten —, cars the onboard sensors see (not cooperative), and
the map's parked obstacles.

At the intersection (several paths) `path_tables` builds both the same-path rows and the crossing-traffic
rows (CX_* columns) with the car sim's own `shield_tables`, so a car process sees what training saw: every
message and track is in its sender's own path frame, and which path a car is on comes from the shared map.
"""
from __future__ import annotations

import math

import numpy as np

from rtctl.safety.behaviours import DEFAULT_BEHAVIOURS
from rtctl.safety.vehicle_model import NB_COLS
from rtctl.v2v.neighbours import Neighbour

LANE_OFFSET = np.array([b.lane_offset for b in DEFAULT_BEHAVIOURS])
STOP_INTENT = next(i for i, b in enumerate(DEFAULT_BEHAVIOURS) if b.stop)
CHANGE_LEFT = next(i for i, b in enumerate(DEFAULT_BEHAVIOURS) if b.lane_offset == 1)
CHANGE_RIGHT = next(i for i, b in enumerate(DEFAULT_BEHAVIOURS) if b.lane_offset == -1)


def state_message(state, accel: float) -> tuple[tuple, tuple, tuple]:
    """(pose, vel, acc) of a V2V state message for road-frame state (s, y, ψ, v)."""
    s, y, psi, v = (float(x) for x in state)
    return (s, y, psi), (v * math.cos(psi), v * math.sin(psi)), (float(accel), 0.0)


def neighbour_rows(neighbours: list[Neighbour], road, s_ego: float, wrap, stale_margin_mps: float,
                   vel_error: float = 0.05) -> np.ndarray:
    """V2V snapshot -> (N, NB_COLS) rows; `wrap` maps an s difference to the nearest way round (oval)."""
    out = np.zeros((len(neighbours), NB_COLS))
    for k, n in enumerate(neighbours):
        st = n.state
        s, y, psi = float(st.pose[0]), float(st.pose[1]), float(st.pose[2])
        intent = int(st.intent)
        offset = int(LANE_OFFSET[intent]) if 0 <= intent < len(LANE_OFFSET) else 0
        lane_to = float(road.lane_of(y) + offset) if offset else -1.0
        if not 0 <= lane_to < road.n_lanes:
            lane_to = -1.0
        age = max(n.age_s, 0.0)
        out[k] = (s_ego + float(wrap(s - s_ego)), y, math.hypot(st.vel[0], st.vel[1]), float(st.acc[0]), 1.0,
                  lane_to, age, n.error_bound + stale_margin_mps * age, vel_error, 1.0, psi)
    return out


def sensed_rows(rows: np.ndarray, age_s: float, pos_error: float = 0.05, vel_error: float = 0.1) -> np.ndarray:
    """Onboard-perception tracks (M, 4) = (s, y, ψ, v) -> non-cooperative table rows."""
    out = np.zeros((len(rows), NB_COLS))
    if len(rows):
        out[:, 0], out[:, 1], out[:, 2], out[:, 10] = rows[:, 0], rows[:, 1], rows[:, 3], rows[:, 2]
        out[:, 5] = -1.0
        out[:, 6], out[:, 7], out[:, 8], out[:, 9] = age_s, pos_error, vel_error, 1.0
    return out


def obstacle_rows(cars: np.ndarray, s_ego: float, wrap) -> np.ndarray:
    """Parked obstacles of the map (K, ≥ 2 columns s, y) -> rows with speed 0."""
    out = np.zeros((len(cars), NB_COLS))
    if len(cars):
        out[:, 0] = s_ego + wrap(cars[:, 0] - s_ego)
        out[:, 1] = cars[:, 1]
        out[:, 5] = -1.0
        out[:, 7], out[:, 9] = 0.02, 1.0
    return out


def path_tables(scn, me: int, s_me: float, neighbours: list[Neighbour], ids: list[str], perceived: np.ndarray,
                perceived_idx, sensed_age_s: float, stale_margin_mps: float, vel_error: float = 0.05,
                sensed_pos_error: float = 0.05, sensed_vel_error: float = 0.1):
    """Car `me` (at s_me on its path) of a multi-path map (scenario `scn`): V2V snapshot (senders' ids index `ids`, the agents in
    scenario order) and sensed tracks (perceived (M, 4) = (s, y, ψ, v) in each track's own path frame,
    perceived_idx (M,) their scenario car indices) → (neighbour rows (C, NB_COLS), crossing rows
    (C, CX_COLS)), one row per car of the scenario."""
    from rtctl.sim.vehicles.tables import shield_tables

    C, n = scn.n_cars, scn.n_agents
    k = {key: np.zeros(C) for key in ("s", "y", "psi", "v", "a", "age", "epos", "evel", "coop")}
    k["lane_to"], k["present"] = np.full(C, -1.0), np.zeros(C, dtype=bool)
    for j, row in zip(np.asarray(perceived_idx, dtype=int).tolist(), np.asarray(perceived, dtype=float)):
        k["s"][j], k["y"][j], k["psi"][j], k["v"][j] = row
        k["age"][j], k["epos"][j], k["evel"][j], k["present"][j] = sensed_age_s, sensed_pos_error, sensed_vel_error, True
    where = {cid: i for i, cid in enumerate(ids)}
    for nb in neighbours:
        j = where.get(nb.id)
        if j is None or j == me:
            continue
        st, age = nb.state, max(nb.age_s, 0.0)
        k["s"][j], k["y"][j], k["psi"][j] = (float(x) for x in st.pose[:3])
        k["v"][j], k["a"][j] = math.hypot(st.vel[0], st.vel[1]), float(st.acc[0])
        k["age"][j], k["epos"][j], k["evel"][j] = age, nb.error_bound + stale_margin_mps * age, vel_error
        k["coop"][j], k["present"][j] = 1.0, True
    k["present"][me] = False
    known = {key: np.broadcast_to(v, (1, n, C)) for key, v in k.items()}
    nb_rows, cx_rows = shield_tables(scn, known, np.full((1, n), float(s_me)))
    return nb_rows[0, me], (None if cx_rows is None else cx_rows[0, me])
