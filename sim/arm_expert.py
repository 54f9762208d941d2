"""Scripted expert for the SO-101 tasks: inverse kinematics + synchronized joint-space ramps, as chunks.

Used to record demonstrations and as a reference policy. Everything here is a deterministic function of
(state, target): no hidden episode state, so the expert behaves the same under any chunk scheduler.

Chunk convention (same as `ActionChunk`): row 0 is the first command to send, for the tick at which
``state`` was measured; row k is for k ticks later. Row k = state + (k+1) ramp steps, so a chunk never
repeats the current position as its first command.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from .arm_env import GRIPPER_OPEN, READY_POSE, SITE_NAME, SO101Env, ctrl_bounds, load_model

DEFAULT_V_MAX = 1.5  # rad/s on the fastest joint: well inside the servo's force-limited speed
IK_TOL = 1e-4  # m
IK_ITERS = 200
IK_DAMPING = 0.02  # DLS lambda (m): keeps steps sane near the workspace edge
IK_JOINT_MARGIN = 0.05  # rad inside the joint and control ranges
# Fixed seeds, tried in order; the first collision-free solution within tolerance wins. The first one is
# the ready pose, so most targets come out in the same "elbow up, wrist down" family.
IK_SEEDS = (
    READY_POSE[:4],
    np.array([0.0, 0.0, 0.5, 1.0]),
    np.array([0.0, -1.2, 1.3, 0.2]),
    np.array([0.0, 0.5, 0.0, 1.2]),
)

_lock = threading.Lock()


class _Kin:
    """A private model/data pair for IK; never shared with an env."""

    def __init__(self, model_path: str | None) -> None:
        self.model = load_model(model_path)
        self.data = mujoco.MjData(self.model)
        self.site = self.model.site(SITE_NAME).id
        jr = self.model.jnt_range[:4]
        lo, hi = ctrl_bounds(self.model)
        self.q_low = np.maximum(jr[:, 0], lo[:4]) + IK_JOINT_MARGIN
        self.q_high = np.minimum(jr[:, 1], hi[:4]) - IK_JOINT_MARGIN
        self.ctrl_low, self.ctrl_high = lo, hi
        self.jacp = np.zeros((3, self.model.nv))

    def site_pos(self, q4: np.ndarray) -> np.ndarray:
        self.data.qpos[:] = 0.0
        self.data.qpos[:4] = q4
        self.data.qpos[5] = GRIPPER_OPEN
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        return self.data.site_xpos[self.site].copy()

    def solve(self, target: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, float, bool]:
        q = np.clip(seed, self.q_low, self.q_high)
        lam2 = IK_DAMPING**2
        err = target - self.site_pos(q)
        for _ in range(IK_ITERS):
            if np.linalg.norm(err) < IK_TOL:
                break
            mujoco.mj_jacSite(self.model, self.data, self.jacp, None, self.site)
            J = self.jacp[:, :4]
            dq = J.T @ np.linalg.solve(J @ J.T + lam2 * np.eye(3), err)
            q = np.clip(q + dq, self.q_low, self.q_high)
            err = target - self.site_pos(q)
        mujoco.mj_collision(self.model, self.data)
        return q, float(np.linalg.norm(err)), self.data.ncon == 0


_kins: dict[str | None, _Kin] = {}


def _kin(model_path: str | None) -> _Kin:
    key = None if model_path is None else str(model_path)
    if key not in _kins:
        _kins[key] = _Kin(key)
    return _kins[key]


@lru_cache(maxsize=8192)
def _ik_cached(target: tuple[float, float, float], model_path: str | None) -> tuple[float, ...]:
    kin = _kin(model_path)
    t = np.array(target)
    best: tuple[float, np.ndarray] | None = None
    for seed in IK_SEEDS:
        q, err, free = kin.solve(t, seed)
        score = err + (0.0 if free else 1.0)  # any collision-free solution beats a colliding one
        if best is None or score < best[0]:
            best = (score, q)
        if free and err < IK_TOL * 10:
            break
    return tuple(np.append(best[1], 0.0))


def ik(target_xyz: np.ndarray, model_path: str | Path | None = None) -> np.ndarray:
    """Arm joint angles (5,) placing the gripperframe site at ``target_xyz`` (wrist_roll fixed at 0).

    Position-only damped least squares from fixed seeds, so the answer depends on the target alone;
    results are cached per target (rounded to 1 µm). Out-of-reach targets return the closest pose found.
    """
    t = np.asarray(target_xyz, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"ik: target must be finite, got {t.tolist()}")
    key = tuple(float(v) for v in np.round(t, 6))
    with _lock:
        return np.array(_ik_cached(key, None if model_path is None else str(model_path)))


def expert_chunk(
    state: np.ndarray, target: np.ndarray, horizon: int, dt: float, v_max: float = DEFAULT_V_MAX
) -> np.ndarray:
    """(horizon, 6) absolute joint commands: a synchronized constant-velocity ramp from ``state``.

    Goal: IK of target[:3] when target[3] (active flag) > 0.5, else `READY_POSE`. All five arm joints
    arrive together; the fastest moves ``v_max*dt`` per row, the rest proportionally, and rows after
    arrival hold the goal. The gripper is held at `GRIPPER_OPEN`. Row 0 is the first command to send
    (for the tick ``state`` was measured at), row k for k ticks later. Clipped to the control ranges.
    """
    s = np.asarray(state, dtype=np.float64).reshape(6)
    tg = np.asarray(target, dtype=np.float64).reshape(4)
    if horizon < 1 or not dt > 0 or not v_max > 0:
        raise ValueError(f"expert_chunk: need horizon >= 1, dt > 0, v_max > 0 (got {horizon}, {dt}, {v_max})")
    goal = ik(tg[:3]) if tg[3] > 0.5 else READY_POSE[:5]
    delta = goal - s[:5]
    dist = float(np.max(np.abs(delta)))
    steps = np.arange(1, horizon + 1) * (v_max * dt)
    frac = np.ones(horizon) if dist == 0.0 else np.minimum(1.0, steps / dist)
    chunk = np.empty((horizon, 6))
    chunk[:, :5] = s[:5] + frac[:, None] * delta
    chunk[:, 5] = GRIPPER_OPEN
    kin = _kin(None)
    return np.clip(chunk, kin.ctrl_low, kin.ctrl_high)


class ExpertPolicy:
    """The expert in the `Policy` protocol's shape; `chunk(obs)` returns a plain (H, 6) array.

    (sim/ may not import policies/, so the runtime wraps `chunk` into `predict_chunk`.)
    """

    action_dim = 6

    def __init__(self, horizon: int = 50, control_hz: float = 30.0, v_max: float = DEFAULT_V_MAX) -> None:
        self.chunk_size = int(horizon)
        self.dt = 1.0 / float(control_hz)
        self.v_max = float(v_max)

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def chunk(self, obs: dict[str, Any]) -> np.ndarray:
        return expert_chunk(obs["state"], obs["target"], self.chunk_size, self.dt, self.v_max)


def rollout_demos(
    task: str,
    episodes: int,
    seed: int,
    horizon: int = 50,
    exec_steps: int = 25,
    control_hz: float = 30.0,
    v_max: float = DEFAULT_V_MAX,
    condition_on: str = "state",
    **env_kw: Any,
) -> dict[str, np.ndarray]:
    """Run the expert closed-loop and synchronously (predict, execute ``exec_steps`` rows, re-plan).

    ``condition_on="state"`` plans each chunk from the measured joint state; ``"command"`` from the last
    command sent, which with ``exec_steps=1`` makes the expert a reactive rate-limited command tracker (what
    a teleoperator's smooth command stream looks like): the recorded future actions are then a function of
    the current observation and the last command, i.e. a well-posed chunk-learning target even when the
    target moves, as in whack.

    Episode i is reset with seed ``seed + i``. Per-tick arrays are concatenated over episodes
    (LeRobot-style): ``states`` (T,6) and ``targets`` (T,4) = the observation at the tick, ``actions``
    (T,6) = the command sent at that tick, ``episode_index`` (T,), ``frame_index`` (T,). Per-episode
    arrays: ``success``, ``hits``, ``expired``, ``length`` (ticks).
    """
    if not 1 <= exec_steps <= horizon:
        raise ValueError(f"rollout_demos: need 1 <= exec_steps <= horizon, got {exec_steps}, {horizon}")
    if condition_on not in ("state", "command"):
        raise ValueError(f"rollout_demos: condition_on must be 'state' or 'command', got {condition_on!r}")
    env = SO101Env(task, control_hz=control_hz, **env_kw)
    policy = ExpertPolicy(horizon, control_hz, v_max)
    cols: dict[str, list] = {k: [] for k in ("states", "targets", "actions", "episode_index", "frame_index")}
    per_ep: dict[str, list] = {k: [] for k in ("success", "hits", "expired", "length")}
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            policy.reset()
            t, done = 0, False
            command = np.asarray(obs["state"], dtype=np.float64).copy()
            while not done:
                cond = obs if condition_on == "state" else {**obs, "state": command}
                for row in policy.chunk(cond)[:exec_steps]:
                    command = row
                    cols["states"].append(obs["state"])
                    cols["targets"].append(obs["target"])
                    cols["actions"].append(row)
                    cols["episode_index"].append(ep)
                    cols["frame_index"].append(t)
                    obs, _, terminated, truncated, info = env.step(row)
                    t += 1
                    done = terminated or truncated
                    if done:
                        break
            per_ep["success"].append(bool(info["success"]))
            per_ep["hits"].append(int(info["hits"]))
            per_ep["expired"].append(int(info["expired"]))
            per_ep["length"].append(t)
    finally:
        env.close()
    out = {k: np.asarray(v) for k, v in cols.items()}
    out.update({k: np.asarray(v) for k, v in per_ep.items()})
    return out
