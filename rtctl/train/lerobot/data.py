"""The sim arm's scripted demos as a `LeRobotDataset` (v3.0 layout, local root, no hub, no video encoding).

One frame per control tick: ``observation.state`` (6 joint positions, rad), ``observation.environment_state``
(target xyz + active flag: the sim's stand-in for vision), ``action`` (the command sent at that tick, rad),
optionally ``observation.images.workspace`` stored as PNG images, and the episode's language ``task``.
`lerobot-train --dataset.root=DIR` and `LeRobotDataset(repo_id, root=DIR)` read it like any recorded dataset;
`load_columns` reads it back as the numpy columns rtctl's offset sampler works on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from rtctl.sim.arm_env import JOINT_NAMES

CAMERA_KEY = "observation.images.workspace"
TASK_TEXT = {"reach": "reach the target", "whack": "whack the target"}
COLUMNS = {"states": "observation.state", "targets": "observation.environment_state", "actions": "action"}


def demo_features(image_shape: Optional[tuple[int, int, int]] = None) -> dict[str, dict[str, Any]]:
    joints = list(JOINT_NAMES)
    feats: dict[str, dict[str, Any]] = {
        "observation.state": {"dtype": "float32", "shape": (len(joints),), "names": joints},
        "observation.environment_state": {"dtype": "float32", "shape": (4,), "names": ["x", "y", "z", "active"]},
        "action": {"dtype": "float32", "shape": (len(joints),), "names": joints},
    }
    if image_shape is not None:
        feats[CAMERA_KEY] = {"dtype": "image", "shape": tuple(image_shape), "names": ["height", "width", "channels"]}
    return feats


def write_demos(demos: dict[str, np.ndarray], root: str | Path, repo_id: str, fps: int, task: str,
                images: Optional[np.ndarray] = None):
    """Write per-tick demo arrays (as `rtctl.sim.arm_expert.rollout_demos` returns them) to a new dataset
    at ``root`` (which must not exist yet). ``images``: optional (T, H, W, 3) uint8, one per frame."""
    import datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    datasets.disable_progress_bars()  # one "Map" bar per saved episode otherwise
    ep = np.asarray(demos["episode_index"])
    n = len(ep)
    for key in COLUMNS:
        if len(demos[key]) != n:
            raise ValueError(f"write_demos: {key!r} has {len(demos[key])} rows, episode_index has {n}")
    if images is not None and (len(images) != n or images.ndim != 4 or images.shape[-1] != 3):
        raise ValueError(f"write_demos: images must be ({n}, H, W, 3), got {np.shape(images)}")
    ds = LeRobotDataset.create(repo_id, fps=int(fps), features=demo_features(None if images is None else images.shape[1:]),
                               root=root, robot_type="so101_follower", use_videos=False)
    cols = {lk: np.asarray(demos[k], np.float32) for k, lk in COLUMNS.items()}
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], n]):
        for i in range(a, b):
            frame = {lk: v[i] for lk, v in cols.items()}
            if images is not None:
                frame[CAMERA_KEY] = images[i]
            ds.add_frame({**frame, "task": task})
        ds.save_episode()
    ds.finalize()
    return ds


def replay_images(task: str, demos: dict[str, np.ndarray], seed: int, control_hz: float) -> np.ndarray:
    """The camera frame at every demo tick: re-run each episode (same reset seed, same commands) with the
    camera on. Needs an offscreen GL (``MUJOCO_GL=egl``)."""
    from rtctl.sim.arm_env import SO101Env

    ep = np.asarray(demos["episode_index"])
    env = SO101Env(task, control_hz=control_hz, image=True)
    frames = []
    try:
        for e in np.unique(ep):
            obs, _ = env.reset(seed=seed + int(e))
            for a in demos["actions"][ep == e]:
                frames.append(obs["image"])
                obs, *_ = env.step(a)
    finally:
        env.close()
    return np.stack(frames)


def record_demos(task: str, episodes: int, seed: int, root: str | Path, repo_id: Optional[str] = None,
                 images: bool = False, horizon: int = 50, exec_steps: int = 1, control_hz: float = 30.0,
                 v_max: float = 1.0, condition_on: str = "command"):
    """Roll out the scripted expert and record it as a LeRobotDataset at ``root``."""
    from rtctl.sim.arm_expert import rollout_demos

    demos = rollout_demos(task, episodes, seed, horizon, exec_steps, control_hz, v_max, condition_on)
    frames = replay_images(task, demos, seed, control_hz) if images else None
    return write_demos(demos, root, repo_id or f"rtctl/sim_arm_{task}", round(control_hz), TASK_TEXT[task], frames)


def load_columns(root: str | Path, repo_id: str) -> dict[str, np.ndarray]:
    """A dataset's per-frame columns as numpy: states, targets, actions, episode_index, frame_index."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id, root=root)
    hf = ds.hf_dataset.with_format("numpy")
    out = {k: np.stack(hf[lk]).astype(np.float64) for k, lk in COLUMNS.items()}
    out["episode_index"] = np.asarray(hf["episode_index"], np.int64)
    out["frame_index"] = np.asarray(hf["frame_index"], np.int64)
    return out
