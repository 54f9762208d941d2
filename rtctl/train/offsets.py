"""VLASH's offset-aware sampling for chunk training (index arithmetic only; pure numpy, unit-tested).

Per sample (t, δ) with δ ∈ [0, δmax]: the observation (target, image, language) stays at t; the state is
replaced by the action at t+δ−1 (δ = 0 keeps the recorded state s_t); the targets are the actions
t+δ … t+δ+H−1; rows past the episode end repeat its last action and are masked out of the loss. δ is
clipped so t+δ stays inside the episode.

Rows recorded after the scene changed (the observed target differs from the one at t: a target appeared,
was hit or expired) answer an observation the sample does not contain; as labels they are noise the policy
could only average. They are replaced by the last row recorded before the change — "keep doing what o_t
asked", i.e. hold there — which is what the chunk would have been had the scene stayed as observed;
δ is clipped to the scene too, so the rolled-forward state never comes from after a change o_t cannot see.
"""
from __future__ import annotations

import numpy as np


def episode_bounds(episode_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the first and last frame index of its episode (frames of an episode are contiguous)."""
    ep = np.asarray(episode_index)
    change = np.flatnonzero(np.diff(ep)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change - 1, [len(ep) - 1]])
    run = np.repeat(np.arange(len(starts)), np.diff(np.concatenate([starts, [len(ep)]])))
    return starts[run], ends[run]


def offset_indices(t: np.ndarray, delta: np.ndarray, ep_end: np.ndarray, horizon: int):
    """Index arithmetic for a batch.

    Returns ``state_from_action`` (bool, B), ``state_idx`` (B: action index if state_from_action, else the
    state index t), ``target_idx`` (B, H), ``pad`` (B, H, True where the row is padding), ``delta`` (clipped).
    """
    t = np.asarray(t, dtype=np.int64)
    end = np.asarray(ep_end, dtype=np.int64)
    d = np.minimum(np.asarray(delta, dtype=np.int64), end - t)
    from_action = d > 0
    state_idx = np.where(from_action, t + d - 1, t)
    rows = t[:, None] + d[:, None] + np.arange(horizon)[None, :]
    pad = rows > end[:, None]
    return from_action, state_idx, np.minimum(rows, end[:, None]), pad, d


def scene_ends(targets: np.ndarray, episode_index: np.ndarray) -> np.ndarray:
    """Per frame: the last frame of its run of identical observed targets (never past its episode)."""
    tg = np.asarray(targets)
    ep = np.asarray(episode_index)
    change = np.any(tg[1:] != tg[:-1], axis=1) | (ep[1:] != ep[:-1])
    starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    ends = np.concatenate([starts[1:] - 1, [len(tg) - 1]])
    return np.repeat(ends, np.diff(np.concatenate([starts, [len(tg)]])))


def sample_batch(rng: np.random.Generator, states: np.ndarray, targets: np.ndarray, actions: np.ndarray,
                 ep_end: np.ndarray, batch: int, horizon: int, max_delay: int,
                 scene_end: np.ndarray | None = None):
    """A training batch: (cond_state, obs_target, action_rows, valid_mask).

    With ``scene_end`` (from `scene_ends`), δ is also clipped to the scene observed at t, and rows past
    the scene's end hold its last row (see the module docstring); only rows past the episode end are
    masked.
    """
    t = rng.integers(0, len(states), size=batch)
    delta = rng.integers(0, max_delay + 1, size=batch) if max_delay > 0 else np.zeros(batch, np.int64)
    limit = ep_end[t] if scene_end is None else scene_end[t]
    from_action, sidx, tidx, _, _ = offset_indices(t, delta, limit, horizon)
    cond = np.where(from_action[:, None], actions[sidx], states[sidx])
    _, _, _, pad, _ = offset_indices(t, delta, ep_end[t], horizon)
    if scene_end is not None:
        pad = pad & (tidx >= ep_end[t][:, None])  # past the scene but inside the episode: hold, keep
    return cond, targets[t], actions[tidx], ~pad
