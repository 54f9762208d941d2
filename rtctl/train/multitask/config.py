"""Config schema of `rtctl train multitask` (YAML -> validated models; unknown keys are errors)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from rtctl.config import StrictModel
from rtctl.train.sections import LogConfig, RolloutConfig


class GymEnvConfig(StrictModel):
    # opamp: the two-stage op-amp sizing benchmark (bandit mode); arm_reach: SO-101 reach with a
    # delta-joint action (multistep); gym: any Gymnasium id with Box spaces, varied by attribute.
    kind: Literal["opamp", "arm_reach", "gym"]
    backend: Literal["analytic", "ngspice"] = "analytic"  # opamp only
    specs_path: str | None = None  # opamp only; default: the committed sim/analog/specs.yaml
    gym_id: str | None = None  # gym only
    kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to the env constructor


class TasksConfig(StrictModel):
    # pruned: RobustAnalog (worst task per k-means cluster + nominal, re-pruned); all: every task every
    # iteration; uniform: `per_iteration` tasks drawn uniformly (domain randomisation); nominal: nominal only.
    schedule: Literal["pruned", "all", "uniform", "nominal"] = "pruned"
    per_iteration: int = Field(8, ge=1, le=10_000)
    prune_k: int | Literal["auto"] = "auto"  # auto: best silhouette in [prune_k_min, prune_k_max]
    prune_k_min: int = Field(2, ge=1, le=64)
    prune_k_max: int = Field(4, ge=1, le=64)
    prune_period: int = Field(10, ge=1, le=1_000_000)  # iterations between full evaluations + re-pruning
    include_nominal: bool = True
    # EPOpt / CVaR: train only on the worst fraction of each iteration's results (1.0 = off).
    cvar_epsilon: float = Field(1.0, gt=0.0, le=1.0)
    critic_input: Literal["onehot", "params", "none"] = "onehot"

    @model_validator(mode="after")
    def _k_range(self) -> "TasksConfig":
        if self.prune_k_min > self.prune_k_max:
            raise ValueError(f"prune_k_min ({self.prune_k_min}) must be <= prune_k_max ({self.prune_k_max})")
        return self


class CombinerConfig(StrictModel):
    kind: Literal["pcgrad", "sum", "cagrad"] = "pcgrad"
    cagrad_c: float = Field(0.5, ge=0.0, le=10.0)


class AgentConfig(StrictModel):
    hidden: list[int] = Field(default_factory=lambda: [256, 256, 256])
    actor_lr: float = Field(1e-4, gt=0.0, le=1.0)
    critic_lr: float = Field(1e-3, gt=0.0, le=1.0)
    gamma: float = Field(0.0, ge=0.0, lt=1.0)  # 0 = one-step (bandit) critic
    tau: float = Field(0.005, gt=0.0, le=1.0)
    batch_per_task: int = Field(64, ge=1, le=65_536)  # stratified: per task; pooled: whole batch
    exploration_std: float = Field(0.2, ge=0.0, le=2.0)
    twin: bool = False  # TD3's clipped double-Q
    policy_delay: int = Field(1, ge=1, le=100)
    target_noise: float = Field(0.2, ge=0.0, le=2.0)
    target_noise_clip: float = Field(0.5, ge=0.0, le=2.0)
    grad_clip: float = Field(0.0, ge=0.0)  # 0 = off

    @model_validator(mode="after")
    def _hidden(self) -> "AgentConfig":
        if not self.hidden or any(h < 1 or h > 8192 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of layer widths in 1..8192, got {self.hidden}")
        return self


class ReplayConfig(StrictModel):
    capacity_per_task: int = Field(1000, ge=1, le=10_000_000)
    sampling: Literal["stratified", "pooled"] = "stratified"


class BanditConfig(StrictModel):
    budget_sims: int = Field(20_000, ge=1)  # corner simulations, everything counted
    warmup_steps: int = Field(10, ge=0)  # random designs before the actor takes over
    updates_per_step: int = Field(1, ge=1, le=1000)
    # One rule for every full-corner check: evaluate all corners ("never" stop early), or stop at the
    # first failing corner in the set's order ("first_fail"; re-pruning still simulates every corner).
    early_stop: Literal["never", "first_fail"] = "never"


class MultistepConfig(StrictModel):
    budget_env_steps: int = Field(50_000, ge=1)
    episodes_per_task: int = Field(1, ge=1, le=1000)
    learning_starts: int = Field(2_000, ge=0)  # env steps of random actions first
    updates_per_step: float = Field(0.5, gt=0.0, le=64.0)  # gradient updates per collected env step
    eval_every_steps: int = Field(10_000, ge=1)  # measurement only, not counted as training env steps
    eval_episodes: int = Field(1, ge=1, le=100)




class MultitaskConfig(StrictModel):
    seed: int = Field(0, ge=0, le=2**31 - 1)
    mode: Literal["bandit", "multistep"]
    env: GymEnvConfig
    # A builtin set name, or a sim.variations spec ({grid|sample|list, nominal}); opamp defaults to its
    # committed corners.
    variations: str | dict[str, Any] | None = None
    held_out: str | dict[str, Any] | None = None
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    combiner: CombinerConfig = Field(default_factory=CombinerConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    bandit: BanditConfig = Field(default_factory=BanditConfig)
    multistep: MultistepConfig = Field(default_factory=MultistepConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    torch_threads: int = Field(1, ge=1, le=256)

    @model_validator(mode="after")
    def _mode_env(self) -> "MultitaskConfig":
        if (self.mode == "bandit") != (self.env.kind == "opamp"):
            raise ValueError(f"mode '{self.mode}' does not fit env.kind '{self.env.kind}' "
                             "(bandit is for opamp sizing, multistep for control envs)")
        if self.env.kind == "gym" and not self.env.gym_id:
            raise ValueError("env.kind 'gym' needs env.gym_id")
        return self
