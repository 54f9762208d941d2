"""Vehicle shield: a CBF-QP over (acceleration, steering) for a 1/10-scale car among other cars.

`VehicleShield.filter(state, u_nom, context)` filters one command; `filter_batch` filters many at once
(agents, or one agent's candidate behaviours — see `behaviours.py` for the action mask). The command is
(a [m/s²], δ [rad]); the QP runs in (a, κ) with κ = tan δ / wheelbase (see `vehicle_model.py`).

state = (s, y, ψ, v) in road coordinates (rear axle). context keys (all optional):
  neighbours   (N, NB_COLS) table (`vehicle_model.neighbour_table`), V2V or perception
  crossing     (C, CX_COLS) table of crossing cars at an intersection (`crossing_table`)
  target_lane  lane the command is meant to reach (default: the lanes the car occupies now). The target
               lane is admitted only if every barrier it adds (cars in it, ahead or behind) is ≥ 0 now;
               otherwise the car is kept in its lanes (reason "lane_change_refused", as the lab's shield
               aborts a lane change)
  state_age_s  age of the ego state estimate; above `max_state_age_s` → fallback
Rows: two road/lane edges, one gap row per neighbour sharing a lane with the ego (front or rear), one
pseudo-vehicle row per crossing car the ego must yield to. Fallback = full braking in lane, steering
by pure pursuit on the current lane centre.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .info import FALLBACK, OK, RELAXED, ShieldCounts, ShieldInfo
from .intersection import crossing_gaps
from .qp import CBFQP
from .qp import INFEASIBLE as QP_INFEASIBLE
from .qp import OK as QP_OK
from .vehicle_model import NB_PRESENT, NB_PSI, Road, VehicleParams, pursuit_kappa
from .vehicle_rows import (accel_box, front_row, kappa_box, lane_spans, lanes_spanned, lateral_rows,
                           neighbour_row)

_STEER_CLIP = 1.5  # rad: a nominal steering beyond this is nonsense; clipping it keeps tan() sane


@dataclass(frozen=True)
class VehicleShieldConfig:
    dt: float = 0.1  # control period of the shielded command (policy + shield at 10 Hz)
    gamma: float = 0.5  # discrete-time class-K rate: h⁺ ≥ (1 − γ)h
    headway: float = 0.3  # ε₁, s
    standstill_gap: float = 0.15  # d0, m between bumpers
    lane_margin: float = 0.02  # m kept to the lane/road edge
    heading_max: float = 0.45  # rad relative to the road; must stay below atan(front_extent · κ_max)
    pos_error: float = 0.02  # bound on the ego position error, m
    vel_error: float = 0.05  # bound on the ego speed error, m/s
    max_state_age_s: float = 0.3
    form: Literal["discrete", "continuous"] = "discrete"
    alpha1: float = 2.0  # continuous-time HOCBF gains (form="continuous")
    alpha2: float = 2.0
    weight_accel: float = 1.0  # QP weights relative to the normalised ones (1/a_max², 1/κ_max²)
    weight_kappa: float = 1.0
    slack_max: float = 0.05
    slack_weight: float = 1e6
    backend: str = "auto"
    yield_buffer_s: float = 0.5
    cross_accel_max: float = 3.0
    cross_speed_max: float = 3.0

    def __post_init__(self) -> None:
        checks = {"dt": (1e-4, 1.0), "gamma": (1e-3, 1.0), "headway": (0.0, 10.0), "standstill_gap": (0.0, 10.0),
                  "lane_margin": (0.0, 1.0), "heading_max": (0.01, 1.5), "pos_error": (0.0, 1.0), "vel_error": (0.0, 5.0),
                  "max_state_age_s": (0.0, 10.0), "alpha1": (1e-3, 1e3), "alpha2": (1e-3, 1e3),
                  "weight_accel": (1e-6, 1e6), "weight_kappa": (1e-6, 1e6), "slack_max": (0.0, 10.0),
                  "slack_weight": (1.0, 1e12), "yield_buffer_s": (0.0, 10.0),
                  "cross_accel_max": (1e-3, 50.0), "cross_speed_max": (1e-3, 50.0)}
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo <= v <= hi):
                raise ValueError(f"VehicleShieldConfig.{name} must be a number in [{lo}, {hi}], got {v!r}")
        if self.form not in ("discrete", "continuous"):
            raise ValueError(f"VehicleShieldConfig.form must be 'discrete' or 'continuous', got {self.form!r}")
        if self.form == "discrete" and self.headway < 0.5 * self.dt:
            # braking to a stop inside one tick must not lower the gap barrier (see vehicle_rows.front_row)
            raise ValueError("VehicleShieldConfig.headway must be ≥ dt/2 for the discrete form")


class RowConsts:
    """The numbers the row formulas read, flattened once per shield (attribute access is the hot path)."""

    __slots__ = ("dt", "gamma", "eps1", "d0", "brake", "accel", "speed_max", "alpha", "alpha1", "alpha2",
                 "continuous", "kappa_max", "psi_max", "swing_out", "front", "rear", "lane_width",
                 "half_width", "n_lanes", "lane_margin", "pos_error", "vel_error")

    def __init__(self, p: VehicleParams, road: Road, c: VehicleShieldConfig) -> None:
        self.dt, self.gamma, self.eps1, self.d0 = c.dt, c.gamma, c.headway, c.standstill_gap
        self.brake, self.accel, self.speed_max = p.brake_max, p.accel_max, p.speed_max
        self.alpha, self.alpha1, self.alpha2 = c.gamma / c.dt, c.alpha1, c.alpha2
        self.continuous = c.form == "continuous"
        self.kappa_max, self.psi_max = p.kappa_max, c.heading_max
        self.front, self.rear = p.front_extent, p.rear_overhang
        self.lane_width, self.half_width, self.n_lanes = road.lane_width, 0.5 * p.width, road.n_lanes
        turn = 1.0 / p.kappa_max + self.half_width
        self.swing_out = math.hypot(self.rear, turn) - turn
        if c.heading_max >= math.atan(self.front * p.kappa_max):
            raise ValueError(f"VehicleShieldConfig.heading_max must be < atan(front_extent·κ_max) = "
                             f"{math.atan(self.front * p.kappa_max):.3f} rad for this car")
        self.lane_margin, self.pos_error, self.vel_error = c.lane_margin, c.pos_error, c.vel_error


class VehicleShield:
    def __init__(self, params: VehicleParams | None = None, road: Road | None = None,
                 config: VehicleShieldConfig | None = None) -> None:
        self.params = params or VehicleParams()
        self.road = road or Road()
        self.config = config or VehicleShieldConfig()
        self.k = RowConsts(self.params, self.road, self.config)
        c, p = self.config, self.params
        self.weights = np.array([c.weight_accel / p.accel_max ** 2, c.weight_kappa / p.kappa_max ** 2])
        self.qp = CBFQP(self.weights, backend=c.backend, slack_weight=c.slack_weight)
        self.counts = ShieldCounts()

    # -- one command ------------------------------------------------------------------------------------
    def filter(self, state, u_nom, context=None):
        t0 = time.perf_counter_ns()
        ctx = context or {}
        p, k = self.params, self.k
        s, y, psi, v = (float(x) for x in state)
        a_nom, d_n = float(u_nom[0]), float(u_nom[1])
        a_n = a_nom
        if not (math.isfinite(s) and math.isfinite(y) and math.isfinite(psi) and math.isfinite(v)):
            return self._fallback(0.0, 0.0, 0.0, 0.0, "nonfinite_state", t0)
        v = max(v, 0.0)
        if ctx.get("state_age_s", 0.0) > self.config.max_state_age_s:
            return self._fallback(s, y, psi, v, "stale_state", t0)
        if not (math.isfinite(a_n) and math.isfinite(d_n)):
            return self._fallback(s, y, psi, v, "nonfinite_nominal", t0)
        nb, cx = ctx.get("neighbours"), ctx.get("crossing")
        if (nb is not None and not np.isfinite(nb).all()) or (cx is not None and not np.isfinite(cx).all()):
            return self._fallback(s, y, psi, v, "nonfinite_context", t0)
        kap_n = math.tan(min(max(d_n, -_STEER_CLIP), _STEER_CLIP)) / p.wheelbase
        a_lo, a_hi = accel_box(v, k)
        k_lo, k_hi = kappa_box(psi, v, a_lo, a_hi, k)
        if -p.brake_max <= a_n < a_lo:
            a_n = a_lo  # braking harder than "stop within this tick" (but possible) has the same effect
        sp, cp = math.sin(psi), math.cos(psi)
        occ_lo, occ_hi = lanes_spanned(y, sp, k)
        tl = ctx.get("target_lane")
        tl = occ_lo if tl is None else min(max(int(tl), 0), k.n_lanes - 1)
        a_t = min(max(a_n, a_lo), a_hi)
        spans = lane_spans(occ_lo, occ_hi, tl)
        found, admitted = [], True
        if nb is not None:
            for i, r in enumerate(nb.tolist()):
                if r[NB_PRESENT] <= 0:
                    continue
                r[NB_PRESENT] = math.sin(r[NB_PSI])  # the row formulas take the heading's sine there
                ca, ck, rhs, h, (in_occ, in_ext, in_wide), front = neighbour_row(s, v, cp, a_t, a_lo, a_hi,
                                                                                 spans, r[:10], k)
                # a lane change must not start inside a barrier, nor alongside a car beyond the target
                admitted &= in_occ or not in_wide or h >= 0.0
                if in_occ or in_ext:
                    found.append((in_occ, (ca, ck, rhs, h), i, front))
        lane_lo, lane_hi = spans[1] if admitted else spans[0]
        rows = list(lateral_rows(y, sp, cp, v, a_lo, a_hi, lane_lo, lane_hi, k))
        tags = [("edge_left", 0), ("edge_left", 0), ("edge_right", 0), ("edge_right", 0)]
        soft = [False] * 4  # rear-neighbour rows are best effort: the follower's own shield keeps that gap
        for in_occ, row, i, front in found:
            if in_occ or admitted:
                rows.append(row)
                tags.append(("front", i) if front else ("rear", i))
                soft.append(not front)
        note = "" if admitted else "lane_change_refused"
        if cx is not None and len(cx):
            gap, use = crossing_gaps(np.array([s]), np.array([v]), cx[None], p, self.config)
            for i in np.flatnonzero(use[0]).tolist():
                rows.append(front_row(float(gap[0, i]), v, 0.0, p.brake_max, k, a_lo, a_hi, 0.0))
                tags.append(("cross", i))
                soft.append(False)
        h_min = min(r[3] for r in rows)
        if a_lo <= a_n <= a_hi and k_lo <= kap_n <= k_hi:
            for ca, ck, rhs, _ in rows:
                if ca * a_n + ck * kap_n < rhs - 1e-9:
                    break
            else:
                info = ShieldInfo(OK, False, h_min, (), 0.0, 0.0, note, len(rows))
                return self._done(np.array((a_nom, d_n)), info, t0)
        # relaxing the hard rows is accepted only inside the safe set; outside it, brake in lane
        inside = min(r[3] for r, sf in zip(rows, soft) if not sf) >= 0.0
        A = np.array(rows)
        b = A[:, 2]
        A = A[:, :2]
        u, st, slack, act = self.qp.solve(np.array((a_n, kap_n)), A, b, np.array((a_lo, k_lo)),
                                          np.array((a_hi, k_hi)), self.config.slack_max, np.array(soft),
                                          check_nominal=False, relax=inside)
        if st == QP_INFEASIBLE:
            return self._fallback(s, y, psi, v, "infeasible" if inside else "outside_safe_set", t0, h_min, len(rows))
        out = np.array((u[0], math.atan(u[1] * p.wheelbase)))
        active = tuple(name if name.startswith("edge") else f"{name}{i}" for name, i in (tags[j] for j in act))
        info = ShieldInfo(OK if st == QP_OK else RELAXED, True, h_min, active, slack,
                          0.0, note if st == QP_OK else "relaxed", len(rows))
        return self._done(out, info, t0)

    def fallback_command(self, y, psi, v):
        """Full braking (down to a stop) and pure pursuit on the current lane centre; floats or arrays."""
        p = self.params
        v = np.maximum(v, 0.0)
        a = np.maximum(-p.brake_max, -v / self.config.dt)
        centre = self.road.centre(self.road.lane_of(y))
        return a, np.arctan(p.wheelbase * pursuit_kappa(y, psi, v, centre, self.k.kappa_max))

    def _fallback(self, s, y, psi, v, reason, t0, h_min=float("-inf"), rows=0):
        a, d = self.fallback_command(y, psi, v)
        info = ShieldInfo(FALLBACK, True, h_min, (), 0.0, 0.0, reason, rows)
        return self._done(np.array((float(a), float(d))), info, t0)

    def _done(self, u, info, t0):
        info.solve_us = (time.perf_counter_ns() - t0) * 1e-3
        self.counts.add(info)
        return u, info

    # -- many commands at once ---------------------------------------------------------------------------
    def filter_batch(self, states, u_nom, neighbours=None, crossing=None, target_lane=None, state_age_s=None):
        """states (B,4), u_nom (B,2) → (u_safe (B,2), BatchInfo). neighbours (B,N,NB_COLS) or (N,NB_COLS)
        shared by all problems; crossing likewise with CX_COLS; target_lane (B,) ints or None."""
        from .vehicle_batch import filter_batch

        return filter_batch(self, states, u_nom, neighbours, crossing, target_lane, state_age_s)

