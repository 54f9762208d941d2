"""VLASH offset-aware batches for LeRobot policies, in LeRobot's batch format.

Per sample (t, δ), δ ~ Uniform{0..δmax}: images, language and the environment state stay at t;
``observation.state`` becomes the action at t+δ−1 (the rolled-forward command the runtime feeds at
inference; δ = 0 keeps the recorded s_t) or, with ``state_source="state"``, the recorded s_{t+δ};
``action`` = a_{t+δ} … a_{t+δ+H−1}; ``action_is_pad`` marks rows past the episode end (LeRobot's ACT,
Diffusion and SmolVLA losses mask them out).

The index arithmetic is `rtctl.train.offsets.sample_batch`'s (the recipe `rtctl train bc` uses, including
its hold-after-scene-change rule), run on frame-index columns so that it returns indices rather than
values: one implementation of the recipe for both trainers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from rtctl.train.offsets import sample_batch


@dataclass(frozen=True)
class OffsetIndices:
    t: np.ndarray  # (B,) frame the observation (image, language, environment state) comes from
    delta: np.ndarray  # (B,) offset actually used (clipped to the episode / scene)
    target: np.ndarray  # (B, H) frame of each action row (clipped; see `pad`)
    pad: np.ndarray  # (B, H) True where the row is past the episode end

    def state_index(self, source: Literal["action", "state"]) -> tuple[np.ndarray, np.ndarray]:
        """(frame, from_action): where ``observation.state`` comes from for each sample."""
        if source == "state":
            return self.t + self.delta, np.zeros_like(self.delta, dtype=bool)
        from_action = self.delta > 0
        return np.where(from_action, self.t + self.delta - 1, self.t), from_action


def sample_offsets(rng: np.random.Generator, ep_end: np.ndarray, batch: int, horizon: int, max_delay: int,
                   scene_end: Optional[np.ndarray] = None) -> OffsetIndices:
    idx = np.arange(len(ep_end), dtype=np.int64)[:, None]
    # No scene information = one scene per episode. (sample_batch's own scene_end=None branch compares
    # already-clipped rows with the episode end, so it never pads: pass the episode ends instead.)
    scene = ep_end if scene_end is None else scene_end
    _, t_col, rows, valid = sample_batch(rng, idx, idx, idx, ep_end, batch, horizon, max_delay, scene)
    t, target = t_col[:, 0], rows[..., 0]
    return OffsetIndices(t=t, delta=target[:, 0] - t, target=target, pad=~valid)


def lerobot_batch(cols: dict[str, np.ndarray], ix: OffsetIndices,
                  state_source: Literal["action", "state"] = "action") -> dict[str, np.ndarray]:
    """LeRobot training batch (numpy, float32) from per-frame columns (`rtctl.train.lerobot.data.load_columns`)."""
    sidx, from_action = ix.state_index(state_source)
    state = np.where(from_action[:, None], cols["actions"][sidx], cols["states"][sidx])
    return {
        "observation.state": state.astype(np.float32),
        "observation.environment_state": cols["targets"][ix.t].astype(np.float32),
        "action": cols["actions"][ix.target].astype(np.float32),
        "action_is_pad": ix.pad,
    }
