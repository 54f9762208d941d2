"""Config schema of `rtctl train marl` (YAML → validated models; unknown keys are errors)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rtctl.config import StrictModel
from rtctl.train.sections import LogConfig, RolloutConfig
from rtctl.v2v.config import InjectionConfig

# method → (env.shield, env.v2v, robust.kind): the ablations of the benchmark
METHOD_SWITCHES = {"full": (True, True, "pgd"), "no_shield": (False, True, "pgd"), "no_v2v": (True, False, "pgd"),
                   "non_robust": (True, True, "none"), "domain_randomised": (True, True, "domain_random")}
METHODS = tuple(METHOD_SWITCHES)


class CarsEnvConfig(StrictModel):
    scenario: Literal["highway-low", "highway-medium", "highway-high", "oval-low", "oval-medium", "oval-high",
                      "intersection"] = "highway-medium"
    n_agents: int = Field(3, ge=1, le=8)
    envs_per_worker: int = Field(16, ge=1, le=4096)  # episodes stepped together by one rollout worker
    shield: bool = True  # False: the no_shield ablation (behaviours' reference commands, unfiltered)
    v2v: bool = True  # False: perception only (no_v2v ablation)
    perception_range_m: float = Field(5.0, gt=0.0, le=100.0)


class DelayConfig(StrictModel):
    """V2V delay in training: `randomise` draws, per rollout, a fixed delay of 0..max_fixed_steps steps or
    the time-varying truncated Gaussian (`tv`); otherwise `tv` is used throughout."""

    randomise: bool = True
    max_fixed_steps: int = Field(3, ge=0, le=20)
    tv: InjectionConfig = InjectionConfig(kind="truncated_gaussian", mean_s=0.12, std_s=0.04, lo_s=0.05, hi_s=0.2)
    drop_p: float = Field(0.0, ge=0.0, le=0.9)


class RobustConfig(StrictModel):
    """Observation-robust training. `pgd`: worst-case actions from a projected-gradient attack in an L∞
    ε-ball of the observation; a worst-case Q critic learns the return under them (WocaR) and is weighted
    into the advantage, and a KL term keeps the policy smooth inside the ball (SA-PPO). `domain_random`:
    uniform noise in the same ball during training only. `none`: plain MAPPO."""

    kind: Literal["pgd", "domain_random", "none"] = "pgd"
    epsilon: float = Field(0.05, ge=0.0, le=1.0)
    pgd_steps: int = Field(10, ge=1, le=100)
    weight: float = Field(0.5, ge=0.0, le=10.0)  # worst-case advantage weight, reached linearly
    weight_warmup: float = Field(0.5, gt=0.0, le=1.0)  # fraction of training to ramp the weight over
    kl_coef: float = Field(0.1, ge=0.0, le=100.0)
    q_lr: float = Field(5e-4, gt=0.0, le=1.0)
    q_tau: float = Field(0.01, gt=0.0, le=1.0)


class PPOConfig(StrictModel):
    hidden: list[int] = Field(default_factory=lambda: [128, 128])
    actor_lr: float = Field(5e-4, gt=0.0, le=1.0)
    critic_lr: float = Field(5e-4, gt=0.0, le=1.0)
    gamma: float = Field(0.99, gt=0.0, lt=1.0)
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    clip: float = Field(0.2, gt=0.0, le=1.0)
    epochs: int = Field(5, ge=1, le=100)
    minibatches: int = Field(2, ge=1, le=256)
    entropy_coef: float = Field(0.01, ge=0.0, le=1.0)
    value_coef: float = Field(1.0, ge=0.0, le=100.0)
    grad_clip: float = Field(10.0, gt=0.0)
    value_norm: bool = True

    @model_validator(mode="after")
    def _hidden(self) -> "PPOConfig":
        if not self.hidden or any(h < 1 or h > 4096 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of layer widths in 1..4096, got {self.hidden}")
        return self




class WarmStartConfig(StrictModel):
    """Behaviour cloning of the scripted lane-changing driver (`rtctl.vehicles.scripted`) before MAPPO: every
    worker plays `batches` batches with it; the actor is fitted to its choices (cross-entropy over the
    shield-masked behaviours) and the critic to the discounted returns, for `epochs` passes. 0 = off."""

    batches: int = Field(0, ge=0, le=10_000)
    epochs: int = Field(30, ge=1, le=1000)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    # DAPG (Rajeswaran et al. 2018): the cloning loss stays in every PPO minibatch with weight
    # bc_weight · bc_decay^iteration, so a few noisy advantages cannot unlearn a rare, decisive behaviour
    # (a lane change) before the critic can tell it is worth it
    bc_weight: float = Field(0.0, ge=0.0, le=100.0)
    bc_decay: float = Field(0.95, gt=0.0, le=1.0)


class MarlLogConfig(LogConfig):  # MAPPO's iterations are long: a checkpoint every 10, no TensorBoard by default
    checkpoint_every: int = Field(10, ge=1)
    tensorboard: bool = False


class MarlConfig(StrictModel):
    seed: int = 0
    method: Literal["full", "no_shield", "no_v2v", "non_robust", "domain_randomised"] = "full"
    iterations: int = Field(50, ge=1, le=1_000_000)  # each: one batch of episodes per worker, then PPO
    env: CarsEnvConfig = CarsEnvConfig()
    delay: DelayConfig = DelayConfig()
    robust: RobustConfig = RobustConfig()
    ppo: PPOConfig = PPOConfig()
    rollout: RolloutConfig = RolloutConfig()
    warm_start: WarmStartConfig = WarmStartConfig()
    log: MarlLogConfig = MarlLogConfig()
    torch_threads: int = Field(1, ge=1, le=256)

    @model_validator(mode="after")
    def _method(self) -> "MarlConfig":
        """The method name fixes the ablation switches, so a config cannot say one thing and do another."""
        want = METHOD_SWITCHES[self.method]
        have = (self.env.shield, self.env.v2v, self.robust.kind)
        if have != want:
            raise ValueError(f"method {self.method!r} needs env.shield={want[0]}, env.v2v={want[1]}, "
                             f"robust.kind={want[2]!r}; the config has {have}")
        return self


def for_method(cfg: MarlConfig, method: str) -> MarlConfig:
    """The same config (budget, seeds, scenario) switched to another ablation."""
    shield, v2v, kind = METHOD_SWITCHES[method]
    data = cfg.model_dump()
    data["method"] = method
    data["env"].update(shield=shield, v2v=v2v)
    data["robust"]["kind"] = kind
    return MarlConfig.model_validate(data)
