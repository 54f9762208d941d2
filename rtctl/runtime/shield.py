"""The safety shield in the control tick: every command passes `rtctl.safety` before the driver.

`ShieldStepConfig` is the `shield:` part of a run config (on by default). `ArmShieldStep` adapts the arm
shield to the tick: it filters the scheduler's command given the measured joints and the command applied
last tick, keeps per-tick diagnostics for the log and totals for summary.json.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional

import numpy as np
from pydantic import Field

from rtctl.config import ConfigError, StrictModel


class ShieldStepConfig(StrictModel):
    enabled: bool = True
    # The servo can do ~4.7 rad/s (STS3215 at 7.4 V); the policies command ≤ ~1 rad/s. The tracking-error
    # margin grows with the limit (measured: rtctl.safety.SO101_TRACKING), so the default stays low.
    max_joint_speed: float = Field(1.0, gt=0.0, le=10.0)
    max_joint_accel: float = Field(40.0, gt=0.0, le=1000.0)
    # Per-joint tracking-error bounds (rad): worst case, and growth in a tick beyond the measured error.
    # None: the SO-101 values measured in MuJoCo at max_joint_speed; a real arm: measure and give both.
    tracking_error: Optional[list[Annotated[float, Field(ge=0.0, le=0.5)]]] = Field(None, min_length=6, max_length=6)
    tracking_growth: Optional[list[Annotated[float, Field(ge=0.0, le=0.5)]]] = Field(None, min_length=6, max_length=6)
    clearance: float = Field(0.01, ge=0.0, le=0.2)
    obstacles: list[list[float]] = Field(default_factory=list)  # [x, y, z, radius] in metres, base frame
    max_state_age_s: float = Field(0.2, gt=0.0, le=10.0)


def _tracking(cfg: ShieldStepConfig) -> dict[str, tuple]:
    if (cfg.tracking_error is None) != (cfg.tracking_growth is None):
        raise ConfigError("config error: keys 'shield.tracking_error' and 'shield.tracking_growth' go together "
                          "(give both, measured on your arm, or neither for the SO-101 defaults)")
    if cfg.tracking_error is None:
        return {}
    return {"tracking_error": tuple(cfg.tracking_error), "tracking_growth": tuple(cfg.tracking_growth)}


class ArmShieldStep:
    def __init__(self, cfg: ShieldStepConfig, rate_hz: float, model_path: Optional[str] = None) -> None:
        from rtctl.safety import so101_shield
        from rtctl.sim.arm_env import MODEL_PATH

        for ob in cfg.obstacles:
            if len(ob) != 4 or not all(np.isfinite(ob)) or ob[3] <= 0:
                raise ConfigError(f"config error: key 'shield.obstacles' entry {ob!r} must be [x, y, z, radius>0]")
        try:
            self.shield = so101_shield(str(model_path or MODEL_PATH), dt=1.0 / rate_hz,
                                       max_joint_speed=cfg.max_joint_speed, max_joint_accel=cfg.max_joint_accel,
                                       clearance=cfg.clearance, **_tracking(cfg),
                                       max_state_age_s=cfg.max_state_age_s)
        except ValueError as err:
            raise ConfigError(f"config error in shield: {err}") from None
        self.context = {"obstacles": np.asarray(cfg.obstacles, float).reshape(-1, 4)} if cfg.obstacles else {}

    def __call__(self, obs: dict, command: np.ndarray, last_applied: Optional[np.ndarray]) -> tuple[np.ndarray, dict]:
        from rtctl.safety import ArmState

        u, info = self.shield.filter(ArmState(q=np.asarray(obs["state"], float), u_prev=last_applied),
                                     command, self.context)
        return u, {"status": info.status, "intervened": bool(info.intervened), "min_barrier": info.h_min,
                   "slack": info.slack, "solve_us": info.solve_us, "reason": info.reason}

    def reset(self) -> None:
        self.shield.reset()

    def counts(self) -> dict[str, Any]:
        return self.shield.counts.as_dict()


# the arms the shield has a model for (safety/arm_config.py: the SO-101's joints, limits, tracking): the sim arm
# and the LeRobot SO-100/101 followers
ARM_MODELS = ("sim_arm", "so100_follower", "so101_follower")


def make_shield(cfg: ShieldStepConfig, arm: str, rate_hz: float) -> Optional[ArmShieldStep]:
    """The shield step for ``arm`` (a driver type, or a LeRobot robot type), or None when it is off."""
    if not cfg.enabled:
        return None
    if arm in ARM_MODELS:
        return ArmShieldStep(cfg, rate_hz)
    raise ConfigError(f"config error: key 'shield' has an arm model only for {', '.join(ARM_MODELS)}; "
                      f"set shield.enabled: false for {arm!r}")
