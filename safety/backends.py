"""Dense QP backends behind one call: min ½xᵀdiag(H)x + fᵀx  s.t.  A x ≥ b,  lb ≤ x ≤ ub.

Every backend returns `(x, ok)`; `ok` is False when the solver reports infeasibility or fails, never an
exception. DAQP is the default (measured fastest on the shield's problems, see `rtctl bench shield`);
quadprog, proxsuite and OSQP are there to be measured against and for users who have them. The solver
packages are imported on first use, so importing `rtctl.safety` costs nothing.
"""
from __future__ import annotations

import numpy as np

_INF = 1e30


class DaqpBackend:
    """Dual active-set (DAQP). Warm start: rows active last time are passed as the initial working set."""

    name = "daqp"

    def __init__(self) -> None:
        import daqp

        self._solve = daqp.solve

    def solve(self, hdiag, f, A, b, lb, ub, warm=None):
        m = A.shape[0]
        bupper = np.concatenate((ub, np.full(m, _INF)))
        blower = np.concatenate((lb, b))
        if warm is not None and warm.any():
            sense = np.zeros(lb.shape[0] + m, dtype=np.int32)
            sense[lb.shape[0]:][warm] = 1
            x, _, flag, _ = self._solve(np.diag(hdiag), f, A, bupper, blower, sense)
            if flag > 0:
                return x, True
        x, _, flag, _ = self._solve(np.diag(hdiag), f, A, bupper, blower)
        return x, flag > 0


class QuadprogBackend:
    """Goldfarb–Idnani dual active set (quadprog); bounds go in as extra rows."""

    name = "quadprog"

    def __init__(self) -> None:
        import quadprog

        self._solve = quadprog.solve_qp

    def solve(self, hdiag, f, A, b, lb, ub, warm=None):
        n = hdiag.shape[0]
        eye = np.eye(n)
        fin_lo, fin_hi = lb > -_INF, ub < _INF
        C = np.vstack((A, eye[fin_lo], -eye[fin_hi])).T
        rhs = np.concatenate((b, lb[fin_lo], -ub[fin_hi]))
        try:
            x = self._solve(np.diag(hdiag), -f, C, rhs, 0)[0]
        except ValueError:  # "constraints are inconsistent"
            return np.zeros(n), False
        return x, True


class ProxsuiteBackend:
    """ProxQP dense (proxsuite); one solver object per problem shape, re-initialised per call."""

    name = "proxsuite"

    def __init__(self) -> None:
        import proxsuite

        self._dense = proxsuite.proxqp.dense
        self._qps: dict[tuple[int, int], object] = {}

    def solve(self, hdiag, f, A, b, lb, ub, warm=None):
        n, m = hdiag.shape[0], A.shape[0]
        qp = self._qps.get((n, m))
        if qp is None:
            qp = self._qps[(n, m)] = self._dense.QP(n, 0, m, True)
            qp.settings.eps_abs, qp.settings.eps_rel = 1e-12, 0.0  # 1e-9 stops 2e-5 short at a bound
            qp.settings.verbose = False
        qp.init(np.diag(hdiag), f, None, None, A, b, np.full(m, _INF), lb, ub)
        qp.solve()
        ok = qp.results.info.status.name == "PROXQP_SOLVED"
        return qp.results.x.copy(), ok


class OsqpBackend:
    """ADMM (OSQP) with polishing; one workspace per problem shape (dense pattern), updated per call."""

    name = "osqp"

    def __init__(self) -> None:
        import osqp
        from scipy import sparse

        self._osqp, self._sparse = osqp, sparse
        self._work: dict[tuple[int, int], object] = {}

    def solve(self, hdiag, f, A, b, lb, ub, warm=None):
        n, m = hdiag.shape[0], A.shape[0]
        Afull = np.vstack((A, np.eye(n)))
        l = np.concatenate((b, lb))
        u = np.concatenate((np.full(m, np.inf), ub))
        key = (n, m)
        # The dense pattern keeps the sparsity fixed so the workspace can be updated, not rebuilt.
        pattern = np.ones_like(Afull)
        w = self._work.get(key)
        if w is None:
            w = self._osqp.OSQP()
            w.setup(self._sparse.diags(hdiag, format="csc"), f, self._sparse.csc_matrix(pattern), l, u,
                    verbose=False, polishing=True, eps_abs=1e-9, eps_rel=1e-9, max_iter=20000)
            self._work[key] = w
        w.update(q=f, l=l, u=u, Ax=Afull.T.ravel())  # column-major values of the dense pattern
        w.update(Px=hdiag)
        r = w.solve(raise_error=False)
        ok = r.info.status_val in (1, 2)  # solved, solved inaccurate
        return (np.asarray(r.x, dtype=float) if ok else np.zeros(n)), ok


BACKENDS = {"daqp": DaqpBackend, "quadprog": QuadprogBackend, "proxsuite": ProxsuiteBackend,
            "osqp": OsqpBackend}


def make_backend(name: str):
    """A backend by name; "cvxpy" is the slow reference used by tests and the benchmark."""
    if name == "cvxpy":
        from .reference import CvxpyBackend

        return CvxpyBackend()
    if name not in BACKENDS:
        raise ValueError(f"QP backend {name!r} unknown; choose one of {sorted(BACKENDS) + ['cvxpy']}")
    try:
        return BACKENDS[name]()
    except ImportError as exc:
        raise ValueError(f"QP backend {name!r} needs the package it wraps: {exc}") from exc
