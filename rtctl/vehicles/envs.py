"""Build the car sim for a method: shield or not, V2V (with injected delay) or perception only.

`make_vec_env(scenario, n_agents, n_envs, seed, shield=..., v2v=..., delay=InjectionConfig)` → `CarsVecEnv`;
`make_parallel_env(...)` → the PettingZoo `ParallelEnv`; `delay_line(cfg, n_agents, n_envs, seed)` → the
`StepDelayLine` a vec env carries as its V2V link (re-drawn per rollout under delay randomisation).
"""
from __future__ import annotations

import numpy as np

from rtctl.sim.vehicles.observe import ObsConfig
from rtctl.sim.vehicles.parallel import CarsParallelEnv
from rtctl.sim.vehicles.scenarios import make_scenario
from rtctl.sim.vehicles.tables import MSG_DIM, Perception
from rtctl.sim.vehicles.vec_env import CarsVecEnv, RewardConfig
from rtctl.v2v.config import InjectionConfig
from rtctl.v2v.inject import DelayInjector, StepDelayLine

from rtctl.vehicles.control import ShieldedController, UnshieldedController, make_shield

NO_DELAY = InjectionConfig(kind="none")
FIXED_2 = InjectionConfig(kind="fixed", steps=2)
TIME_VARYING = InjectionConfig(kind="truncated_gaussian", mean_s=0.12, std_s=0.04, lo_s=0.05, hi_s=0.2)


def delay_line(cfg: InjectionConfig, n_agents: int, n_envs: int, seed: int) -> StepDelayLine:
    """The V2V link of a batch of episodes; the injector steps at the policy rate (0.1 s)."""
    cfg = cfg.model_copy(update={"dt_s": 0.1})
    return StepDelayLine(DelayInjector(cfg, seed=seed), n_agents, MSG_DIM, n_envs)


def controller_for(scenario: str, n_agents: int, shield: bool):
    scn = make_scenario(scenario, n_agents, 0)
    sh = make_shield(scn.track, scn.params)
    return (ShieldedController if shield else UnshieldedController)(sh, scn.target_speed)


def make_vec_env(scenario: str, n_agents: int, n_envs: int, seed: int, shield: bool = True, v2v: bool = True,
                 delay: InjectionConfig = NO_DELAY, perception_range_m: float = 5.0, obs_noise: float = 0.0,
                 reward: RewardConfig = RewardConfig(), obs_cfg: ObsConfig = ObsConfig()) -> CarsVecEnv:
    link = delay_line(delay, n_agents, n_envs, seed) if v2v else None
    return CarsVecEnv(scenario, n_agents, n_envs, controller_for(scenario, n_agents, shield), link, seed,
                      obs_cfg=obs_cfg, reward=reward, perception=Perception(range_m=perception_range_m),
                      obs_noise=obs_noise)


def make_parallel_env(scenario: str = "highway-medium", n_agents: int = 3, seed: int = 0, shield: bool = True,
                      v2v: bool = True, delay: InjectionConfig = NO_DELAY) -> CarsParallelEnv:
    link = delay_line(delay, n_agents, 1, seed) if v2v else None
    return CarsParallelEnv(scenario, n_agents, controller_for(scenario, n_agents, shield), link, seed)


def random_delay(rng: np.random.Generator, max_fixed_steps: int, tv: InjectionConfig) -> InjectionConfig:
    """Delay randomisation: a fixed delay of 0..max_fixed_steps steps, or the time-varying model."""
    k = int(rng.integers(0, max_fixed_steps + 2))
    return tv if k > max_fixed_steps else InjectionConfig(kind="fixed", steps=k)
