"""Multi-step multi-task TD3/DDPG for control: variations as tasks, episodes on Ray actors.

Each iteration collects ``episodes_per_task`` episodes for each task of the iteration (the pruned set, all
tasks, a uniform draw, or the nominal task), keeps the worst ``cvar_epsilon`` fraction of them (EPOpt;
1.0 keeps all), stores them per task and runs ``updates_per_step`` gradient updates per collected env step
with the per-task losses combined by the configured combiner. Re-pruning evaluates the deterministic
policy on every task (those env steps count). Measurement evaluations on the full set and on the held-out
set happen every ``eval_every_steps`` and are not counted as training steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtctl.policies.mlp import export_actor
from rtctl.train.multitask.export import export_meta
from rtctl.sim.variations import VariationSet

from rtctl.train.multitask.config import MultitaskConfig
from rtctl.train.multitask.envs import DEFAULT_SETS, action_spec, make_env, obs_features, obs_keys, variation_set
from rtctl.train.multitask.learner import Learner, TaskEncoder
from rtctl.train.multitask.prune import summarize, worst_fraction
from rtctl.train.multitask.replay import TaskReplay
from rtctl.train.multitask.rollout import EpisodeRequest, RolloutPool, episode_seed
from rtctl.train.multitask.schedule import TaskSchedule, load_trainer, sample_batches, save_trainer

EVAL_SALT = 7_777_777  # evaluation episodes use seeds no training episode uses


@dataclass
class MultistepState:
    iteration: int = 0
    env_steps: int = 0  # training + re-pruning episodes
    update_credit: float = 0.0
    last_eval_step: int | None = None
    evals: list[dict] = field(default_factory=list)  # {"env_steps", "returns": [K], "held_out": [H]}
    rows: list[dict] = field(default_factory=list)


class MultistepTrainer:
    unit = "env steps"

    def __init__(self, cfg: MultitaskConfig) -> None:
        self.cfg = cfg
        train_default, held_default = DEFAULT_SETS[cfg.env.kind]
        self.vset: VariationSet = variation_set(cfg.variations, train_default, "variations")
        if self.vset is None:
            raise ValueError("multistep training needs a variation set (config key 'variations')")
        self.held: VariationSet | None = variation_set(cfg.held_out, held_default, "held_out")
        probe = make_env(cfg.env)
        self.obs_dim = int(np.prod(probe.observation_space.shape))
        self.act_dim = int(np.prod(probe.action_space.shape))
        self.action_spec, self.obs_keys, self.features = action_spec(probe), obs_keys(probe), obs_features(probe)
        probe.close()
        K = len(self.vset)
        self.schedule = TaskSchedule(cfg.tasks, K, self.vset.nominal)
        encoder = TaskEncoder(cfg.tasks.critic_input, K, self.vset.numeric_matrix())
        self.learner = Learner(self.obs_dim, self.act_dim, encoder, cfg.agent, cfg.combiner.kind,
                               cfg.combiner.cagrad_c, cfg.seed)
        self.replay = TaskReplay(K, cfg.replay.capacity_per_task, self.obs_dim, self.act_dim)
        self.rng = np.random.default_rng(cfg.seed)
        self.state = MultistepState()
        worker_args = (cfg.env.model_dump(), self.vset.to_list(), self.vset.nominal,
                       self.held.to_list() if self.held else None, list(cfg.agent.hidden))
        self.pool = RolloutPool(cfg.rollout, worker_args)

    @property
    def iteration(self) -> int:
        return self.state.iteration

    def finished(self) -> bool:
        return self.state.env_steps >= self.cfg.multistep.budget_env_steps

    def progress(self) -> tuple[int, int]:
        return self.state.env_steps, self.cfg.multistep.budget_env_steps

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate(self, held_out: bool = False, episodes: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Deterministic policy on every task of a set: (mean return per task, pruning features per task,
        env steps spent)."""
        vset = self.held if held_out else self.vset
        n_ep = episodes or self.cfg.multistep.eval_episodes
        reqs = [EpisodeRequest(t, episode_seed(self.cfg.seed, EVAL_SALT, int(held_out), t, e), held_out=held_out)
                for t in range(len(vset)) for e in range(n_ep)]
        eps = self.pool.run(self.learner.actor_weights(), reqs)
        ret = np.array([ep["ret"] for ep in eps]).reshape(len(vset), n_ep)
        feats = np.array([[ep["ret"], *ep["metrics"].values()] for ep in eps]).reshape(len(vset), n_ep, -1)
        lengths = sum(ep["length"] for ep in eps)
        return ret.mean(axis=1), feats.mean(axis=1), lengths

    def _measure(self) -> None:
        s = self.state
        rec: dict[str, Any] = {"env_steps": s.env_steps, "returns": self.evaluate()[0].tolist()}
        if self.held is not None:
            rec["held_out"] = self.evaluate(held_out=True)[0].tolist()
        s.evals.append(rec)
        s.last_eval_step = s.env_steps

    # -- one iteration --------------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        cfg, s, ms = self.cfg, self.state, self.cfg.multistep
        if s.iteration == 0 and s.env_steps == 0:
            self._measure()
            if self.schedule.pruned:
                self._reprune()
        tasks = [t for t in self.schedule.iteration_tasks(self.rng) for _ in range(ms.episodes_per_task)]
        explore = s.env_steps >= ms.learning_starts
        reqs = [EpisodeRequest(t, episode_seed(cfg.seed, s.iteration, j), cfg.agent.exploration_std,
                               random_actions=not explore) for j, t in enumerate(tasks)]
        episodes = self.pool.run(self.learner.actor_weights() if explore else None, reqs)
        steps = sum(ep["length"] for ep in episodes)
        s.env_steps += steps
        returns = np.array([ep["ret"] for ep in episodes])
        for i in worst_fraction(returns, cfg.tasks.cvar_epsilon):
            ep = episodes[i]
            self.replay.add(ep["task"], ep["obs"], ep["act"], ep["rew"], ep["next_obs"], ep["done"])
        stats: dict[str, float] = {}
        if s.env_steps >= ms.learning_starts:
            s.update_credit += steps * ms.updates_per_step
            n_updates, s.update_credit = int(s.update_credit), s.update_credit - int(s.update_credit)
            learn = self.schedule.learning_tasks()
            for _ in range(n_updates):
                stats = self.learner.update(sample_batches(self.replay, learn, cfg, self.rng), self.rng)
        self.schedule.tick()
        if self.schedule.due() and not self.finished():
            self._reprune()
        if s.env_steps - (s.last_eval_step or 0) >= ms.eval_every_steps or self.finished():
            self._measure()
        s.iteration += 1
        return self._row(stats, returns)

    def _reprune(self) -> None:
        returns, feats, steps = self.evaluate()
        self.state.env_steps += steps
        self.schedule.prune(feats, returns, self.rng)

    def _row(self, stats: dict[str, float], returns: np.ndarray) -> dict[str, Any]:
        s = self.state
        last = s.evals[-1]
        full = summarize(np.array(last["returns"]))
        row = {"iteration": s.iteration, "env_steps": s.env_steps, "active_tasks": len(self.schedule.active),
               "episode_return_mean": float(returns.mean()), "episode_return_min": float(returns.min()),
               "eval_env_steps": last["env_steps"], "eval_mean": full["mean"], "eval_worst": full["worst"],
               "eval_worst10": full["worst10"],
               "critic_loss": stats.get("critic_loss", float("nan")),
               "actor_loss": stats.get("actor_loss", float("nan")),
               "critic_conflict": stats.get("critic_conflict", float("nan")),
               "actor_conflict": stats.get("actor_conflict", float("nan"))}
        if "held_out" in last:
            held = summarize(np.array(last["held_out"]))
            row.update(held_mean=held["mean"], held_worst=held["worst"], held_worst10=held["worst10"])
        s.rows.append(row)
        return row

    # -- results ------------------------------------------------------------------------------------
    def curves(self) -> tuple[str, list[float], np.ndarray]:
        ev = self.state.evals
        return "env steps", [e["env_steps"] for e in ev], np.array([e["returns"] for e in ev])

    def summary(self) -> dict[str, Any]:
        s = self.state
        last = s.evals[-1] if s.evals else None
        out: dict[str, Any] = {"mode": "multistep", "iterations": s.iteration, "env_steps": s.env_steps,
                               "prunes": self.schedule.prunes, "active": self.schedule.active,
                               "n_tasks": len(self.vset)}
        if last:
            out["full_set"] = summarize(np.array(last["returns"]))
            if "held_out" in last:
                out["held_out"] = summarize(np.array(last["held_out"]))
        return out

    def export(self, path: Path) -> Path:
        return export_actor(path, self.learner.actor, self.cfg.agent.hidden, self.obs_keys, self.action_spec,
                            extra=(extra := {"kind": self.cfg.env.kind, "env": self.cfg.env.model_dump()}),
                            features=self.features, meta=export_meta(self.action_spec, extra))

    # -- checkpoint ---------------------------------------------------------------------------------
    def save(self, path: Path, config_text: str) -> Path:
        return save_trainer(self, path, "multistep", config_text)

    def load(self, path: Path) -> dict[str, Any]:
        return load_trainer(self, path, "multistep", MultistepState)

    def close(self) -> None:
        self.pool.close()
