"""Chunking BC: VLASH offset sampler index arithmetic, and a tiny end-to-end training + load."""
import subprocess
import sys
from pathlib import Path

import numpy as np

from rtctl.train.offsets import episode_bounds, offset_indices, sample_batch

ROOT = Path(__file__).resolve().parents[1]


def test_episode_bounds():
    s, e = episode_bounds(np.array([0, 0, 0, 1, 1, 2]))
    assert s.tolist() == [0, 0, 0, 3, 3, 5] and e.tolist() == [2, 2, 2, 4, 4, 5]


def test_offset_indices_state_from_previous_action_and_shifted_targets():
    # episode frames 0..9; sample t=2 with δ=3, H=4
    fa, sidx, tidx, pad, d = offset_indices(np.array([2]), np.array([3]), np.array([9]), 4)
    assert fa[0] and sidx[0] == 4  # action at t+δ−1
    assert tidx[0].tolist() == [5, 6, 7, 8] and not pad.any() and d[0] == 3


def test_offset_zero_keeps_the_recorded_state():
    fa, sidx, tidx, pad, _ = offset_indices(np.array([2]), np.array([0]), np.array([9]), 3)
    assert not fa[0] and sidx[0] == 2 and tidx[0].tolist() == [2, 3, 4]


def test_rows_past_the_episode_end_are_padding_and_delta_is_clipped():
    fa, sidx, tidx, pad, d = offset_indices(np.array([7, 8]), np.array([1, 5]), np.array([9, 9]), 4)
    assert tidx[0].tolist() == [8, 9, 9, 9] and pad[0].tolist() == [False, False, True, True]
    assert d[1] == 1 and sidx[1] == 8  # δ clipped so t+δ stays in the episode


def test_sample_batch_uses_actions_as_state_and_masks_padding():
    n = 20
    states = np.arange(n)[:, None] * np.ones((1, 2))
    actions = states + 0.5
    targets = np.zeros((n, 4))
    ep_end = np.full(n, n - 1)
    rng = np.random.default_rng(0)
    cond, tg, rows, valid = sample_batch(rng, states, targets, actions, ep_end, 64, 5, 3)
    frac = cond[:, 0] % 1
    assert set(np.round(frac, 2)) <= {0.0, 0.5} and (frac > 0).any() and (frac == 0).any()
    assert rows.shape == (64, 5, 2) and valid.shape == (64, 5)
    # rows past the episode end repeat its last action and are masked out (without a scene_end too)
    late = rows[:, :, 0] == n - 1 + 0.5
    assert (~valid).any() and not valid[late & np.roll(late, 1, axis=1) & (np.arange(5) > 0)].any()


def test_tiny_training_end_to_end(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("""
seed: 0
demos: {tasks: [reach], episodes_per_task: 2, horizon: 10, exec_steps: 5, v_max: 1.0}
model: {hidden: 32, layers: 2}
train: {steps: 30, batch: 32}
offset: {max_delay: 3}
""")
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "rtctl.cli", "train", "bc", str(cfg), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    from rtctl.policies.bc import BCPolicy

    pol = BCPolicy.load(out / "policy.pt")
    chunk = pol.predict_chunk({"state": np.zeros(6), "target": np.array([0.2, 0.0, 0.1, 1.0]), "tick": 7})
    assert chunk.actions.shape == (10, 6) and chunk.start_tick == 7 and np.isfinite(chunk.actions).all()
    assert (out / "plots" / "loss.png").exists() and (out / "summary.json").exists()
    from rtctl.policies.base import read_checkpoint_meta

    meta = read_checkpoint_meta(out / "policy.pt")  # the sidecar: the rate the demos ran at (default 30 Hz)
    assert meta["rate_hz"] == 30.0 and meta["horizon"] == 10 and meta["action_units"] == "rad"
    assert pol.meta["max_delay"] == 3 and pol.meta["rate_hz"] == 30.0


def test_rows_after_the_scene_changes_hold_the_last_row_before_it():
    n = 12
    states = np.zeros((n, 2))
    actions = np.arange(n)[:, None] * np.ones((1, 2))
    targets = np.zeros((n, 4))
    targets[6:, 3] = 1.0  # a target appears at frame 6
    ep_end = np.full(n, n - 1)

    class FixedRng:
        def integers(self, lo, hi, size):
            return np.array([3] * size) if hi == n else np.zeros(size, dtype=np.int64)

    from rtctl.train.offsets import scene_ends

    scene = scene_ends(targets, np.zeros(n))
    assert scene.tolist() == [5] * 6 + [11] * 6
    cond, tg, rows, valid = sample_batch(FixedRng(), states, targets, actions, ep_end, 1, 5, 0, scene)
    assert valid[0].all()
    assert rows[0, :, 0].tolist() == [3, 4, 5, 5, 5]  # frames 6, 7 (new target) replaced by frame 5


def test_offset_never_reaches_past_the_observed_scene():
    n = 12
    actions = np.arange(n)[:, None] * np.ones((1, 2))
    targets = np.zeros((n, 4))
    targets[6:, 3] = 1.0
    from rtctl.train.offsets import scene_ends

    class FixedRng:
        def integers(self, lo, hi, size):
            return np.array([4] * size) if hi == n else np.array([5] * size)  # t = 4, δ = 5

    cond, _, rows, _ = sample_batch(FixedRng(), np.zeros((n, 2)), targets, actions, np.full(n, n - 1), 1, 3, 5,
                                    scene_ends(targets, np.zeros(n)))
    assert cond[0, 0] == 4  # δ clipped to 1: state = action at t (frame 4), not one after the change
    assert rows[0, :, 0].tolist() == [5, 5, 5]
