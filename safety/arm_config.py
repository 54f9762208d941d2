"""Settings of the arm shield (SO-101 defaults), validated on construction."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields


# Servo tracking error of the MuJoCo SO-101 at 30 Hz under smooth targets (≤ 40 rad/s² change per tick),
# by speed limit (rad/s): (worst |q − segment|, worst growth over a tick beyond |q − ū| at its start), per
# joint, the worst over 100 random episodes (sim/servo_tracking.py, seed 0) rounded up by 20 %; held-out
# seeds stay inside (tests/test_safety_mujoco.py). Joint 2 (shoulder lift) carries the gravity load.
SO101_TRACKING = {
    1.0: ((0.031, 0.048, 0.034, 0.025, 0.019, 0.017), (0.026, 0.043, 0.032, 0.022, 0.017, 0.013)),
    1.5: ((0.044, 0.063, 0.049, 0.034, 0.032, 0.033), (0.029, 0.056, 0.048, 0.029, 0.028, 0.028)),
    2.0: ((0.062, 0.115, 0.054, 0.039, 0.038, 0.038), (0.040, 0.059, 0.048, 0.032, 0.029, 0.028)),
    2.5: ((0.062, 0.116, 0.074, 0.042, 0.043, 0.042), (0.046, 0.088, 0.049, 0.040, 0.038, 0.030)),
}


def so101_tracking(max_joint_speed: float) -> tuple[tuple, tuple]:
    """(tracking_error, tracking_growth) measured at the smallest tabulated speed limit ≥ max_joint_speed."""
    for v in sorted(SO101_TRACKING):
        if max_joint_speed <= v + 1e-9:
            return SO101_TRACKING[v]
    raise ValueError(f"no measured SO-101 tracking error above {max(SO101_TRACKING)} rad/s (asked "
                     f"{max_joint_speed}); measure it with rtctl.sim.servo_tracking and give tracking_error")


@dataclass(frozen=True)
class ArmShieldConfig:
    dt: float = 1.0 / 30.0  # control period: one joint-position target per tick
    gamma: float = 0.5  # discrete-time class-K rate: h(u) − μ ≥ (1 − γ)(h(ū) − μ)
    max_joint_speed: float | tuple = 1.0  # rad/s per joint: the per-tick target change is ≤ this · dt
    # rad/s² per joint: the per-tick change may differ from the last one by ≤ this · dt², except that
    # stopping (holding the last target) is always allowed — smooth commands keep the servos' tracking
    # error small (SO101_TRACKING was measured at 40 rad/s²; unlimited jerky commands do much worse)
    max_joint_accel: float | tuple = 10.0
    # Tracking-error model (rad, per joint): during a tick |q(t) − commanded segment| ≤
    # max(tracking_error, |q − ū| measured at the tick's start + tracking_growth). Both depend on the speed
    # and acceleration limits: `so101_tracking(max_joint_speed)` gives the MuJoCo SO-101 values.
    tracking_error: float | tuple = SO101_TRACKING[1.0][0]
    tracking_growth: float | tuple = SO101_TRACKING[1.0][1]
    joint_margin: float = 0.02  # rad kept inside the joint and ctrl ranges
    clearance: float = 0.01  # m kept between arm spheres and obstacles / workspace faces
    self_clearance: float = 0.005  # m kept between self-collision sphere pairs
    workspace: tuple = ((-0.15, 0.5), (-0.4, 0.4), (0.0, 0.5))  # m, (x, y, z) box in the base frame; z = 0: table
    sphere_spacing: float = 0.03  # m between the spheres covering one capsule
    collision_bodies: tuple = ("upper_arm", "lower_arm", "wrist", "gripper", "moving_jaw")
    workspace_bodies: tuple = ("lower_arm", "wrist", "gripper", "moving_jaw")
    self_pairs: tuple = (("gripper", "base"), ("moving_jaw", "base"), ("wrist", "base"),
                         ("gripper", "upper_arm"), ("moving_jaw", "upper_arm"))
    obstacle_speed: float = 0.0  # m/s bound on obstacle motion when the context gives none
    weights: float | tuple = 1.0  # per-joint QP weights
    slack_max: float = 0.005  # m: the most a barrier row may be relaxed
    slack_weight: float = 1e6
    max_state_age_s: float = 0.2
    backend: str = "auto"
    warm_start: bool = False  # DAQP warm start: measured no faster on these problem sizes

    def __post_init__(self) -> None:
        ranges = {"dt": (1e-4, 1.0), "gamma": (1e-3, 1.0), "joint_margin": (0.0, 0.5), "clearance": (0.0, 1.0),
                  "self_clearance": (0.0, 1.0), "sphere_spacing": (1e-3, 1.0), "obstacle_speed": (0.0, 10.0),
                  "slack_max": (0.0, 1.0), "slack_weight": (1.0, 1e12), "max_state_age_s": (0.0, 10.0)}
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo <= v <= hi):
                raise ValueError(f"ArmShieldConfig.{name} must be a number in [{lo}, {hi}], got {v!r}")
        for name, lo, hi in (("max_joint_speed", 1e-3, 50.0), ("max_joint_accel", 1e-3, 1e4), ("tracking_error", 0.0, 1.0), ("tracking_growth", 0.0, 1.0), ("weights", 1e-9, 1e9)):
            v = getattr(self, name)
            vals = v if isinstance(v, (tuple, list)) else (v,)
            if not all(isinstance(x, (int, float)) and math.isfinite(x) and lo <= x <= hi for x in vals):
                raise ValueError(f"ArmShieldConfig.{name} must be numbers in [{lo}, {hi}] (one or per joint), got {v!r}")
        box = self.workspace
        if not (len(box) == 3 and all(len(r) == 2 and r[0] < r[1] for r in box)):
            raise ValueError(f"ArmShieldConfig.workspace must be ((xlo, xhi), (ylo, yhi), (zlo, zhi)), got {box!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "ArmShieldConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"ArmShieldConfig: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**{k: tuple(map(tuple, v)) if k in ("workspace", "self_pairs") else
                      (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})
