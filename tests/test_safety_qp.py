"""The CBF-QP core: every solver path agrees with CVXPY, already-safe commands pass bit for bit,
infeasible problems are reported as relaxed or infeasible, never as ok."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtctl.safety.qp import INFEASIBLE, OK, RELAXED, CBFQP, solve2
from rtctl.safety.qp_batch import solve2_batch


def random_problem(rng, n, m):
    """A feasible QP: rows satisfied with room by a point inside the box, nominal far outside."""
    A = rng.normal(size=(m, n))
    x0 = rng.uniform(-0.5, 0.5, n)
    b = A @ x0 - rng.uniform(0.0, 1.0, m)
    return rng.normal(size=n) * 3.0, A, b, -2.0 * np.ones(n), 2.0 * np.ones(n)


@pytest.fixture(scope="module")
def reference():
    return {n: CBFQP(np.linspace(1.0, 3.0, n), "cvxpy") for n in (2, 6)}


CASES = [(b, n, m) for b in ("auto", "exact2", "daqp", "quadprog", "proxsuite", "osqp")
         for n, m in ((2, 1), (2, 8), (6, 24)) if b != "exact2" or n == 2]


@pytest.mark.parametrize("backend,n,m", CASES)
def test_backends_match_cvxpy(backend, n, m, reference):
    rng = np.random.default_rng(n * 100 + m)
    q = CBFQP(np.linspace(1.0, 3.0, n), backend)
    for _ in range(25):
        un, A, b, lb, ub = random_problem(rng, n, m)
        u, st, slack, _ = q.solve(un, A, b, lb, ub, 0.1)
        ur, str_, _, _ = reference[n].solve(un, A, b, lb, ub, 0.1)
        assert st == str_ == OK and slack == 0.0
        assert np.allclose(u, ur, atol=2e-5), (backend, u, ur)
        assert np.all(A @ u >= b - 1e-6) and np.all(u >= lb - 1e-9) and np.all(u <= ub + 1e-9)


def test_already_safe_command_is_returned_unchanged():
    rng = np.random.default_rng(0)
    for backend in ("auto", "exact2", "osqp"):
        q = CBFQP([1.0, 2.0], backend)
        un = np.array([0.3, -0.2])
        A = rng.normal(size=(5, 2))
        b = A @ un - 0.1
        u, st, _, act = q.solve(un, A, b, -np.ones(2), np.ones(2), 0.1)
        assert u is un and st == OK and act == ()


def test_one_row_closed_form_is_the_weighted_projection():
    q = CBFQP([1.0, 4.0])
    u, st, _, act = q.solve(np.zeros(2), np.array([[1.0, 1.0]]), np.array([1.0]), -5 * np.ones(2), 5 * np.ones(2), 0.1)
    # min x² + 4y² on x + y = 1 → x = 0.8, y = 0.2
    assert st == OK and act == (0,) and np.allclose(u, [0.8, 0.2])


def test_solve2_compares_every_candidate():
    # Optimum at the vertex of two rows that are not the first single projection found feasible:
    # the pitfall from the research notes (returning early) would give a worse point.
    rows = [(1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 1.5)]
    x0, x1, act = solve2(0.0, 0.0, 1.0, 1.0, rows)
    assert (x0, x1) == pytest.approx((1.0, 1.0)) and set(act) == {0, 1}


def test_infeasible_rows_are_relaxed_within_the_slack_bound_or_reported_infeasible():
    q = CBFQP([1.0, 1.0])
    A = np.array([[1.0, 0.0], [-1.0, 0.0]])
    lb, ub = -5 * np.ones(2), 5 * np.ones(2)
    # x ≥ 1 and x ≤ 0.98: 0.02 apart, a slack of 0.01 per row closes the gap
    u, st, slack, _ = q.solve(np.zeros(2), A, np.array([1.0, -0.98]), lb, ub, 0.05)
    assert st == RELAXED and 0.0 < slack <= 0.05 + 1e-9
    assert np.all(A @ u >= np.array([1.0, -0.98]) - slack - 1e-7)
    u, st, slack, _ = q.solve(np.zeros(2), A, np.array([1.0, 0.0]), lb, ub, 0.05)
    assert st == INFEASIBLE and np.all(np.isfinite(u))


def test_batch_solver_matches_the_scalar_one():
    rng = np.random.default_rng(3)
    B, m = 400, 7
    A = rng.normal(size=(B, m, 2))
    A[:, -2:] = 0.0  # padding rows
    x0 = rng.uniform(-0.5, 0.5, (B, 2))
    b = np.einsum("bmi,bi->bm", A, x0) - rng.uniform(0.0, 1.0, (B, m))
    b[:, -2:] = -1.0
    un = rng.normal(size=(B, 2)) * 3
    lb, ub = -2 * np.ones((B, 2)), 2 * np.ones((B, 2))
    u, feas, _ = solve2_batch(un, np.array([1.0, 3.0]), A, b, lb, ub)
    q = CBFQP([1.0, 3.0])
    assert feas.all()
    for i in range(B):
        ui, st, _, _ = q.solve(un[i], A[i], b[i], lb[i], ub[i], 0.1)
        assert st == OK and np.allclose(u[i], ui, atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 9))
def test_exact2_is_optimal_kkt(seed, m):
    """Any answer of solve2 is feasible and no feasible point nearby is cheaper (checked against DAQP)."""
    rng = np.random.default_rng(seed)
    un, A, b, lb, ub = random_problem(rng, 2, m)
    w = rng.uniform(0.2, 5.0, 2)
    u1, s1, _, _ = CBFQP(w, "exact2").solve(un, A, b, lb, ub, 0.1)
    u2, s2, _, _ = CBFQP(w, "daqp").solve(un, A, b, lb, ub, 0.1)
    cost = lambda u: float(w @ (u - un) ** 2)
    assert s1 == s2 == OK
    assert np.all(A @ u1 >= b - 1e-7)
    assert cost(u1) <= cost(u2) + 1e-6 * (1 + cost(u2))


def test_bad_weights_and_backends_are_rejected_by_name():
    with pytest.raises(ValueError, match="weights"):
        CBFQP([1.0, -1.0])
    with pytest.raises(ValueError, match="unknown"):
        CBFQP([1.0, 1.0], "gurobi")
    with pytest.raises(ValueError, match="exact2"):
        CBFQP(np.ones(3), "exact2")
