"""The CBF-QP: the smallest weighted change of a nominal command that satisfies the barrier rows.

    minimise (u − u_nom)ᵀ W (u − u_nom)   s.t.  A u ≥ b,  lb ≤ u ≤ ub         (W diagonal, positive)

Solved in the cheapest exact way that fits the problem:
1. the nominal already satisfies everything → returned unchanged (bit for bit);
2. one row, answer inside the box → closed form;
3. otherwise a dense QP backend: DAQP by default (warm-started from the last active set), or the exact
   2-input active-set enumeration `solve2` ("exact2"; its vectorised twin `qp_batch.solve2_batch` is
   what `filter_batch` uses). On one problem DAQP's C loop beats the plain-Python enumeration
   (≈4 µs vs ≈18 µs for 2 inputs × 12 rows on the dev VM), so "auto" picks DAQP.
If the hard problem is infeasible, best-effort ("soft") rows are dropped first, then a relaxed problem with
one bounded slack shared by all rows and a big penalty is solved; either answer is reported as RELAXED,
never OK. If even that is infeasible the caller
must fall back (status INFEASIBLE).
"""
from __future__ import annotations

import math

import numpy as np

from .backends import make_backend

OK, RELAXED, INFEASIBLE = 0, 1, 2
STATUS_NAMES = ("ok", "relaxed", "infeasible")
_INF = 1e30


def solve2(u0, u1, w0, w1, rows, tol=1e-9, warm=None):
    """Exact QP in two variables: min w0(x0−u0)² + w1(x1−u1)² s.t. a0·x0 + a1·x1 ≥ b for (a0, a1, b) in rows.

    Bounds come in as rows. Returns (x0, x1, active) with `active` a tuple of row indices, or None when
    the rows are infeasible. Exactness: at the optimum at least one active row is violated by the nominal
    (Σλᵢ(aᵢ·u_nom − bᵢ) = −‖x* − u_nom‖²_W < 0), and in 2-D at most two independent rows are needed, so the
    candidates are the projections onto each violated row and the vertices of each violated row with any
    other row. Candidates are checked in order of cost and the first feasible one is returned: that is the
    cheapest feasible candidate, i.e. every candidate is compared (the pitfall of returning the first
    feasible *projection* is avoided). `warm` = an active set from a previous call, tried first and accepted
    only if it passes the KKT test (feasible, multipliers ≥ 0), which proves optimality.
    """
    s0, s1 = math.sqrt(w0), math.sqrt(w1)
    z0, z1 = u0 * s0, u1 * s1
    nrows = []  # unit normals in scaled coordinates z = √W u: (nx, ny, c, residual)
    violated = []
    for k, (a0, a1, b) in enumerate(rows):
        nx, ny = a0 / s0, a1 / s1
        norm = math.hypot(nx, ny)
        if norm < 1e-12:
            if b > tol:
                return None  # 0 ≥ b > 0: infeasible whatever u is
            nrows.append((0.0, 0.0, -1.0, 1.0))
            continue
        nx, ny, c = nx / norm, ny / norm, b / norm
        r = nx * z0 + ny * z1 - c
        nrows.append((nx, ny, c, r))
        if r < -tol:
            violated.append(k)
    if not violated:
        return u0, u1, ()
    ftol = 10 * tol

    def feasible(zx, zy):
        for nx, ny, c, _ in nrows:
            if nx * zx + ny * zy - c < -ftol:
                return False
        return True

    def vertex(i, j):
        nxi, nyi, ci, _ = nrows[i]
        nxj, nyj, cj, _ = nrows[j]
        det = nxi * nyj - nyi * nxj
        if abs(det) < 1e-12:
            return None
        return (ci * nyj - cj * nyi) / det, (nxi * cj - nxj * ci) / det, det

    if warm:
        hit = _kkt_candidate(warm, nrows, z0, z1, vertex)
        if hit is not None and feasible(hit[0], hit[1]):
            return hit[0] / s0, hit[1] / s1, tuple(warm)
    cands = []
    vset = set(violated)
    for i in violated:
        nx, ny, _, r = nrows[i]
        cands.append((r * r, z0 - r * nx, z1 - r * ny, (i,)))
        for j in range(len(nrows)):
            if j == i or (j in vset and j < i) or nrows[j][0] == 0.0 == nrows[j][1]:
                continue
            v = vertex(i, j)
            if v is not None:
                cands.append(((v[0] - z0) ** 2 + (v[1] - z1) ** 2, v[0], v[1], (i, j)))
    cands.sort(key=lambda t: t[0])
    for _, zx, zy, act in cands:
        if feasible(zx, zy):
            return zx / s0, zy / s1, act
    return None


