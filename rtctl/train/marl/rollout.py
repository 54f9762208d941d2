"""Rollouts of the car sim: one batch of synchronous episodes per call, in-process or on Ray actors.

`run_batch(env, act_fn)` plays every episode of a `CarsVecEnv` to the end and returns the trajectory
(numpy, time-major) and the episode figures the benchmark reports. `RolloutWorker` owns one vec env and a
copy of the actor; `RayWorkers` / `LocalWorkers` run several of them. Ray's object transport stays
inside the trainer's own local cluster.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rtctl.vehicles.envs import delay_line, make_vec_env, random_delay
from rtctl.vehicles.episodes import run_batch
from rtctl.vehicles.scripted import scripted_policy

from rtctl.train.marl.config import MarlConfig
from rtctl.train.marl.nets import Actor


def policy_fn(actor: Actor, greedy: bool, rng: torch.Generator | None = None):
    def act(obs, mask):
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32)
            m = torch.as_tensor(mask)
            logits = actor.logits(o, m)
            if greedy:
                a = logits.argmax(-1)
            else:
                a = torch.multinomial(torch.softmax(logits, -1).reshape(-1, logits.shape[-1]), 1,
                                      generator=rng).reshape(logits.shape[:-1])
            logp = torch.log_softmax(logits, -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)
        return a.numpy(), logp.numpy()
    return act


class RolloutWorker:
    def __init__(self, cfg_json: str, index: int) -> None:
        torch.set_num_threads(1)
        self.cfg = MarlConfig.model_validate_json(cfg_json)
        c = self.cfg
        self.seed = c.seed * 1000 + index
        self.rng = np.random.default_rng(self.seed)
        eps = c.robust.epsilon if c.robust.kind == "domain_random" else 0.0
        self.env = make_vec_env(c.env.scenario, c.env.n_agents, c.env.envs_per_worker, self.seed,
                                shield=c.env.shield, v2v=c.env.v2v, perception_range_m=c.env.perception_range_m,
                                obs_noise=eps)
        self.actor = Actor(self.env.obs_dim, self.env.K, c.ppo.hidden)
        self.gen = torch.Generator().manual_seed(self.seed)

    def spaces(self) -> tuple[int, int, int]:
        return self.env.obs_dim, self.env.K, self.env.state_dim

    def _draw_link(self) -> None:
        """Delay randomisation: a new V2V delay for each batch."""
        if self.env.link is not None:
            d = self.cfg.delay
            inj = random_delay(self.rng, d.max_fixed_steps, d.tv) if d.randomise else d.tv
            inj = inj.model_copy(update={"drop_p": d.drop_p})
            self.env.link = delay_line(inj, self.env.n, self.env.E, int(self.rng.integers(2**31)))

    def collect(self, actor_state: dict) -> dict[str, Any]:
        self.actor.load_state_dict(actor_state)
        self._draw_link()
        return run_batch(self.env, policy_fn(self.actor, False, self.gen), int(self.rng.integers(2**31)))

    def collect_scripted(self) -> dict[str, Any]:
        """One batch driven by the scripted driver (the warm start's demonstrations), same delays."""
        self._draw_link()
        return run_batch(self.env, scripted_policy, int(self.rng.integers(2**31)))


class LocalWorkers:
    def __init__(self, cfg: MarlConfig) -> None:
        self.workers = [RolloutWorker(cfg.model_dump_json(), i) for i in range(cfg.rollout.workers)]

    def spaces(self):
        return self.workers[0].spaces()

    def collect(self, actor_state: dict) -> list[dict]:
        return [w.collect(actor_state) for w in self.workers]

    def collect_scripted(self) -> list[dict]:
        return [w.collect_scripted() for w in self.workers]

    def close(self) -> None:
        pass


class RayWorkers:
    """Rollout workers as Ray actors in a local cluster this trainer starts (and shuts down) itself,
    unless one is already initialised in this process."""

    def __init__(self, cfg: MarlConfig) -> None:
        from rtctl.train.sections import start_workers

        self.ray, self.workers, self.started = start_workers(
            cfg.rollout, RolloutWorker, [(cfg.model_dump_json(), i) for i in range(cfg.rollout.workers)],
            local_cpus=cfg.rollout.workers)

    def spaces(self):
        return self.ray.get(self.workers[0].spaces.remote())

    def collect(self, actor_state: dict) -> list[dict]:
        ref = self.ray.put(actor_state)
        return self.ray.get([w.collect.remote(ref) for w in self.workers])

    def collect_scripted(self) -> list[dict]:
        return self.ray.get([w.collect_scripted.remote() for w in self.workers])

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        if self.started:
            self.ray.shutdown()
