"""Build a `Policy` from its config section (inside the tick's process or inside a Ray actor)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from rtctl.config import StrictModel
from rtctl.policies.base import ActionChunk, chunk_for


class PolicyConfig(StrictModel):
    type: Literal["expert", "bc", "mlp", "lerobot"] = "expert"
    # bc: the .pt made by `rtctl train bc`; mlp: a policy.pt from `rtctl train multitask` / `rtctl export`;
    # lerobot: a LeRobot checkpoint folder (config.json + weights + processors), e.g. .../pretrained_model
    checkpoint: Optional[str] = None
    train_config: Optional[str] = None  # bc: if no checkpoint is given, train (once, cached) from this config
    horizon: int = Field(50, ge=1, le=1000)
    v_max: float = Field(1.5, gt=0.0, le=10.0)  # expert: fastest joint speed, rad/s
    extra_latency_ms: float = Field(0.0, ge=0.0, le=60000.0)  # emulate a large VLA on a CPU box
    task: str = ""  # lerobot: the language prompt (SmolVLA)
    device: str = "cpu"  # lerobot: torch device of the policy


class ExpertChunkPolicy:
    """The sim's scripted expert as a `Policy` (sim/ may not import policies/, so it is wrapped here)."""

    action_dim = 6

    def __init__(self, horizon: int, rate_hz: float, v_max: float) -> None:
        from rtctl.sim.arm_expert import ExpertPolicy

        self._expert = ExpertPolicy(horizon, rate_hz, v_max)
        self.chunk_size = horizon

    def reset(self) -> None:
        self._expert.reset()

    def predict_chunk(self, obs: Any) -> ActionChunk:
        return chunk_for(obs, self._expert.chunk(obs))


def resolve_checkpoint(cfg: PolicyConfig) -> PolicyConfig:
    """Make the checkpoint a config asks for on first use (seeded, cached under artifacts/)."""
    if cfg.checkpoint is None and cfg.train_config is not None:
        if cfg.type == "bc":
            from rtctl.train.bc import ensure_checkpoint
        elif cfg.type == "lerobot":
            from rtctl.train.lerobot_act import ensure_checkpoint
        else:
            return cfg
        return cfg.model_copy(update={"checkpoint": str(ensure_checkpoint(cfg.train_config))})
    return cfg


def make_policy(cfg: PolicyConfig, rate_hz: float) -> Any:
    if cfg.type == "expert":
        return ExpertChunkPolicy(cfg.horizon, rate_hz, cfg.v_max)
    if cfg.type == "bc":
        from rtctl.policies.bc import BCPolicy

        if cfg.checkpoint is None:
            raise ValueError("policy.checkpoint: required for policy type 'bc' (or give policy.train_config)")
        return BCPolicy.load(cfg.checkpoint)
    if cfg.type == "mlp":
        from rtctl.policies.mlp import MLPPolicy

        if cfg.checkpoint is None:
            raise ValueError("policy.checkpoint: required for policy type 'mlp' (a policy.pt from rtctl export)")
        return MLPPolicy.load(cfg.checkpoint)
    if cfg.type == "lerobot":
        from rtctl.policies.lerobot_adapter import LeRobotPolicy

        if cfg.checkpoint is None:
            raise ValueError("policy.checkpoint: required for policy type 'lerobot' (a LeRobot checkpoint folder, "
                             "or give policy.train_config)")
        policy = LeRobotPolicy.load(cfg.checkpoint, device=cfg.device, task=cfg.task)
        if cfg.horizon > policy.chunk_size:
            raise ValueError(f"policy.horizon: {cfg.horizon} is longer than the LeRobot policy's chunk "
                             f"({policy.chunk_size})")
        return policy
    raise ValueError(f"policy.type: unknown policy type {cfg.type!r}")
