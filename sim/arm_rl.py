"""SO-101 reach for reinforcement learning: flat observation, delta-joint action, variation sets.

`SO101Env` takes absolute joint targets; a policy learns faster with small relative moves, so the RL action
is 5 numbers in [-1, 1] and the command is ``observed joint positions + delta_scale * action`` on the five
arm joints, with the gripper held open. `action_spec()` describes exactly this map so an exported actor
(`rtctl.policies.mlp.MLPPolicy`, mode ``delta_state``) produces the same absolute targets when deployed.
Reward: the env's dense reach reward (minus the gripper-target distance in metres each tick, +10 on touch,
episode ends on touch).

Observation (16,): ``state`` (6), ``target`` (4), and two features computed from the *observed* joints:
the tool position by forward kinematics and the target minus that position. Without them a policy must
learn the arm's kinematics from scratch, which no method managed within the benchmark budget. The features
use only ``state`` and ``target``, so a deployed policy computes them too: `feature_spec()` gives the
kinematic chain as data (read from the MuJoCo model) for `MLPPolicy`'s ``chain_fk`` feature.

Variation sets: `arm_variation_grid()` (65 tasks: 2 mass x 2 damping x 2 actuator gain x 2 observation
noise x 4 latency values, plus the nominal arm) and `arm_held_out()` (8 extreme arms beyond that range).
"""
from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from .arm_env import GRIPPER_OPEN, JOINT_NAMES, SITE_NAME, ArmParams, SO101Env
from .variations import VariationSet

ARM_JOINTS = (0, 1, 2, 3, 4)
GRIPPER = 5
OBS_KEYS = ("state", "target")
NOMINAL = {"mass_scale": 1.0, "damping_scale": 1.0, "gain_scale": 1.0, "obs_noise_std": 0.0,
           "action_latency_ticks": 0}


def arm_variation_grid() -> VariationSet:
    return VariationSet.grid({
        "mass_scale": [0.7, 1.4],
        "damping_scale": [0.6, 1.6],
        "gain_scale": [0.6, 1.4],
        "obs_noise_std": [0.0, 0.02],
        "action_latency_ticks": [0, 1, 2, 3],
    }, nominal=NOMINAL, name="arm_reach_grid")


def arm_held_out() -> VariationSet:
    return VariationSet.grid({
        "mass_scale": [0.5, 1.8],
        "damping_scale": [0.4, 2.0],
        "gain_scale": [0.45, 1.7],
        "obs_noise_std": [0.04],
        "action_latency_ticks": [3],
    }, name="arm_reach_held_out")


class ArmReachRL(gym.Env):
    metadata: dict[str, Any] = {"render_modes": []}
    obs_keys = OBS_KEYS

    def __init__(self, control_hz: float = 30.0, episode_s: float = 3.0, delta_scale: float = 0.1) -> None:
        if not delta_scale > 0:
            raise ValueError(f"ArmReachRL: delta_scale must be > 0, got {delta_scale!r}")
        self.arm = SO101Env("reach", control_hz=control_hz, episode_s=episode_s)
        self.delta_scale = float(delta_scale)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(16,), dtype=np.float64)
        self._kin = mujoco.MjData(self.arm.model)  # FK of the observed joints; never touches the simulation
        self._site = self.arm.model.site(SITE_NAME).id
        self.action_space = spaces.Box(-1.0, 1.0, shape=(len(ARM_JOINTS),), dtype=np.float64)
        self._obs: dict[str, np.ndarray] | None = None

    def set_variation(self, params: Mapping[str, Any]) -> None:
        p = dict(params)
        p["action_latency_ticks"] = int(p.get("action_latency_ticks", 0))
        self.arm.set_params(ArmParams(**p))

    def tool_position(self, state: np.ndarray) -> np.ndarray:
        self._kin.qpos[:] = np.asarray(state, dtype=np.float64).reshape(-1)[: self.arm.model.nq]
        mujoco.mj_kinematics(self.arm.model, self._kin)
        return self._kin.site_xpos[self._site].copy()

    def flat(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        raw = [np.asarray(obs[k], dtype=np.float64).reshape(-1) for k in OBS_KEYS]
        tool = self.tool_position(raw[0])
        return np.concatenate([*raw, tool, raw[1][:3] - tool])

    def feature_spec(self) -> list[dict[str, Any]]:
        """The observation's computed part as data: forward kinematics of the arm joints (see module doc)."""
        m = self.arm.model
        links = []
        for name in JOINT_NAMES[: len(ARM_JOINTS)]:
            j = m.joint(name)
            if not (np.allclose(m.jnt_axis[j.id], [0, 0, 1]) and np.allclose(m.jnt_pos[j.id], 0)):
                raise ValueError(f"joint {name}: chain_fk expects a z hinge at its body origin")
            b = j.bodyid[0]
            links.append({"pos": m.body_pos[b].tolist(), "quat": m.body_quat[b].tolist(),
                          "qpos_index": int(m.jnt_qposadr[j.id])})
        return [{"kind": "chain_fk", "state_key": "state", "target_key": "target", "links": links,
                 "tool": m.site_pos[self._site].tolist()}]

    def command(self, obs: Mapping[str, np.ndarray], action: np.ndarray) -> np.ndarray:
        cmd = np.zeros(6)
        cmd[list(ARM_JOINTS)] = np.asarray(obs["state"])[list(ARM_JOINTS)] + self.delta_scale * np.clip(action, -1, 1)
        cmd[GRIPPER] = GRIPPER_OPEN
        return np.clip(cmd, self.arm.action_space.low, self.arm.action_space.high)

    def action_spec(self) -> dict[str, Any]:
        return {"mode": "delta_state", "state_key": "state", "joints": list(ARM_JOINTS), "scale": self.delta_scale,
                "low": self.arm.action_space.low.tolist(), "high": self.arm.action_space.high.tolist(),
                "fixed": {GRIPPER: GRIPPER_OPEN}}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._obs, info = self.arm.reset(seed=seed, options=options)
        return self.flat(self._obs), info

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("ArmReachRL.step before reset")
        obs, reward, terminated, truncated, info = self.arm.step(self.command(self._obs, np.asarray(action)))
        self._obs = obs
        if terminated or truncated:
            dist = float(np.linalg.norm(info["gripper_pos"] - obs["target"][:3]))
            info = {**info, "episode_metrics": {"success": float(info["success"]), "final_distance": dist}}
        return self.flat(obs), float(reward), terminated, truncated, info
