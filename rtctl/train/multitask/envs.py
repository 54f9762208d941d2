"""Env and variation-set construction for the multi-task trainer (shared by the learner and Ray workers)."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np

from rtctl.sim.variations import VariationSet

from rtctl.train.multitask.config import GymEnvConfig


def _arm_sets() -> dict[str, Callable[[], VariationSet]]:
    from rtctl.sim.arm_rl import arm_held_out, arm_variation_grid
    return {"arm_reach_grid": arm_variation_grid, "arm_reach_held_out": arm_held_out}


def _opamp_sets() -> dict[str, Callable[[], VariationSet]]:
    from rtctl.sim.analog.spec import load_benchmark
    return {"opamp_pvt": lambda: load_benchmark().corners, "opamp_pvt_held_out": lambda: load_benchmark().held_out}


BUILTIN_SETS: dict[str, Callable[[], dict[str, Callable[[], VariationSet]]]] = {
    "arm_reach_grid": _arm_sets, "arm_reach_held_out": _arm_sets,
    "opamp_pvt": _opamp_sets, "opamp_pvt_held_out": _opamp_sets,
}


def variation_set(spec: str | Mapping[str, Any] | None, default: str | None, what: str) -> VariationSet | None:
    """A builtin name or a declarative spec (see `rtctl.sim.variations.VariationSet.from_spec`)."""
    spec = spec if spec is not None else default
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in BUILTIN_SETS:
            raise ValueError(f"{what}: unknown builtin variation set {spec!r} (known: {sorted(BUILTIN_SETS)})")
        return BUILTIN_SETS[spec]()[spec]()
    return VariationSet.from_spec(spec, name=what)


DEFAULT_SETS = {"arm_reach": ("arm_reach_grid", "arm_reach_held_out"), "opamp": ("opamp_pvt", "opamp_pvt_held_out"),
                "gym": (None, None)}


class _UnitAction(gym.ActionWrapper):
    """Actor outputs [-1, 1]^n; map them linearly onto the env's Box."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        box = env.action_space
        if not isinstance(box, gym.spaces.Box):
            raise ValueError(f"multistep training needs a Box action space, got {box}")
        self.low, self.high = box.low.astype(np.float64), box.high.astype(np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=box.shape, dtype=np.float64)

    def action(self, a):
        return self.low + (np.clip(a, -1, 1) + 1) * 0.5 * (self.high - self.low)


def make_env(cfg: GymEnvConfig | Mapping[str, Any]) -> gym.Env:
    """A flat-Box-observation env whose actions live in [-1, 1]^n."""
    cfg = cfg if isinstance(cfg, GymEnvConfig) else GymEnvConfig(**cfg)
    if cfg.kind == "arm_reach":
        from rtctl.sim.arm_rl import ArmReachRL
        return ArmReachRL(**cfg.kwargs)
    if cfg.kind == "gym":
        env = gym.make(cfg.gym_id, **cfg.kwargs)
        if not isinstance(env.observation_space, gym.spaces.Box):
            raise ValueError(f"gym env {cfg.gym_id} needs a Box observation space, got {env.observation_space}")
        return _UnitAction(env)
    raise ValueError(f"env kind {cfg.kind!r} is not a multistep env")


def action_spec(env: gym.Env) -> dict[str, Any]:
    """How an exported actor's [-1, 1] output becomes the env's command (see rtctl.policies.mlp)."""
    base = env.unwrapped if not hasattr(env, "action_spec") else env
    if hasattr(base, "action_spec"):
        return base.action_spec()
    if isinstance(env, _UnitAction):
        return {"mode": "affine", "low": env.low.tolist(), "high": env.high.tolist()}
    raise ValueError(f"{type(env).__name__} does not say how its actions map to commands")


def obs_features(env: gym.Env) -> list[dict[str, Any]]:
    """Computed observation features an exported actor must reproduce (see rtctl.policies.mlp)."""
    spec = getattr(env.unwrapped, "feature_spec", None)
    return spec() if spec is not None else []


def obs_keys(env: gym.Env) -> list[str]:
    """Observation entries an exported actor concatenates (a plain gym env has one: "obs")."""
    return list(getattr(env.unwrapped, "obs_keys", ("obs",)))
