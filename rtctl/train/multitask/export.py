"""The checkpoint metadata of an exported multitask actor (`rtctl.policies.mlp.export_actor` writes it)."""
from __future__ import annotations

from typing import Any, Mapping


def export_meta(action: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """What an exported actor records (see `rtctl.policies.base`), from what the trainers hand to
    `rtctl.policies.mlp.export_actor`: one action per chunk; the control rate of the env in ``extra["env"]``
    (multistep), built once here to read it: its ``control_hz`` (the SO-101 arm's, for arm_reach) or ``1/dt``
    (Gymnasium's MuJoCo and classic-control envs), else None; radians and joint names for the arm (absolute
    joint targets). A bandit export (a one-shot design, no env) has no rate."""
    from rtctl.policies.base import checkpoint_meta

    dim = len(action["low"])
    rate, units, names = None, None, None
    if extra.get("env") is not None:
        from rtctl.train.multitask.envs import make_env

        env = make_env(extra["env"])
        try:
            u = env.unwrapped
            arm = getattr(u, "arm", None)  # ArmReachRL wraps the SO-101 sim
            rate = getattr(u, "control_hz", None) or getattr(arm, "control_hz", None)
            if rate is None and getattr(u, "dt", None):
                rate = 1.0 / float(u.dt)
            if arm is not None and action.get("mode") == "delta_state":
                from rtctl.sim.arm_env import JOINT_NAMES

                units = "rad"
                names = list(JOINT_NAMES) if len(JOINT_NAMES) == dim else None
        finally:
            env.close()
    return checkpoint_meta("mlp", rate, 1, units, dim, names, env_kind=extra.get("kind"))
