"""The 2-input CBF-QP for a whole batch at once (many agents, or one agent's candidate behaviours).

Same problem and same exactness argument as `qp.solve2`, vectorised: every candidate (projection onto a
violated row, vertex of two rows one of which is violated) of every problem is formed with numpy, all are
checked against all rows, and the cheapest feasible one wins. Problems whose nominal already satisfies
every row skip the enumeration and get the nominal back unchanged.
"""
from __future__ import annotations

import numpy as np

_PAIRS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _pairs(m: int) -> tuple[np.ndarray, np.ndarray]:
    if m not in _PAIRS:
        _PAIRS[m] = np.triu_indices(m, 1)
    return _PAIRS[m]


def solve2_batch(u_nom, w, A, b, lb, ub, tol=1e-9, chunk=512):
    """u_nom (B,2), w (2,), A (B,m,2), b (B,m), lb/ub (B,2) → (u (B,2), feasible (B,), active (B,2) int).

    Rows with A = 0 and b ≤ 0 are padding (always satisfied). `active` holds the indices (< m) of the
    barrier rows active at the answer, −1 where none (bounds are not reported)."""
    B, m = b.shape
    s = np.sqrt(np.asarray(w, dtype=float))
    # Bounds as 4 more rows, everything in scaled coordinates z = √W u with unit normals.
    nx = np.concatenate((A[..., 0] / s[0], np.broadcast_to([1.0, -1.0, 0.0, 0.0], (B, 4))), axis=1)
    ny = np.concatenate((A[..., 1] / s[1], np.broadcast_to([0.0, 0.0, 1.0, -1.0], (B, 4))), axis=1)
    c = np.concatenate((b, lb[:, :1] * s[0], -ub[:, :1] * s[0], lb[:, 1:] * s[1], -ub[:, 1:] * s[1]), axis=1)
    norm = np.hypot(nx, ny)
    valid = norm > 1e-12
    hopeless = np.any(~valid & (c > tol), axis=1)
    safe_norm = np.where(valid, norm, 1.0)
    nx, ny = np.where(valid, nx / safe_norm, 0.0), np.where(valid, ny / safe_norm, 0.0)
    c = np.where(valid, c / safe_norm, -1.0)
    z = u_nom * s
    r = nx * z[:, :1] + ny * z[:, 1:] - c
    viol = r < -tol
    nviol = viol.sum(axis=1)
    need = (nviol > 0) & ~hopeless
    u = u_nom.copy()
    feasible = ~hopeless
    active = np.full((B, 2), -1, dtype=np.int64)
    # Most problems have one or two violated rows: their candidates pair those rows with every row
    # (2 + 2M of them). The rest get every single and pair (M + M(M−1)/2).
    for few in (True, False):
        idx = np.flatnonzero(need & ((nviol <= 2) if few else (nviol > 2)))
        for start in range(0, idx.size, chunk):
            sel = idx[start:start + chunk]
            # move each problem's real rows to the front and cut the padding common to all of them
            order = np.argsort(~valid[sel], axis=1, kind="stable")
            width = max(1, int(valid[sel].sum(axis=1).max()))
            order = order[:, :width]
            g = (lambda a: np.take_along_axis(a[sel], order, axis=1))
            args = (z[sel], g(nx), g(ny), g(c), g(r), g(valid), tol)
            zs, ok, act = _few(*args) if few else _all(*args)
            u[sel] = np.clip(zs / s, lb[sel], ub[sel])
            feasible[sel] = ok
            act = np.where(act >= 0, np.take_along_axis(order, np.clip(act, 0, width - 1), axis=1), -1)
            active[sel] = np.where(act < m, act, -1)
    return u, feasible, active


def _vertices(nxi, nyi, ci, nxj, nyj, cj):
    det = nxi * nyj - nyi * nxj
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    return (ci * nyj - cj * nyi) / det, (nxi * cj - nxj * ci) / det, ok


def _few(z, nx, ny, c, r, valid, tol):
    """Candidates built on the two most violated rows (exact when at most two rows are violated)."""
    n, M = c.shape
    two = np.argpartition(r, 1, axis=1)[:, :2] if M > 1 else np.zeros((n, 1), dtype=np.int64)
    g = (lambda a: np.take_along_axis(a, two, axis=1))
    nxv, nyv, cv, rv = g(nx), g(ny), g(c), g(r)
    sx, sy = z[:, :1] - rv * nxv, z[:, 1:] - rv * nyv
    px, py, ok_p = _vertices(nxv[:, :, None], nyv[:, :, None], cv[:, :, None],
                             nx[:, None, :], ny[:, None, :], c[:, None, :])
    ok_p &= valid[:, None, :] & (rv[:, :, None] < -tol)
    k2 = two.shape[1]
    X = np.concatenate((sx, px.reshape(n, k2 * M)), axis=1)
    Y = np.concatenate((sy, py.reshape(n, k2 * M)), axis=1)
    ok = np.concatenate((rv < -tol, ok_p.reshape(n, k2 * M)), axis=1)
    ai = np.concatenate((two, np.repeat(two, M, axis=1)), axis=1)
    aj = np.concatenate((np.full((n, k2), -1), np.tile(np.arange(M), (n, k2))), axis=1)
    return _pick(z, nx, ny, c, X, Y, ok, ai, aj, tol)


def _all(z, nx, ny, c, r, valid, tol):
    """Every projection onto a violated row and every vertex of two rows, one of them violated."""
    n, M = c.shape
    I, J = _pairs(M)
    viol = r < -tol
    sx, sy = z[:, :1] - r * nx, z[:, 1:] - r * ny
    px, py, ok_p = _vertices(nx[:, I], ny[:, I], c[:, I], nx[:, J], ny[:, J], c[:, J])
    ok_p &= valid[:, I] & valid[:, J] & (viol[:, I] | viol[:, J])
    X, Y = np.concatenate((sx, px), axis=1), np.concatenate((sy, py), axis=1)
    ok = np.concatenate((valid & viol, ok_p), axis=1)
    ai = np.broadcast_to(np.concatenate((np.arange(M), I)), X.shape)
    aj = np.broadcast_to(np.concatenate((np.full(M, -1), J)), X.shape)
    return _pick(z, nx, ny, c, X, Y, ok, ai, aj, tol)


def _pick(z, nx, ny, c, X, Y, ok, ai, aj, tol):
    """The cheapest candidate that satisfies every row (cost = squared distance in scaled space)."""
    with np.errstate(over="ignore", invalid="ignore"):  # far vertices of near-parallel rows: cost inf
        cost = np.where(ok, (X - z[:, :1]) ** 2 + (Y - z[:, 1:]) ** 2, np.inf)
    slack = X[:, :, None] * nx[:, None, :]
    slack += Y[:, :, None] * ny[:, None, :]
    slack -= c[:, None, :]
    cost[~np.all(slack >= -10 * tol, axis=2)] = np.inf
    k = np.argmin(cost, axis=1)
    rows = np.arange(X.shape[0])
    zs = np.stack((X[rows, k], Y[rows, k]), axis=1)
    return zs, np.isfinite(cost[rows, k]), np.stack((ai[rows, k], aj[rows, k]), axis=1)
