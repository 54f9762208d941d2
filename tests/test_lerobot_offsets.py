"""VLASH offset sampler for LeRobot batches: index arithmetic at episode boundaries, the padding mask,
both state sources; and a tiny end-to-end offset fine-tune of a LeRobot ACT on recorded sim demos."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

from rtctl.train.lerobot.offsets import lerobot_batch, sample_offsets
from rtctl.train.offsets import episode_bounds, scene_ends

H = 5


def columns(lengths):
    ep = np.repeat(np.arange(len(lengths)), lengths)
    n = len(ep)
    i = np.arange(n, dtype=float)
    # values encode their frame: state = -(i+1), action = i, target = episode (constant scene per episode)
    return {"states": np.repeat(-(i + 1)[:, None], 6, 1), "actions": np.repeat(i[:, None], 6, 1),
            "targets": np.repeat(ep[:, None].astype(float), 4, 1), "episode_index": ep}


@pytest.mark.parametrize("max_delay", [0, 3, 8])
def test_indices_stay_in_episode_and_pad_past_its_end(max_delay):
    cols = columns([4, 12, 1, 30])
    start, end = episode_bounds(cols["episode_index"])
    ix = sample_offsets(np.random.default_rng(0), end, 4000, H, max_delay)
    t, d = ix.t, ix.delta
    assert d.min() >= 0 and d.max() <= max_delay
    assert np.all(t + d <= end[t])  # δ clipped: the rolled-forward state never leaves the episode
    if max_delay:
        assert set(np.unique(d)) == set(range(max_delay + 1))
    want = t[:, None] + d[:, None] + np.arange(H)
    np.testing.assert_array_equal(ix.pad, want > end[t][:, None])
    np.testing.assert_array_equal(ix.target, np.minimum(want, end[t][:, None]))
    assert np.all(ix.target >= start[t][:, None])

    b = lerobot_batch(cols, ix)
    assert b["observation.state"].shape == (4000, 6) and b["action"].shape == (4000, H, 6)
    s = b["observation.state"][:, 0]
    np.testing.assert_array_equal(s[d == 0], -(t[d == 0] + 1))  # recorded state s_t
    np.testing.assert_array_equal(s[d > 0], t[d > 0] + d[d > 0] - 1)  # action a_{t+δ−1}
    np.testing.assert_array_equal(b["action"][:, 0, 0], t + d)  # targets shifted by δ
    np.testing.assert_array_equal(b["observation.environment_state"][:, 0], cols["episode_index"][t])
    np.testing.assert_array_equal(b["action_is_pad"], ix.pad)

    g = lerobot_batch(cols, ix, state_source="state")["observation.state"][:, 0]
    np.testing.assert_array_equal(g, -(t + d + 1))  # recorded s_{t+δ}


def test_one_frame_episode_and_last_frame():
    cols = columns([1, 3])
    _, end = episode_bounds(cols["episode_index"])
    ix = sample_offsets(np.random.default_rng(1), end, 500, H, 4)
    one = ix.t == 0
    assert one.any()
    assert np.all(ix.delta[one] == 0) and np.all(ix.pad[one] == [False] + [True] * (H - 1))
    last = ix.t == 3
    assert np.all(ix.delta[last] == 0) and np.all(ix.target[last] == 3)


def test_scene_change_holds_instead_of_padding():
    ep = np.zeros(10, int)
    targets = np.zeros((10, 4))
    targets[6:] = 1.0  # the scene changes at frame 6
    _, end = episode_bounds(ep)
    ix = sample_offsets(np.random.default_rng(2), end, 2000, H, 8, scene_ends(targets, ep))
    early = ix.t <= 5
    assert np.all(ix.t[early] + ix.delta[early] <= 5)
    assert np.all(ix.target[early] <= 5) and not ix.pad[early].any()  # held, not masked


def test_tiny_offset_finetune_end_to_end(tmp_path):
    """Record demos → LeRobotDataset → a few offset-aware ACT steps → checkpoint → adapter → chunk on the sim."""
    import json

    import yaml

    from rtctl.drivers.sim_arm import SimArmDriver
    from rtctl.policies.lerobot_adapter import LeRobotPolicy
    from rtctl.train.lerobot.act import ensure_checkpoint

    cfg = {"seed": 0,
           "demos": {"tasks": ["reach"], "episodes_per_task": 2, "horizon": 50, "exec_steps": 1, "v_max": 1.0},
           "model": {"chunk_size": 10, "dim_model": 16, "n_heads": 2, "dim_feedforward": 32},
           "train": {"steps": 3, "batch": 8}, "offset": {"max_delay": 4}}
    path = tmp_path / "tiny_act.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ckpt = ensure_checkpoint(path, root=tmp_path / "art")
    summary = json.loads((ckpt.parent / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["episodes"] == 2 and np.isfinite(summary["final_loss"])
    assert ensure_checkpoint(path, root=tmp_path / "art") == ckpt  # cached: not trained twice
    assert len(list((tmp_path / "art" / "lerobot_act").iterdir())) == 1

    driver = SimArmDriver("reach", 30.0, seed=3)
    driver.connect()
    obs = {**driver.read(), "tick": 0}
    chunk = LeRobotPolicy.load(ckpt).predict_chunk(obs)
    driver.disconnect()
    assert chunk.actions.shape == (10, 6) and np.all(np.isfinite(chunk.actions))
