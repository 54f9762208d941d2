"""Black-box sizing baselines on the same corner-simulation budget: random search, CMA-ES, GP-BO.

All three propose designs in [-1, 1]^8 and check each proposal on the corner set through `CornerOracle`,
which applies the benchmark's one early-stop rule and budget cap and stops at the first design that
passes every corner. CMA-ES and BO minimise minus the mean corner reward (the same AutoCkt-form reward the
RL methods learn from), so they always need every corner of a design; random search needs only the pass
check. BO is a plain GP (squared-exponential ARD kernel, marginal-likelihood fit) with expected
improvement maximised over random and local candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import cma
import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize
from scipy.stats import norm

from rtctl.sim.analog.env import OpAmpProblem


class BudgetExhausted(Exception):
    pass


class DesignPassed(Exception):
    pass


@dataclass
class SearchResult:
    passed: bool
    sims: int  # simulations spent (= sims_to_pass when passed)
    best_corners_passed: int
    design: list[float] | None
    sims_if_first_fail: int  # the same proposals counted under the "first_fail" early-stop rule


class CornerOracle:
    def __init__(self, problem: OpAmpProblem, budget: int, early_stop: str) -> None:
        self.problem, self.budget, self.early_stop = problem, budget, early_stop
        self.sims = 0
        self.sims_first_fail = 0
        self.best = (-1, -np.inf)
        self.design: np.ndarray | None = None
        self.passed = False

    def check(self, action: np.ndarray, need_all: bool) -> np.ndarray:
        """Reward on every corner of ``action``; raises DesignPassed / BudgetExhausted to end the search."""
        K = self.problem.n_tasks
        if self.sims >= self.budget:
            raise BudgetExhausted
        ev = self.problem.evaluate_all(action)
        first_fail = K if ev.passed.all() else int(np.argmin(ev.passed)) + 1
        counted = first_fail if (self.early_stop == "first_fail" and not need_all) else K
        self.sims += counted
        self.sims_first_fail += first_fail if not need_all else K
        key = (int(ev.passed.sum()), float(ev.reward.mean()))
        if key > self.best:
            self.best, self.design = key, np.asarray(action, dtype=float)
        if ev.passed.all():
            self.passed = True
            raise DesignPassed
        return ev.reward

    def result(self) -> SearchResult:
        return SearchResult(self.passed, min(self.sims, self.budget) if not self.passed else self.sims,
                            max(self.best[0], 0), None if self.design is None else self.design.tolist(),
                            self.sims_first_fail)


def _run(search, oracle: CornerOracle) -> SearchResult:
    try:
        search()
    except (DesignPassed, BudgetExhausted):
        pass
    return oracle.result()


def random_search(problem: OpAmpProblem, budget: int, seed: int, early_stop: str = "never") -> SearchResult:
    oracle = CornerOracle(problem, budget, early_stop)
    rng = np.random.default_rng(seed)

    def search() -> None:
        while True:
            oracle.check(rng.uniform(-1, 1, problem.action_dim), need_all=False)

    return _run(search, oracle)


def cmaes(problem: OpAmpProblem, budget: int, seed: int, early_stop: str = "never", sigma0: float = 0.5
          ) -> SearchResult:
    oracle = CornerOracle(problem, budget, early_stop)

    def search() -> None:
        es = cma.CMAEvolutionStrategy(np.zeros(problem.action_dim), sigma0,
                                      {"bounds": [-1, 1], "seed": seed + 1, "verbose": -9})
        while True:
            xs = es.ask()
            es.tell(xs, [-float(oracle.check(np.asarray(x), need_all=True).mean()) for x in xs])
            if es.stop():  # restart from a random point (seeded by the spend so far)
                x0 = np.random.default_rng(seed + oracle.sims).uniform(-1, 1, problem.action_dim)
                es = cma.CMAEvolutionStrategy(x0, sigma0, {"bounds": [-1, 1], "seed": seed + 1 + oracle.sims,
                                                           "verbose": -9})

    return _run(search, oracle)


class GP:
    """Zero-mean GP on standardised targets, squared-exponential ARD kernel."""

    def __init__(self, dim: int) -> None:
        self.log_params = np.concatenate([np.zeros(dim), [0.0, np.log(1e-3)]])  # log ell, log sf2, log sn2

    @staticmethod
    def _kernel(A: np.ndarray, B: np.ndarray, ell: np.ndarray, sf2: float) -> np.ndarray:
        d = ((A[:, None, :] - B[None, :, :]) / ell) ** 2
        return sf2 * np.exp(-0.5 * d.sum(-1))

    def _nll(self, lp: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        dim = X.shape[1]
        ell, sf2, sn2 = np.exp(lp[:dim]), np.exp(lp[dim]), np.exp(lp[dim + 1]) + 1e-8
        K = self._kernel(X, X, ell, sf2)
        Ky = K + sn2 * np.eye(len(X))
        try:
            c = cho_factor(Ky, lower=True)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(lp)
        alpha = cho_solve(c, y)
        nll = 0.5 * y @ alpha + np.log(np.diag(c[0])).sum()
        W = np.outer(alpha, alpha) - cho_solve(c, np.eye(len(X)))
        grad = np.empty_like(lp)
        for j in range(dim):
            D = (X[:, None, j] - X[None, :, j]) ** 2 / ell[j] ** 2
            grad[j] = -0.5 * np.sum(W * K * D)
        grad[dim] = -0.5 * np.sum(W * K)
        grad[dim + 1] = -0.5 * np.trace(W) * (sn2 - 1e-8)
        return float(nll), grad

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        bounds = [(np.log(0.05), np.log(20.0))] * X.shape[1] + [(np.log(0.05), np.log(20.0)),
                                                                  (np.log(1e-6), np.log(0.5))]
        res = minimize(self._nll, self.log_params, args=(X, y), jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 60})
        if np.isfinite(res.fun):
            self.log_params = res.x

    def predict(self, X: np.ndarray, y: np.ndarray, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dim = X.shape[1]
        ell, sf2, sn2 = np.exp(self.log_params[:dim]), np.exp(self.log_params[dim]), np.exp(self.log_params[dim + 1])
        c = cho_factor(self._kernel(X, X, ell, sf2) + (sn2 + 1e-8) * np.eye(len(X)), lower=True)
        Ks = self._kernel(Xs, X, ell, sf2)
        mu = Ks @ cho_solve(c, y)
        var = np.maximum(sf2 - np.einsum("ij,ji->i", Ks, cho_solve(c, Ks.T)), 1e-12)
        return mu, np.sqrt(var)


def bayes_opt(problem: OpAmpProblem, budget: int, seed: int, early_stop: str = "never", n_init: int = 10,
              refit_every: int = 10, candidates: int = 2000) -> SearchResult:
    oracle = CornerOracle(problem, budget, early_stop)
    rng = np.random.default_rng(seed)
    dim = problem.action_dim
    X: list[np.ndarray] = []
    f: list[float] = []  # minimised: minus the mean corner reward
    gp = GP(dim)

    def search() -> None:
        for _ in range(n_init):
            x = rng.uniform(-1, 1, dim)
            f.append(-float(oracle.check(x, need_all=True).mean()))
            X.append(x)
        while True:
            Xa, fa = np.array(X), np.array(f)
            y = (fa - fa.mean()) / (fa.std() + 1e-12)
            if (len(X) - n_init) % refit_every == 0:
                gp.fit(Xa, y)
            best = Xa[np.argmin(fa)]
            cand = np.concatenate([rng.uniform(-1, 1, (candidates, dim)),
                                   np.clip(best + 0.1 * rng.normal(size=(candidates // 4, dim)), -1, 1)])
            mu, sd = gp.predict(Xa, y, cand)
            z = (y.min() - mu - 0.01) / sd
            ei = (y.min() - mu - 0.01) * norm.cdf(z) + sd * norm.pdf(z)
            x = cand[int(np.argmax(ei))]
            f.append(-float(oracle.check(x, need_all=True).mean()))
            X.append(x)

    return _run(search, oracle)