def _kkt_candidate(active, nrows, z0, z1, vertex):
    """The point of a guessed active set if its multipliers are ≥ 0 (so feasible ⇒ optimal), else None."""
    if len(active) == 1:
        nx, ny, _, r = nrows[active[0]]
        return (z0 - r * nx, z1 - r * ny) if r <= 0.0 else None
    i, j = active
    v = vertex(i, j)
    if v is None:
        return None
    zx, zy, det = v
    dx, dy = zx - z0, zy - z1
    nxi, nyi = nrows[i][0], nrows[i][1]
    nxj, nyj = nrows[j][0], nrows[j][1]
    li = (dx * nyj - dy * nxj) / det
    lj = (nxi * dy - nyi * dx) / det
    return (zx, zy) if li >= -1e-12 and lj >= -1e-12 else None


class CBFQP:
    """One shield's QP solver: fixed input weights and backend, warm start kept between calls.

    `backend`: "auto" (closed form for one row, DAQP otherwise; DAQP measured fastest, `rtctl bench
    shield`), "exact2" (`solve2`, 2 inputs only), "daqp", "quadprog", "proxsuite", "osqp", or "cvxpy"
    (the reference). The relaxed problem goes to the same backend (DAQP for "auto"/"exact2").
    """

    def __init__(self, weights, backend: str = "auto", slack_weight: float = 1e6, tol: float = 1e-9,
                 warm_start: bool = False):
        self.w = np.asarray(weights, dtype=float)
        if self.w.ndim != 1 or not np.all(self.w > 0) or not np.all(np.isfinite(self.w)):
            raise ValueError(f"QP weights must be a vector of finite positive numbers, got {weights!r}")
        self.n = self.w.shape[0]
        if backend == "exact2" and self.n != 2:
            raise ValueError("backend 'exact2' solves 2-input problems only")
        self.backend_name = backend
        self._auto = backend == "auto"
        self._exact2 = backend == "exact2"
        general = "daqp" if backend in ("auto", "exact2") else backend
        self._backend = make_backend(general)
        self._daqp = self._backend._solve if general == "daqp" else None
        self.hdiag = 2.0 * self.w
        self._H = np.diag(self.hdiag)
        self._inf = np.full(64, _INF)
        self.slack_weight = float(slack_weight)
        self.tol = tol
        self.warm_start = warm_start
        self._warm2: tuple = ()
        self._warm_rows: np.ndarray | None = None

    def nominal_ok(self, u_nom, A, b, lb, ub) -> bool:
        return bool((u_nom >= lb).all() and (u_nom <= ub).all()
                    and (b.shape[0] == 0 or (A @ u_nom >= b - self.tol).all()))

    def solve(self, u_nom, A, b, lb, ub, slack_max, soft=None, check_nominal=True, relax=True):
        """Returns (u, status, max_slack, active_row_indices). Inputs must be finite (the shield checks).

        `soft`: mask of best-effort rows (the vehicle's rear-neighbour courtesy rows): when the rows
        cannot all hold, these are dropped first (RELAXED with slack 0), before any hard row is relaxed.
        `check_nominal=False` when the caller has already found that the nominal violates something;
        `relax=False` when a relaxed answer would not be used (the caller falls back instead)."""
        if check_nominal and self.nominal_ok(u_nom, A, b, lb, ub):
            return u_nom, OK, 0.0, ()
        u, st, slack, act = self._solve_hard(u_nom, A, b, lb, ub)
        if st == OK:
            return u, st, slack, act
        hard = None
        if soft is not None and soft.any():
            hard = np.flatnonzero(~soft)
            A, b = A[hard], b[hard]
            u, st, slack, act = self._solve_hard(u_nom, A, b, lb, ub)
            if st == OK:
                return u, RELAXED, 0.0, tuple(hard[list(act)].tolist())
        if not relax:
            return u, INFEASIBLE, float("inf"), ()
        u, st, slack, act = self._relaxed(u_nom, A, b, lb, ub, slack_max)
        return u, st, slack, act if hard is None else tuple(hard[list(act)].tolist())

    def _solve_hard(self, u_nom, A, b, lb, ub):
        """The QP without slack: (u, OK, 0, active) or (u_nom, INFEASIBLE, inf, ())."""
        m = b.shape[0]
        if m == 0:
            return np.clip(u_nom, lb, ub), OK, 0.0, ()  # the box alone: clipping is exact (diagonal W)
        if self._auto and m == 1:
            u = self._closed_form(u_nom, A[0], float(b[0]))
            if (u >= lb - self.tol).all() and (u <= ub + self.tol).all():
                return np.clip(u, lb, ub), OK, 0.0, (0,)
        if self._exact2:
            res = self._solve2(u_nom, A, b, lb, ub)
            if res is not None:
                return res
        elif self._daqp is not None:
            if m > self._inf.shape[0]:
                self._inf = np.full(2 * m, _INF)
            args = (self._H, -self.hdiag * u_nom, A, np.concatenate((ub, self._inf[:m])), np.concatenate((lb, b)))
            warm = self._warm_rows
            if self.warm_start and warm is not None and warm.shape[0] == m and warm.any():
                sense = np.zeros(self.n + m, dtype=np.int32)
                sense[self.n:][warm] = 1
                x, _, flag, info = self._daqp(*args, sense)
                if flag != 1:
                    x, _, flag, info = self._daqp(*args)
            else:
                x, _, flag, info = self._daqp(*args)
            if flag == 1:  # optimal within DAQP's primal tolerance (1e-6)
                act = info["lam"][self.n:] != 0.0
                self._warm_rows = act
                return x, OK, 0.0, tuple(np.flatnonzero(act).tolist())
        else:
            x, ok = self._backend.solve(self.hdiag, -self.hdiag * u_nom, A, b, lb, ub)
            if ok and self._satisfies(x, A, b, lb, ub):
                act = np.abs(A @ x - b) <= 1e-7 * (1.0 + np.abs(b))
                return x, OK, 0.0, tuple(np.flatnonzero(act).tolist())
        return u_nom, INFEASIBLE, float("inf"), ()

    def _closed_form(self, u_nom, a, b):
        winv_a = a / self.w
        viol = max(0.0, b - float(a @ u_nom))
        return u_nom + (viol / float(a @ winv_a)) * winv_a

    def _solve2(self, u_nom, A, b, lb, ub):
        rows = list(zip(A[:, 0].tolist(), A[:, 1].tolist(), b.tolist()))
        m = len(rows)
        for k, (lo, hi) in enumerate(zip(lb.tolist(), ub.tolist())):
            if lo > -_INF:
                rows.append((1.0, 0.0, lo) if k == 0 else (0.0, 1.0, lo))
            if hi < _INF:
                rows.append((-1.0, 0.0, -hi) if k == 0 else (0.0, -1.0, -hi))
        warm = self._warm2 if self.warm_start and all(i < len(rows) for i in self._warm2) else ()
        w0, w1 = float(self.w[0]), float(self.w[1])
        res = solve2(float(u_nom[0]), float(u_nom[1]), w0, w1, rows, self.tol, warm)
        if res is None:
            return None
        x0, x1, act = res
        self._warm2 = act
        u = np.clip(np.array((x0, x1)), lb, ub)  # clip only removes round-off at a bound
        return u, OK, 0.0, tuple(i for i in act if i < m)

    def _satisfies(self, x, A, b, lb, ub, tol=1e-6):
        return bool(np.all(np.isfinite(x)) and np.all(x >= lb - tol) and np.all(x <= ub + tol)
                    and (A.shape[0] == 0 or np.all(A @ x >= b - tol * (1.0 + np.abs(b)))))

    def _relaxed(self, u_nom, A, b, lb, ub, slack_max):
        """Bounded slack, big penalty: every row loosened by one shared t (0 ≤ t ≤ slack_max, cost ρt²):
        the least-violation answer, in a QP of n + 1 variables however many rows there are."""
        m, n = A.shape
        hd = np.append(self.hdiag, 2.0 * self.slack_weight)
        f = np.append(-self.hdiag * u_nom, 0.0)
        Aa = np.hstack((A, np.ones((m, 1))))
        lba, uba = np.append(lb, 0.0), np.append(ub, float(slack_max))
        x, ok = self._backend.solve(hd, f, Aa, b, lba, uba)
        if not ok or not self._satisfies(x, Aa, b, lba, uba):
            return np.clip(u_nom, lb, ub), INFEASIBLE, float("inf"), ()
        u, t = np.clip(x[:n], lb, ub), max(float(x[n]), 0.0)
        act = np.abs(A @ u + t - b) <= 1e-7 * (1.0 + np.abs(b))
        return u, RELAXED, t, tuple(np.flatnonzero(act).tolist())
