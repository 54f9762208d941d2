"""Episode collection for the multistep mode, in-process or on Ray actors (local or an existing cluster).

Determinism: every episode carries its own seed, derived from (run seed, iteration, slot); the env reset
and the exploration noise of that episode come only from it, and a worker starts every episode from a
fresh reset. So a worker holds no RNG or env state that outlives an episode, requests are split over the
workers in a fixed order and results are gathered in that order: the collected data are the same for any
number of workers, any placement on a cluster, and after a checkpoint/resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from rtctl.policies.mlp import Actor
from rtctl.sim.variations import VariationSet, VariedEnv

from rtctl.train.sections import RolloutConfig
from rtctl.train.multitask.envs import make_env


@dataclass(frozen=True)
class EpisodeRequest:
    task: int
    seed: int
    noise_std: float = 0.0
    random_actions: bool = False
    held_out: bool = False


def episode_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


class RolloutWorker:
    """Owns one env; runs episodes with the actor weights it is given."""

    def __init__(self, env_cfg: Mapping[str, Any], train_set: Sequence[Mapping[str, Any]], train_nominal: int,
                 held_set: Sequence[Mapping[str, Any]] | None, hidden: Sequence[int]) -> None:
        torch.set_num_threads(1)
        self.env = make_env(dict(env_cfg))
        self.sets = {False: VariedEnv(self.env, VariationSet(list(train_set), train_nominal))}
        if held_set:
            self.sets[True] = VariedEnv(self.env, VariationSet(list(held_set), 0))
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        self.act_dim = int(np.prod(self.env.action_space.shape))
        self.actor = Actor(self.obs_dim, self.act_dim, hidden)

    def node_id(self) -> str:
        import ray
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"

    def run(self, weights: Mapping[str, np.ndarray] | None, requests: Sequence[EpisodeRequest]) -> list[dict]:
        if weights is not None:
            self.actor.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        return [self._episode(r) for r in requests]

    def _episode(self, req: EpisodeRequest) -> dict:
        env = self.sets[req.held_out]
        rng = np.random.default_rng([req.seed, 1])
        obs, _ = env.reset(seed=req.seed, options={"variation": req.task})
        rows: dict[str, list] = {"obs": [], "act": [], "rew": [], "next_obs": [], "done": []}
        metrics: dict[str, float] = {}
        done = False
        while not done:
            o = np.asarray(obs, dtype=np.float64).reshape(-1)
            if req.random_actions:
                a = rng.uniform(-1.0, 1.0, size=self.act_dim)
            else:
                with torch.no_grad():
                    a = self.actor(torch.as_tensor(o, dtype=torch.float32)[None])[0].double().numpy()
                if req.noise_std > 0:
                    a = np.clip(a + req.noise_std * rng.normal(size=self.act_dim), -1.0, 1.0)
            obs, r, terminated, truncated, info = env.step(a)
            rows["obs"].append(o)
            rows["act"].append(a)
            rows["rew"].append(float(r))
            rows["next_obs"].append(np.asarray(obs, dtype=np.float64).reshape(-1))
            rows["done"].append(float(terminated))  # truncation is not a terminal state: bootstrap through it
            done = terminated or truncated
            metrics = dict(info.get("episode_metrics", {})) if done else metrics
        out = {k: np.asarray(v) for k, v in rows.items()}
        out.update(task=req.task, held_out=req.held_out, ret=float(out["rew"].sum()), length=len(out["rew"]),
                   metrics={k: float(v) for k, v in sorted(metrics.items())})
        return out


class RolloutPool:
    """Runs episode requests on ``workers`` RolloutWorkers, in-process or as Ray actors."""

    def __init__(self, cfg: RolloutConfig, worker_args: tuple) -> None:
        self.cfg = cfg
        self._started_ray = False
        if cfg.backend == "local":
            self.workers: list[Any] = [RolloutWorker(*worker_args)]
            return
        from rtctl.train.sections import start_workers

        self._ray, self.workers, self._started_ray = start_workers(cfg, RolloutWorker, [worker_args] * cfg.workers)

    def run(self, weights: Mapping[str, np.ndarray] | None, requests: Sequence[EpisodeRequest]) -> list[dict]:
        if not requests:
            return []
        if self.cfg.backend == "local":
            return self.workers[0].run(weights, requests)
        n = len(self.workers)
        bounds = np.linspace(0, len(requests), n + 1).round().astype(int)
        ref = self._ray.put(weights)
        futures = [w.run.remote(ref, list(requests[bounds[i]:bounds[i + 1]]))
                   for i, w in enumerate(self.workers) if bounds[i + 1] > bounds[i]]
        return [ep for part in self._ray.get(futures) for ep in part]

    def node_ids(self) -> list[str]:
        """Where the workers run (Ray node ids; 'local' in-process)."""
        if self.cfg.backend == "local":
            return ["local"]
        return self._ray.get([w.node_id.remote() for w in self.workers])

    def close(self) -> None:
        if self.cfg.backend == "ray":
            for w in self.workers:
                self._ray.kill(w)
            self.workers = []
            if self._started_ray:
                self._ray.shutdown()
