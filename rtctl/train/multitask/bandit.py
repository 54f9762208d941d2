"""One-step (bandit) multi-task sizing, RobustAnalog's Algorithm 1 as re-implemented publicly.

Each iteration proposes one design (random during warm-up, then the actor's output plus Gaussian noise),
simulates it on the iteration's corners (the pruned set: worst corner of each k-means cluster + nominal),
stores one transition per corner in that corner's buffer, and runs PCGrad-combined critic and actor
updates. A design that passes every corner it was trained on is checked on the full set; a failing check,
or every ``prune_period`` iterations a full evaluation of the period's best design, re-prunes. Every corner
simulation counts: training, full-corner checks and re-pruning.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtctl.policies.mlp import export_actor
from rtctl.train.multitask.export import export_meta
from rtctl.sim.analog.env import Evaluation, OpAmpProblem

from rtctl.train.multitask.config import MultitaskConfig
from rtctl.train.multitask.learner import Learner, TaskEncoder
from rtctl.train.multitask.prune import worst_fraction, worst_mean
from rtctl.train.multitask.replay import TaskReplay
from rtctl.train.multitask.schedule import TaskSchedule, load_trainer, sample_batches, save_trainer

STATE = np.ones((1, 1))  # the bandit's constant observation: the actor's output is the design


@dataclass
class BanditState:
    iteration: int = 0
    sims: int = 0
    passed: bool = False
    sims_to_pass: int | None = None
    passing_design: list[float] | None = None
    best_design: list[float] | None = None  # incumbent: most corners passed in a full evaluation
    best_key: list[float] | None = None  # (corners passed, mean reward)
    period_best: list[float] | None = None  # best design on the trained corners since the last re-prune
    period_key: list[float] | None = None
    full_evals: list[dict] = field(default_factory=list)  # {"sims", "reward": [K]} per full evaluation
    rows: list[dict] = field(default_factory=list)


class BanditTrainer:
    unit = "sims"

    def __init__(self, cfg: MultitaskConfig, problem: OpAmpProblem | None = None) -> None:
        self.cfg = cfg
        self.problem = problem or OpAmpProblem(cfg.env.backend, cfg.env.specs_path)
        K = self.problem.n_tasks
        self.schedule = TaskSchedule(cfg.tasks, K, self.problem.nominal)
        encoder = TaskEncoder(cfg.tasks.critic_input, K, self.problem.vset.numeric_matrix())
        self.learner = Learner(1, self.problem.action_dim, encoder, cfg.agent, cfg.combiner.kind,
                               cfg.combiner.cagrad_c, cfg.seed)
        self.replay = TaskReplay(K, cfg.replay.capacity_per_task, 1, self.problem.action_dim)
        self.rng = np.random.default_rng(cfg.seed)
        self.state = BanditState()

    # -- progress -----------------------------------------------------------------------------------
    @property
    def iteration(self) -> int:
        return self.state.iteration

    def finished(self) -> bool:
        return self.state.passed or self.state.sims >= self.cfg.bandit.budget_sims

    def progress(self) -> tuple[int, int]:
        return self.state.sims, self.cfg.bandit.budget_sims

    # -- one iteration --------------------------------------------------------------------------------
    def _push(self, action: np.ndarray, tasks: np.ndarray, ev: Evaluation) -> None:
        for t, r in zip(tasks, ev.reward):
            self.replay.add(int(t), STATE[0], action, r, STATE[0], 1.0)

    def _full_check(self, action: np.ndarray, need_all: bool) -> Evaluation:
        """Simulate ``action`` on every corner; the early-stop rule decides how many of them are counted."""
        ev = self.problem.evaluate_all(action)
        K = self.problem.n_tasks
        counted = K
        if self.cfg.bandit.early_stop == "first_fail" and not need_all and not ev.passed.all():
            counted = int(np.argmin(ev.passed)) + 1
        self.problem.simulations -= K - counted
        self.state.sims += counted
        tasks = np.arange(counted)
        self._push(action, tasks, Evaluation(ev.reward[:counted], ev.passed[:counted], ev.features[:counted], {}))
        if counted == K:
            self._record_full(action, ev)
        return ev

    def _record_full(self, action: np.ndarray, ev: Evaluation) -> None:
        self.state.full_evals.append({"sims": self.state.sims, "reward": ev.reward.tolist()})
        key = [float(ev.passed.sum()), float(ev.reward.mean())]
        if self.state.best_key is None or key > self.state.best_key:
            self.state.best_key, self.state.best_design = key, action.tolist()

    def _finish(self, action: np.ndarray) -> None:
        s = self.state
        s.passed, s.sims_to_pass, s.passing_design = True, s.sims, action.tolist()

    def start(self) -> None:
        """Before the first iteration of a pruned schedule: one random design on all corners, first pruning."""
        if self.schedule.pruned and self.schedule.prunes == 0:
            a = self.rng.uniform(-1.0, 1.0, size=self.problem.action_dim)
            ev = self._full_check(a, need_all=True)
            if ev.passed.all():
                self._finish(a)
            else:
                self.schedule.prune(ev.features, ev.reward, self.rng)

    def step(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.state
        if s.iteration == 0 and s.sims == 0:
            self.start()
            if self.finished():
                return self._row({}, np.zeros(0), np.zeros(0, bool))
        if s.iteration < cfg.bandit.warmup_steps:
            a = self.rng.uniform(-1.0, 1.0, size=self.problem.action_dim)
        else:
            noise = cfg.agent.exploration_std * self.rng.normal(size=self.problem.action_dim)
            a = np.clip(self.learner.act(STATE)[0] + noise, -1.0, 1.0)
        tasks = np.array(self.schedule.iteration_tasks(self.rng))
        ev = self.problem.evaluate(np.repeat(a[None], len(tasks), axis=0), tasks)
        s.sims += len(tasks)
        keep = worst_fraction(ev.reward, cfg.tasks.cvar_epsilon)
        self._push(a, tasks[keep], Evaluation(ev.reward[keep], ev.passed[keep], ev.features[keep], {}))
        stats: dict[str, float] = {}
        for _ in range(cfg.bandit.updates_per_step):
            stats = self.learner.update(sample_batches(self.replay, self.schedule.learning_tasks(), cfg, self.rng),
                                        self.rng)
        if len(tasks) == self.problem.n_tasks and np.array_equal(tasks, np.arange(len(tasks))):
            self._record_full(a, ev)  # an all-corner training step is a full evaluation too
        key = [float(ev.passed.sum()), float(ev.reward.min()), float(ev.reward.mean())]
        if s.period_key is None or key > s.period_key:
            s.period_key, s.period_best = key, a.tolist()
        self.schedule.tick()
        if ev.passed.all():
            if len(set(tasks.tolist())) == self.problem.n_tasks:
                self._finish(a)
            else:
                full = self._full_check(a, need_all=False)
                if full.passed.all():
                    self._finish(a)
                elif self.schedule.pruned:
                    self._reprune(a, full)
        if not s.passed and self.schedule.due() and not self.finished():
            design = np.array(s.period_best)
            full = self._full_check(design, need_all=True)
            if full.passed.all():
                self._finish(design)
            else:
                self._reprune(design, full)
        s.iteration += 1
        return self._row(stats, ev.reward, ev.passed)

    def _reprune(self, design: np.ndarray, full: Evaluation) -> None:
        if len(full.reward) < self.problem.n_tasks:  # first-fail check: re-pruning needs every corner
            full = self._full_check(design, need_all=True)
        self.schedule.prune(full.features, full.reward, self.rng)
        self.state.period_best = self.state.period_key = None

    def _row(self, stats: dict[str, float], reward: np.ndarray, passed: np.ndarray) -> dict[str, Any]:
        s = self.state
        last = s.full_evals[-1]["reward"] if s.full_evals else [float("nan")]
        row = {"iteration": s.iteration, "sims": s.sims, "active_tasks": len(self.schedule.active),
               "step_reward_min": float(reward.min()) if len(reward) else float("nan"),
               "step_reward_mean": float(reward.mean()) if len(reward) else float("nan"),
               "step_corners_passed": int(passed.sum()),
               "full_eval_worst": float(np.min(last)), "full_eval_worst10": worst_mean(np.array(last), 0.1),
               "best_corners_passed": s.best_key[0] if s.best_key else 0.0, "passed": int(s.passed),
               "critic_loss": stats.get("critic_loss", float("nan")),
               "actor_loss": stats.get("actor_loss", float("nan")),
               "critic_conflict": stats.get("critic_conflict", float("nan")),
               "actor_conflict": stats.get("actor_conflict", float("nan"))}
        s.rows.append(row)
        return row

    # -- results ------------------------------------------------------------------------------------
    def curves(self) -> tuple[str, list[float], np.ndarray]:
        """(x label, x, per-task values T x K): the reward of every corner at each full evaluation."""
        ev = self.state.full_evals
        per_task = np.array([e["reward"] for e in ev]).reshape(len(ev), self.problem.n_tasks)
        return "corner simulations", [e["sims"] for e in ev], per_task

    def design(self) -> np.ndarray:
        s = self.state
        for d in (s.passing_design, s.best_design):
            if d is not None:
                return np.array(d)
        return self.learner.act(STATE)[0]

    def summary(self) -> dict[str, Any]:
        s = self.state
        d = self.design()
        return {"mode": "bandit", "iterations": s.iteration, "sims": s.sims, "passed": s.passed,
                "sims_to_pass_all": s.sims_to_pass, "censored": not s.passed,
                "best_corners_passed": s.best_key[0] if s.best_key else 0, "n_corners": self.problem.n_tasks,
                "design_action": d.tolist(), "design": self.problem.describe(d),
                "prunes": self.schedule.prunes, "active": self.schedule.active}

    def export(self, path: Path) -> Path:
        b = self.problem.bench
        action = {"mode": "affine", "low": np.log(b.bounds[:, 0]).tolist(), "high": np.log(b.bounds[:, 1]).tolist()}
        extra = {"kind": "opamp_sizing", "design": self.problem.describe(self.design()),
                 "note": "command = log of the physical design values"}
        return export_actor(path, self.learner.actor, self.cfg.agent.hidden, ["bias"], action, extra=extra,
                            meta=export_meta(action, extra))

    # -- checkpoint ---------------------------------------------------------------------------------
    def save(self, path: Path, config_text: str) -> Path:
        return save_trainer(self, path, "bandit", config_text, simulations=self.problem.simulations)

    def load(self, path: Path) -> dict[str, Any]:
        meta = load_trainer(self, path, "bandit", BanditState)
        self.problem.simulations = int(meta["simulations"])
        return meta

    def close(self) -> None:
        pass
