"""`VehicleShield.filter_batch`: the same rows as `VehicleShield.filter`, built with numpy for B problems at
once and solved by the vectorised exact 2-input QP (`qp_batch.solve2_batch`). Problems whose hard QP is
infeasible get the relaxed QP one by one (rare); bad input, stale state or an infeasible relaxed QP get
the fallback (full braking in lane)."""
from __future__ import annotations

import time

import numpy as np

from .info import BatchInfo
from .intersection import crossing_gaps
from .qp import RELAXED
from .qp_batch import solve2_batch
from .vehicle_model import NB_PRESENT, NB_PSI
from .vehicle_rows import (accel_box, front_row, kappa_box, lane_spans, lanes_spanned, lateral_rows,
                           neighbour_row)

_STEER_CLIP = 1.5


def _table(t, B, what):
    if t is None:
        return None
    t = np.asarray(t, dtype=float)
    if t.ndim == 2:
        t = np.broadcast_to(t, (B, *t.shape))
    if t.ndim != 3 or t.shape[0] != B:
        raise ValueError(f"{what} must be (N, cols) or (B, N, cols) with B = {B}, got shape {t.shape}")
    return t


def filter_batch(sh, states, u_nom, neighbours=None, crossing=None, target_lane=None, state_age_s=None):
    t0 = time.perf_counter_ns()
    p, k, cfg = sh.params, sh.k, sh.config
    X = np.asarray(states, dtype=float)
    U = np.asarray(u_nom, dtype=float)
    if X.ndim != 2 or X.shape[1] != 4 or U.shape != (X.shape[0], 2):
        raise ValueError(f"states must be (B, 4) and u_nom (B, 2), got {X.shape} and {U.shape}")
    B = X.shape[0]
    nb = _table(neighbours, B, "neighbours")
    cx = _table(crossing, B, "crossing")
    bad = ~np.isfinite(X).all(axis=1) | ~np.isfinite(U).all(axis=1)
    if nb is not None:
        bad |= ~np.isfinite(nb).all(axis=(1, 2))
        nb = np.nan_to_num(nb)
    if cx is not None:
        bad |= ~np.isfinite(cx).all(axis=(1, 2))
        cx = np.nan_to_num(cx)
    if state_age_s is not None:
        bad |= np.asarray(state_age_s, dtype=float) > cfg.max_state_age_s
    X = np.nan_to_num(X)
    s, y, psi, v = X[:, 0], X[:, 1], X[:, 2], np.maximum(X[:, 3], 0.0)
    a_n = np.nan_to_num(U[:, 0])
    d_n = np.nan_to_num(U[:, 1])
    kap_n = np.tan(np.clip(d_n, -_STEER_CLIP, _STEER_CLIP)) / p.wheelbase
    a_lo, a_hi = accel_box(v, k)
    k_lo, k_hi = kappa_box(psi, v, a_lo, a_hi, k)
    a_n = np.where((a_n >= -p.brake_max) & (a_n < a_lo), a_lo, a_n)  # "stop within the tick" ≡ harder
    sp, cp = np.sin(psi), np.cos(psi)
    occ_lo, occ_hi = lanes_spanned(y, sp, k)
    tl = occ_lo if target_lane is None else np.clip(np.asarray(target_lane), 0, k.n_lanes - 1)
    spans = lane_spans(occ_lo, occ_hi, tl)
    col = (lambda x: x[:, None])
    admitted = np.ones(B, dtype=bool)
    nb_cols = None
    if nb is not None and nb.shape[1]:
        ca, ck, rhs, h, (in_occ, in_ext, in_wide), front = neighbour_row(
            col(s), col(v), col(cp), col(np.clip(a_n, a_lo, a_hi)), col(a_lo), col(a_hi),
            tuple((col(lo), col(hi)) for lo, hi in spans), [*(nb[..., j] for j in range(9)), np.sin(nb[..., NB_PSI])],
            k)
        present = nb[..., NB_PRESENT] > 0
        admitted = ~np.any(present & in_wide & ~in_occ & (h < 0.0), axis=1)
        rel = present & (in_occ | (in_ext & admitted[:, None]))
        nb_cols = [np.where(rel, r, pad) for r, pad in zip((ca, ck, rhs, h), (0.0, 0.0, -1.0, np.inf))]
        nb_soft = ~front  # rear-neighbour rows are best effort (see VehicleShield.filter)
    lane_lo = np.where(admitted, spans[1][0], occ_lo)
    lane_hi = np.where(admitted, spans[1][1], occ_hi)
    lat = lateral_rows(y, sp, cp, v, a_lo, a_hi, lane_lo, lane_hi, k)
    cols = [np.stack(np.broadcast_arrays(*(r[i] for r in lat)), axis=1) for i in range(4)]
    softs = [np.zeros((B, 4), dtype=bool)]
    if nb_cols is not None:
        cols = [np.concatenate((c, r), axis=1) for c, r in zip(cols, nb_cols)]
        softs.append(nb_soft)
    if cx is not None and cx.shape[1]:
        gap, use = crossing_gaps(s, v, cx, p, cfg)
        ca, ck, rhs, h = front_row(gap, col(v), 0.0, p.brake_max, k, col(a_lo), col(a_hi), 0.0)
        cols = [np.concatenate((c, np.where(use, r, pad)), axis=1)
                for c, r, pad in zip(cols, np.broadcast_arrays(ca, ck, rhs, h), (0.0, 0.0, -1.0, np.inf))]
        softs.append(np.zeros(use.shape, dtype=bool))
    CA, CK, RHS, H = cols
    A = np.stack((CA, CK), axis=2)
    lb = np.stack((a_lo, k_lo), axis=1)
    ub = np.stack((a_hi, k_hi), axis=1)
    un = np.stack((a_n, kap_n), axis=1)
    u, feasible, _ = solve2_batch(un, sh.weights, A, RHS, lb, ub)
    status = np.zeros(B, dtype=np.int8)
    slack = np.zeros(B)
    soft = np.concatenate(softs, axis=1)
    padding = (CA == 0.0) & (CK == 0.0) & (RHS <= 0.0)
    todo = np.flatnonzero(~feasible & ~bad & np.any(soft & ~padding, axis=1))
    if todo.size:  # drop the best-effort rows, vectorised again
        drop = soft[todo]
        u2, ok2, _ = solve2_batch(un[todo], sh.weights, np.where(drop[..., None], 0.0, A[todo]),
                                  np.where(drop, -1.0, RHS[todo]), lb[todo], ub[todo])
        u[todo[ok2]], status[todo[ok2]], feasible[todo[ok2]] = u2[ok2], 1, True
    # relaxing the hard rows is accepted only inside the safe set (else: brake in lane); rare, so per problem
    inside = np.all(soft | padding | (H >= 0.0), axis=1)
    bad |= ~feasible & ~inside
    for i in np.flatnonzero(~feasible & ~bad):
        keep = ~padding[i] & ~soft[i]
        ui, st, sl, _ = sh.qp._relaxed(un[i], A[i][keep], RHS[i][keep], lb[i], ub[i], cfg.slack_max)
        if st == RELAXED:
            u[i], status[i], slack[i] = ui, 1, sl
        else:
            bad[i] = True
    out = np.stack((u[:, 0], np.arctan(u[:, 1] * p.wheelbase)), axis=1)
    intervened = np.any(u != un, axis=1) | (status > 0)
    unchanged = ~intervened & ~bad
    out[unchanged] = np.stack((np.where(np.isfinite(U[:, 0]), U[:, 0], 0.0), d_n), axis=1)[unchanged]
    if bad.any():
        fa, fd = sh.fallback_command(y[bad], psi[bad], v[bad])
        out[bad] = np.stack((fa, fd), axis=1)
        status[bad], intervened[bad] = 2, True
    info = BatchInfo(status, intervened, H.min(axis=1), slack, (time.perf_counter_ns() - t0) * 1e-3, admitted)
    sh.counts.add_batch(info)
    return out, info
