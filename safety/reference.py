"""CVXPY reference solver for the shield's QP: for tests and the benchmark's baseline only (slow, dev dependency)."""
from __future__ import annotations

import numpy as np

_INF = 1e30


class CvxpyBackend:
    """The same backend call as `backends.py`, through a parametrised CVXPY problem per shape (DPP, so
    repeated solves skip canonicalisation). Solved with Clarabel (interior point, accurate)."""

    name = "cvxpy"

    def __init__(self) -> None:
        import cvxpy

        self._cp = cvxpy
        self._problems: dict[tuple[int, int], tuple] = {}

    def _problem(self, n: int, m: int):
        cp = self._cp
        key = (n, m)
        if key not in self._problems:
            x = cp.Variable(n)
            sq = cp.Parameter(n, nonneg=True)  # sqrt of the diagonal Hessian
            f = cp.Parameter(n)
            A = cp.Parameter((m, n))
            b = cp.Parameter(m)
            lb = cp.Parameter(n)
            ub = cp.Parameter(n)
            cons = [lb <= x, x <= ub]
            if m:
                cons.append(A @ x >= b)
            prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(cp.multiply(sq, x)) + f @ x), cons)
            self._problems[key] = (prob, x, sq, f, A, b, lb, ub)
        return self._problems[key]

    def solve(self, hdiag, f, A, b, lb, ub, warm=None):
        n, m = hdiag.shape[0], A.shape[0]
        prob, x, sq, fp, Ap, bp, lbp, ubp = self._problem(n, m)
        sq.value = np.sqrt(hdiag)
        fp.value = f
        if m:
            Ap.value = A
            bp.value = b
        # Clarabel dislikes 1e30 "infinite" bounds; a loose finite box is equivalent for these problems.
        lbp.value = np.maximum(lb, -1e6)
        ubp.value = np.minimum(ub, 1e6)
        try:
            prob.solve(solver=self._cp.CLARABEL)
        except self._cp.error.SolverError:
            return np.zeros(n), False
        ok = prob.status in ("optimal", "optimal_inaccurate") and x.value is not None
        return (np.asarray(x.value, dtype=float) if ok else np.zeros(n)), ok
