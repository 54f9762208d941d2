"""Arm shield: a CBF-QP over the joint-position targets of a position-controlled arm (SO-101 by default).

Control model (documented choice). The command u is the vector of joint position targets sent each tick
(period dt). The servos track it closely (kp ≈ 1000 N·m/rad): during a tick the arm moves along the
segment from the previous target ū to u, within a tracking error e of it: the worst case measured at the
configured speed and acceleration limits, or the measured |q − ū| at the tick's start (gravity sag, lag
carried over) plus the most it grows in a tick, when that is larger (sim/servo_tracking.py measures both). So the input is the per-tick
change u − ū, rate-limited to v_max·dt per joint and acceleration-limited to a_max·dt² against the last
change (smooth targets keep e small; the bound e is measured in MuJoCo, see ArmShieldConfig), and
"hold" (u = ū) is always allowed and stops the arm: the barriers are relative degree 1 in u, discrete time. For each barrier h(q) ≥ 0 (distances in metres):

    ∇h(ū)·(u − ū) ≥ −γ (h(ū) − μ) + m(δ)                      (one row)

with δ the box half-width, m(δ) = ½ Σ_ij |∂²c/∂q_i∂q_j| δ_i δ_j ≤ ½ Σ_j lever_j δ_j (2Σ_{i<j} δ_i + δ_j)
the linearisation (and, since it holds at every point of the segment, the sampled-data) margin, and
μ = |∇h|·e + m(δ + e) the robustness margin for the tracking/measurement error. Then h(q(t)) ≥ 0 at
every instant of the tick whenever h(ū) ≥ μ — the invariant the rows keep (distance is convex in the
point positions, so linearising it is conservative; only the kinematics' curvature needs m).
Obstacle margins grow with the obstacle estimate's error and age (speed × (age + dt)).

Rows: link spheres vs obstacle spheres, tool/distal spheres vs the workspace box faces (the table is the
box floor), a few self-collision sphere pairs. Joint position limits and the rate limit are box bounds
(a joint already outside its limit may only move back). Rows that no input in the box can violate are
dropped before the Jacobians are formed (bound from each sphere's largest lever per joint).
Fallback (relaxed QP infeasible, non-finite input, stale state): hold the last applied command.

Yield (a disturbance: a push or a block puts some joints further from ū than the configured worst-case
tracking error; the inflated margin then makes the QP infeasible): instead of holding ū against the hand,
the command may move toward the measured position along the straight joint-space segment from ū to q, at
most the rate limit per tick, as far as the nominal command's projection on that segment asks (reason
``disturbance_yield``). Why this is no riskier than holding: the servos pull the arm from q toward the
command along that same segment (first-order tracking, per joint), so a target on the segment sweeps a
subset of the configurations the hold would sweep. Joints within their tracking error keep ū.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .arm_config import ArmShieldConfig, so101_tracking
from .info import FALLBACK, OK, RELAXED, ShieldCounts, ShieldInfo
from .kinematics import ArmKinematics
from .qp import CBFQP
from .qp import INFEASIBLE as QP_INFEASIBLE
from .qp import OK as QP_OK


@dataclass
class ArmState:
    """q: measured joint positions; u_prev: the command applied last tick (None at start: q is used);
    age_s: how old q is."""

    q: np.ndarray
    u_prev: np.ndarray | None = None
    age_s: float = 0.0


class ArmShield:
    def __init__(self, kinematics: ArmKinematics, config: ArmShieldConfig | None = None) -> None:
        self.kin = kinematics
        self.config = c = config or ArmShieldConfig()
        n = kinematics.n_joints
        self.n = n
        names = c.collision_bodies + c.workspace_bodies + tuple(b for p in c.self_pairs for b in p)
        body, centre, radius, labels = kinematics.spheres_for(dict.fromkeys(names), c.sphere_spacing)
        self.sph_body, self.sph_centre, self.sph_radius, self.sph_names = body, centre, radius, labels
        bname = np.array(kinematics.body_names)[body]
        self.obs_sph = np.flatnonzero(np.isin(bname, c.collision_bodies))
        self.ws_sph = np.flatnonzero(np.isin(bname, c.workspace_bodies))
        pa, pb = [], []
        for a, b in c.self_pairs:
            ia, ib = np.flatnonzero(bname == a), np.flatnonzero(bname == b)
            pa.extend(np.repeat(ia, ib.size))
            pb.extend(np.tile(ib, ia.size))
        self.self_a, self.self_b = np.array(pa, dtype=int), np.array(pb, dtype=int)
        self.levmax = self._lever_bounds()
        self.speed = np.broadcast_to(np.asarray(c.max_joint_speed, dtype=float), (n,)).copy()
        self.accel = np.broadcast_to(np.asarray(c.max_joint_accel, dtype=float), (n,)).copy()
        self._prev_ubar: np.ndarray | None = None
        self.e_track = np.broadcast_to(np.asarray(c.tracking_error, dtype=float), (n,)).copy()
        self.e_growth = np.broadcast_to(np.asarray(c.tracking_growth, dtype=float), (n,)).copy()
        self.q_lo = np.maximum(kinematics.lower, kinematics.ctrl_lower) + c.joint_margin
        self.q_hi = np.minimum(kinematics.upper, kinematics.ctrl_upper) - c.joint_margin
        w = np.broadcast_to(np.asarray(c.weights, dtype=float), (n,))
        self.qp = CBFQP(w, backend=c.backend, slack_weight=c.slack_weight, warm_start=c.warm_start)
        self._static_rows()
        self._by_n_obs: dict[int, tuple] = {}
        self._last: np.ndarray | None = None
        self.counts = ShieldCounts()

    def _lever_bounds(self):
        """Upper bound (K, n) of the distance from each sphere centre to each joint origin moving it: the
        sum of the fixed offsets along the kinematic chain between them (rigid links, so configuration-free)."""
        kin = self.kin
        K = self.sph_body.size
        lev = np.zeros((K, self.n))
        for k in range(K):
            b = self.sph_body[k]
            dist = float(np.linalg.norm(self.sph_centre[k]))
            while b >= 0:
                j = kin.body_joint[b]
                if j >= 0:
                    lev[k, j] = dist + float(np.linalg.norm(kin.jpos_local[j]))
                dist += float(np.linalg.norm(kin.T_fixed[b, :3, 3]))
                b = kin.parent[b]
        return lev

    def _static_rows(self):
        """Rows whose structure never changes: each workspace face for each workspace sphere, each self pair.
        Every row is a point pair (p, q) with a unit normal n and h = n·(P_p − P_q) − const; q = K is
        the fixed "ground" point (zero Jacobian) for face and obstacle rows."""
        c, K = self.config, self.sph_body.size
        box = np.array(c.workspace, dtype=float)  # ((xlo, xhi), (ylo, yhi), (zlo, zhi))
        kw = self.ws_sph
        face_n = np.repeat(np.eye(3), 2, axis=0) * np.array([1.0, -1.0] * 3)[:, None]  # inward normals
        face_off = np.array([-box[0, 0], box[0, 1], -box[1, 0], box[1, 1], -box[2, 0], box[2, 1]])
        self._ws_p = np.repeat(kw, 6)
        self._ws_n = np.tile(face_n, (kw.size, 1))
        self._ws_axis = np.tile(np.repeat(np.arange(3), 2), kw.size)
        self._ws_sign = np.tile([1.0, -1.0], 3 * kw.size)
        self._ws_c = np.tile(face_off, kw.size) - self.sph_radius[self._ws_p] - c.clearance
        self._self_r = self.sph_radius[self.self_a] + self.sph_radius[self.self_b] + c.self_clearance
        self._ground = K

    def _rows_for(self, n_obs):
        """Row bookkeeping for n_obs obstacles (cached): kinds, point pair, lever bounds of every row."""
        if n_obs not in self._by_n_obs:
            ko = self.obs_sph
            p = np.concatenate((np.repeat(ko, n_obs), self._ws_p, self.self_a))
            q = np.concatenate((np.full(ko.size * n_obs + self._ws_p.size, self._ground), self.self_b))
            other = np.concatenate((np.tile(np.arange(n_obs), ko.size), np.arange(self._ws_p.size) % 6,
                                    self.self_b))
            kind = np.concatenate((np.zeros(ko.size * n_obs, int), np.ones(self._ws_p.size, int),
                                   np.full(self.self_a.size, 2)))
            lev = np.vstack((self.levmax, np.zeros((1, self.n))))
            self._by_n_obs[n_obs] = (p, q, other, kind, lev[p] + lev[q])
        return self._by_n_obs[n_obs]

    # -- the filter ---------------------------------------------------------------------------------------
    def filter(self, state, u_nom, context=None):
        t0 = time.perf_counter_ns()
        c = self.config
        ctx = context or {}
        q = np.asarray(state.q if hasattr(state, "q") else state["q"], dtype=float)
        up = getattr(state, "u_prev", None) if hasattr(state, "q") else state.get("u_prev")
        age = float(getattr(state, "age_s", 0.0) if hasattr(state, "q") else state.get("age_s", 0.0))
        q_ok = bool(np.isfinite(q).all())
        ubar = q if up is None else np.asarray(up, dtype=float)
        if not np.isfinite(ubar).all():
            ubar = q if q_ok else self._last
        if ubar is None:
            raise ValueError("arm shield: no finite joint position or previous command to hold")
        if not q_ok:
            return self._fallback(ubar, "nonfinite_state", t0)
        if age > c.max_state_age_s:
            return self._fallback(ubar, "stale_state", t0)
        u_nom = np.asarray(u_nom, dtype=float)
        if u_nom.shape != (self.n,):
            raise ValueError(f"arm shield: u_nom must have shape ({self.n},), got {u_nom.shape}")
        if not np.isfinite(u_nom).all():
            return self._fallback(ubar, "nonfinite_nominal", t0)
        obs = ctx.get("obstacles")
        if obs is not None:
            obs = np.asarray(obs, dtype=float).reshape(-1, 4)
            if not np.isfinite(obs).all():
                return self._fallback(ubar, "nonfinite_context", t0)
        e = self._tracking_bound(q, ubar)
        q_meas = q  # (q is reused below for the rows' second points)
        lb, ub = self._box(ubar, e)
        delta = np.maximum(ub - ubar, ubar - lb)
        T, P, h, nrm, p, q, other, kind, lev = self._barriers(ubar, obs, ctx)
        h_min = float(h.min()) if h.size else float("inf")
        w_d, w_de = _curv_weights(np.stack((delta, delta + e)))
        # drop rows no input in the box can violate: with the configuration-free levers L, |∇h| ≤ L, so
        # γ(h − L·e − ½L·w(δ+e)) ≥ L·δ + ½L·w(δ) implies the row (see the module docstring)
        g = c.gamma
        keep = np.flatnonzero(g * h < lev @ (g * e + 0.5 * g * w_de + delta + 0.5 * w_d))
        if not keep.size:
            u = np.clip(u_nom, lb, ub)  # only the box is left: clipping is the exact answer (diagonal W)
            changed = bool((u != u_nom).any())
            return self._done(u if changed else u_nom, OK, changed, h_min, (), 0.0, 0, t0)
        G = self._gradients(T, P, nrm[keep], p[keep], q[keep])
        # μ = |G|·e + ½L·w(δ+e);  rhs = G·ū − γ(h − μ) + ½L·w(δ)
        rhs = G @ ubar + np.abs(G) @ (g * e) - g * h[keep] + lev[keep] @ (0.5 * g * w_de + 0.5 * w_d)
        if self.qp.nominal_ok(u_nom, G, rhs, lb, ub):
            return self._done(u_nom, OK, False, h_min, (), 0.0, rhs.size, t0)
        # relaxing is accepted only inside the safe set (h ≥ 0); outside it, hold
        u, st, slack, act = self.qp.solve(u_nom, G, rhs, lb, ub, c.slack_max, check_nominal=False,
                                          relax=h_min >= 0.0)
        if st == QP_INFEASIBLE:
            u_yield = self._yield(q_meas, ubar, u_nom) if h_min >= 0.0 else None
            if u_yield is not None:
                return self._fallback(u_yield, "disturbance_yield", t0, h_min, rhs.size)
            return self._fallback(ubar, "infeasible" if h_min >= 0.0 else "outside_safe_set", t0, h_min, rhs.size)
        labels = tuple(self._label(kind[keep[i]], p[keep[i]], other[keep[i]]) for i in act)
        return self._done(u, OK if st == QP_OK else RELAXED, True, h_min, labels, slack, rhs.size, t0)

    def _yield(self, q, ubar, u_nom):
        """The yield target (module docstring), or None when no joint is disturbed / nothing to yield."""
        d = q - ubar
        moved = np.abs(d) > self.e_track
        if not moved.any():
            return None
        seg = np.where(moved, d, 0.0)
        n2 = float(seg @ seg)
        along = float((np.where(moved, u_nom - ubar, 0.0)) @ seg) / n2  # projection of the nominal step
        step = np.abs(seg)
        cap = float(np.min(self.speed[moved] * self.config.dt / step[moved]))  # rate limit on every moved joint
        alpha = min(max(along, 0.0), 1.0, cap)
        return None if alpha <= 0.0 else ubar + alpha * seg

    def _tracking_bound(self, q, ubar):
        """Per-joint bound on |q(t) − segment| this tick: the configured worst case at these speed limits, or
        what is measured now (sag, carried-over lag, a push) plus a tick's growth when that is larger."""
        return np.maximum(self.e_track, np.abs(q - ubar) + self.e_growth)

    def _box(self, ubar, e):
        """Bounds on u: joint (and ctrl) ranges tightened by the tracking error — a joint outside may only
        move back —, the rate limit, and the acceleration limit relative to the last step, which never
        excludes holding (u = ū), so the hold fallback is always inside the box."""
        dt = self.config.dt
        last = np.zeros(self.n) if self._prev_ubar is None else ubar - self._prev_ubar
        self._prev_ubar = ubar
        v, a = self.speed * dt, self.accel * dt * dt
        d_lo = np.minimum(0.0, np.maximum(-v, last - a))
        d_hi = np.maximum(0.0, np.minimum(v, last + a))
        lb = np.maximum(ubar + d_lo, np.minimum(self.q_lo + e, ubar))
        ub = np.minimum(ubar + d_hi, np.maximum(self.q_hi - e, ubar))
        return lb, ub

    def reset(self) -> None:
        """Forget the command history (new episode / after a manual move)."""
        self._prev_ubar = None
        self._last = None

    def _barriers(self, ubar, obs, ctx):
        """Barrier values h and unit normals n at ū for every candidate row (obstacle rows first, then
        workspace faces, then self pairs), with the row bookkeeping of `_rows_for`."""
        c = self.config
        T = self.kin.forward(ubar)
        P = self.kin.points(T, self.sph_body, self.sph_centre)
        n_obs = 0 if obs is None else obs.shape[0]
        p, q, other, kind, lev = self._rows_for(n_obs)
        hs, ns = [], []
        if n_obs:
            ko = self.obs_sph
            d = (P[ko][:, None, :] - obs[None, :, :3]).reshape(-1, 3)
            dist = np.sqrt((d * d).sum(axis=1))
            ns.append(d / dist[:, None])
            rsum = (self.sph_radius[ko][:, None] + obs[None, :, 3] + self._obstacle_margin(ctx, n_obs)[None, :])
            hs.append(dist - rsum.ravel() - c.clearance)
        ns.append(self._ws_n)
        hs.append(self._ws_sign * P[self._ws_p, self._ws_axis] + self._ws_c)
        if self.self_a.size:
            d = P[self.self_a] - P[self.self_b]
            dist = np.sqrt((d * d).sum(axis=1))
            ns.append(d / dist[:, None])
            hs.append(dist - self._self_r)
        return T, P, np.concatenate(hs), np.concatenate(ns), p, q, other, kind, lev

    def _gradients(self, T, P, nrm, p, q):
        """∇h (rows, n) at ū of pair rows: n·(J_p − J_q), with J of the ground point = 0."""
        J = np.zeros((P.shape[0] + 1, 3, self.n))
        J[:-1] = self.kin.jacobians(T, self.sph_body, P)
        return (nrm[:, None, :] @ (J[p] - J[q]))[:, 0, :]

    def _obstacle_margin(self, ctx, n_obs):
        c = self.config
        if "obstacles_error" not in ctx and "obstacles_age_s" not in ctx and "obstacles_speed" not in ctx:
            return np.full(n_obs, c.obstacle_speed * c.dt)
        err = np.broadcast_to(np.asarray(ctx.get("obstacles_error", 0.0), dtype=float), (n_obs,))
        age = np.broadcast_to(np.asarray(ctx.get("obstacles_age_s", 0.0), dtype=float), (n_obs,))
        speed = np.broadcast_to(np.asarray(ctx.get("obstacles_speed", c.obstacle_speed), dtype=float), (n_obs,))
        return err + speed * (age + c.dt)

    def _label(self, kind, i0, i1):
        name = self.sph_names[i0]
        if kind == 0:
            return f"{name}|obstacle{i1}"
        if kind == 1:
            return f"{name}|workspace_{'xyz'[i1 // 2]}{('min', 'max')[i1 % 2]}"
        return f"{name}|{self.sph_names[i1]}"

    def _fallback(self, hold, reason, t0, h_min=float("-inf"), rows=0):
        self._prev_ubar = np.array(hold, dtype=float)
        info = ShieldInfo(FALLBACK, True, h_min, (), 0.0, 0.0, reason, rows)
        return self._finish(np.array(hold, dtype=float), info, t0)

    def _done(self, u, status, intervened, h_min, active, slack, rows, t0):
        info = ShieldInfo(status, intervened, h_min, active, slack, 0.0, "" if status == OK else status, rows)
        return self._finish(u, info, t0)

    def _finish(self, u, info, t0):
        self._last = u
        info.solve_us = (time.perf_counter_ns() - t0) * 1e-3
        self.counts.add(info)
        return u, info

    def filter_batch(self, states, u_nom, context=None):
        """One call per problem (the arm QP is 6-D; DAQP per problem beats padding a vectorised solver)."""
        out = [self.filter(s, u, context) for s, u in zip(states, u_nom)]
        return np.array([u for u, _ in out]), [i for _, i in out]


def _curv_weights(delta):
    """w_j = δ_j (2 Σ_{i<j} δ_i + δ_j) (along the last axis): with levers L_j, ½ L·w bounds the
    second-order term of a point's motion when each joint moves by at most δ_j (|∂²c/∂q_i∂q_j| ≤ the
    lever of the later joint, joints numbered from the base)."""
    return delta * (2.0 * np.cumsum(delta, axis=-1) - delta)


def so101_shield(model_path, **config) -> ArmShield:
    """An arm shield for the SO-101 model file (sim/assets/so101.xml) with config overrides; the tracking
    error, unless given, is the one measured at the configured speed limit."""
    if "tracking_error" not in config:
        speed = float(np.max(config.get("max_joint_speed", ArmShieldConfig.max_joint_speed)))
        err, growth = so101_tracking(speed)
        config = {"tracking_error": err, "tracking_growth": growth, **config}
    return ArmShield(ArmKinematics.from_mjcf(model_path), ArmShieldConfig(**config))
