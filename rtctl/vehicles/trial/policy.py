"""Behaviour policies for a trial car, behind the `Policy` protocol (chunk of one behaviour index).

The observation a car process hands its policy: ``state`` (s, y, ψ, v), ``neighbours`` (the shield's
neighbour table: V2V cars with ages, sensed cars, map obstacles), ``crossing`` (the crossing-traffic table
at the intersection, else None), ``mask`` (the shield's allowed behaviours,
`rtctl.safety.action_mask`), ``tick``. `KeepLanePolicy` is the scripted stand-in until a trained actor is
deployed; `load_policy` builds the configured one (the MAPPO actor from `rtctl.policies.marl_actor`, which also
reads ``observation`` and ``action_mask``: `PolicyInput` builds them as the trainer did).
"""
from __future__ import annotations

import importlib

import numpy as np

from rtctl.policies.base import ActionChunk, chunk_for
from rtctl.safety.behaviours import DEFAULT_BEHAVIOURS

KEEP_LANE = next(i for i, b in enumerate(DEFAULT_BEHAVIOURS) if b.name == "keep_lane")
EMERGENCY_STOP = next(i for i, b in enumerate(DEFAULT_BEHAVIOURS) if b.stop)


class KeepLanePolicy:
    """Keep the lane at the target speed (the behaviour's reference tracks the speed); the shield slows the
    car behind slower traffic."""

    chunk_size = 1
    action_dim = 1

    def reset(self) -> None:
        pass

    def predict_chunk(self, obs) -> ActionChunk:
        return chunk_for(obs, np.array([[KEEP_LANE]]))


def load_policy(kind: str, checkpoint: str | None):
    """`keep_lane` or `marl` (imports torch only then: a scripted car stays small)."""
    if kind == "keep_lane":
        return KeepLanePolicy()
    try:
        mod = importlib.import_module("rtctl.policies.marl_actor")
    except ModuleNotFoundError as err:
        raise RuntimeError("policy.type 'marl' needs rtctl.policies.marl_actor (the MAPPO trainer's export), "
                           "which this build does not have") from err
    return mod.MarlActorPolicy(checkpoint)


class PolicyInput:
    """Builds what a policy reads from what the car knows. The MARL actor gets the trainer's own observation
    (`rtctl.sim.vehicles.observe.observe`, with the ObsConfig stored in its export) and the shield's action mask
    over the behaviours; the scripted policy only needs the state."""

    def __init__(self, policy, shield, track, goal_s: float) -> None:
        self.policy, self.shield, self.track, self.goal_s = policy, shield, track, goal_s
        meta = getattr(policy, "meta", None)
        self.obs_cfg = None
        if meta is not None:
            from rtctl.sim.vehicles.observe import ObsConfig

            self.obs_cfg = ObsConfig(**meta["obs_config"])

    def __call__(self, state: np.ndarray, accel: float, nb: np.ndarray, tick: int,
                 crossing: np.ndarray | None = None, drive_lane: int | None = None) -> dict:
        obs = {"state": state, "neighbours": nb, "crossing": crossing, "tick": tick}
        if self.obs_cfg is not None:
            from rtctl.safety.behaviours import action_mask
            from rtctl.sim.vehicles.observe import observe

            cx = None if crossing is None else crossing[None]
            lanes = None if drive_lane is None else np.array([drive_lane])
            mask, _, _ = action_mask(self.shield, state[None], nb[None], cx, lanes=lanes)
            obs["action_mask"] = mask[0]
            obs["observation"] = observe(state[None], np.array([accel]), np.array([self.goal_s - state[0]]),
                                         nb[None], cx, self.track.n_lanes, self.track.lane_width, self.obs_cfg,
                                         drive_lane=lanes)[0]
        return obs
