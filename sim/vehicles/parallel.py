"""PettingZoo `ParallelEnv` over one episode of `CarsVecEnv` (batch of 1).

Observations are dicts {"observation": float32 (obs_dim,), "action_mask": int8 (K,)} (PettingZoo's
convention for masks); `state()` is the centralised-critic state. Agents that collide, leave the road or
complete their route are removed from `agents`; infos carry the shield's intervention and the step's
events. Training uses `CarsVecEnv` directly (many episodes per call); this wrapper is the standard API.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from .vec_env import CarsVecEnv


class CarsParallelEnv(ParallelEnv):
    metadata = {"name": "rtctl_cars_v0", "render_modes": []}

    def __init__(self, scenario: str, n_agents: int, controller, link=None, seed: int = 0, **kw) -> None:
        self.vec = CarsVecEnv(scenario, n_agents, 1, controller, link, seed, **kw)
        self.possible_agents = [f"car_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        obs = spaces.Box(-np.inf, np.inf, (self.vec.obs_dim,), np.float32)
        self._obs_space = spaces.Dict({"observation": obs, "action_mask": spaces.Box(0, 1, (self.vec.K,), np.int8)})
        self._act_space = spaces.Discrete(self.vec.K)
        self.state_space = spaces.Box(-np.inf, np.inf, (self.vec.state_dim,), np.float32)

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _pack(self, obs, mask, names):
        idx = {a: i for i, a in enumerate(self.possible_agents)}
        return {a: {"observation": obs[0, idx[a]], "action_mask": mask[0, idx[a]].astype(np.int8)} for a in names}

    def reset(self, seed=None, options=None):
        obs, mask = self.vec.reset(seed)
        self.agents = list(self.possible_agents)
        return self._pack(obs, mask, self.agents), {a: {} for a in self.agents}

    def step(self, actions):
        live = list(self.agents)
        act = np.full((1, len(self.possible_agents)), 0)  # removed agents: emergency stop (ignored)
        act[0] += self.vec.controller.stop_index
        for a, b in actions.items():
            if a in live:
                act[0, self.possible_agents.index(a)] = int(b)
        obs, mask, r, term, trunc, info = self.vec.step(act)
        i = {a: self.possible_agents.index(a) for a in live}
        out = self._pack(obs, mask, live)
        rewards = {a: float(r[0, i[a]]) for a in live}
        terms = {a: bool(term[0, i[a]]) for a in live}
        truncs = {a: bool(trunc[0, i[a]]) for a in live}
        infos = {a: {"collided": bool(info.collided[0, i[a]]), "off_road": bool(info.off_road[0, i[a]]),
                     "completed": bool(info.completed[0, i[a]]), "intervention": float(info.intervention[0, i[a]])}
                 for a in live}
        self.agents = [a for a in live if not (terms[a] or truncs[a])]
        return out, rewards, terms, truncs, infos

    def state(self):
        return self.vec.state()[0]
