"""The op-amp benchmark as tasks: corner i of the variation set is task i.

`OpAmpProblem` is the vectorised interface trainers use (many (design, corner) rows per call, one counted
simulation per row). `OpAmpSizingEnv` is the same thing as a one-step Gymnasium env (a variation is applied
at reset through ``set_variation``), for code that wants the env protocol.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..variations import VariationSet
from . import analytic, ngspice
from .spec import DESIGN_VARIABLES, Benchmark, load_benchmark

Backend = Literal["analytic", "ngspice"]


@dataclass(frozen=True)
class Evaluation:
    reward: np.ndarray  # (N,)
    passed: np.ndarray  # (N,) bool: every spec met
    features: np.ndarray  # (N, n_specs) normalised distances rel_i (what pruning clusters on)
    measurements: Mapping[str, np.ndarray]


class OpAmpProblem:
    """Sizing of the two-stage op-amp over a corner set; ``simulations`` counts every (design, corner) row."""

    def __init__(self, backend: Backend = "analytic", specs_path: str | None = None,
                 corners: Literal["train", "held_out"] = "train", ngspice_jobs: int = 2) -> None:
        if backend not in ("analytic", "ngspice"):
            raise ValueError(f"op-amp backend must be 'analytic' or 'ngspice', got {backend!r}")
        self.bench: Benchmark = load_benchmark(specs_path)
        self.backend = backend
        self.vset: VariationSet = self.bench.corners if corners == "train" else self.bench.held_out
        self._corners = self.bench.corner_list(self.vset)
        self.ngspice_jobs = ngspice_jobs
        self.simulations = 0

    @property
    def n_tasks(self) -> int:
        return len(self.vset)

    @property
    def nominal(self) -> int:
        return self.vset.nominal

    @property
    def action_dim(self) -> int:
        return len(DESIGN_VARIABLES)

    @property
    def corner_names(self) -> list[str]:
        return [c.name for c in self._corners]

    @property
    def spec_names(self) -> list[str]:
        return [s.name for s in self.bench.specs]

    def simulate(self, actions: np.ndarray, tasks: np.ndarray) -> dict[str, np.ndarray]:
        a = np.atleast_2d(np.asarray(actions, dtype=float))
        t = np.asarray(tasks, dtype=int).reshape(-1)
        if len(a) != len(t):
            raise ValueError(f"simulate: {len(a)} actions but {len(t)} task indices")
        if len(t) and (t.min() < 0 or t.max() >= self.n_tasks):
            raise IndexError(f"task index outside 0..{self.n_tasks - 1}")
        self.simulations += len(t)
        x = self.bench.to_physical(a)
        corners = [self._corners[i] for i in t]
        if self.backend == "ngspice":
            return ngspice.simulate(self.bench, x, corners, jobs=self.ngspice_jobs)
        return analytic.simulate(self.bench, x, corners)

    def evaluate(self, actions: np.ndarray, tasks: np.ndarray) -> Evaluation:
        meas = self.simulate(actions, tasks)
        return Evaluation(self.bench.reward(meas), self.bench.passes(meas), self.bench.relative(meas), meas)

    def evaluate_all(self, action: np.ndarray) -> Evaluation:
        """One design on every corner of the set (costs ``n_tasks`` simulations)."""
        a = np.asarray(action, dtype=float).reshape(1, -1)
        return self.evaluate(np.repeat(a, self.n_tasks, axis=0), np.arange(self.n_tasks))

    def describe(self, action: np.ndarray) -> dict[str, float]:
        x = self.bench.to_physical(np.asarray(action, dtype=float).reshape(1, -1))[0]
        return {k: float(v) for k, v in zip(DESIGN_VARIABLES, x)}


class OpAmpSizingEnv(gym.Env):
    """One-step sizing episode on one corner: reset picks the corner, step(action) simulates it."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, backend: Backend = "analytic", specs_path: str | None = None) -> None:
        self.problem = OpAmpProblem(backend, specs_path)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.problem.action_dim,), dtype=np.float64)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float64)
        self.corner_index = self.problem.nominal

    def set_variation(self, params: Mapping[str, Any]) -> None:
        idx = self.problem.vset.index_of(params)
        if idx is None:
            raise ValueError(f"no op-amp corner with parameters {dict(params)}")
        self.corner_index = idx

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return np.ones(1), {"corner": self.problem.corner_names[self.corner_index]}

    def step(self, action):
        ev = self.problem.evaluate(np.asarray(action, dtype=float).reshape(1, -1), np.array([self.corner_index]))
        info = {"passed": bool(ev.passed[0]), **{k: float(v[0]) for k, v in ev.measurements.items()}}
        return np.ones(1), float(ev.reward[0]), True, False, info
