"""The LeRobot adapter's chunk equals LeRobot's own pre-processor → predict_action_chunk → post-processor
output, for tiny random ACT, Diffusion (DDIM) and SmolVLA checkpoints saved to and loaded from tmp folders."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from rtctl.policies.base import ActionChunk, Policy, checkpoint_meta, read_checkpoint_meta, write_checkpoint_meta
from rtctl.policies.lerobot_adapter import JointUnits, LeRobotPolicy
from rtctl.train.lerobot import models as lm


def observation(image_size=None, seed=0):
    rng = np.random.default_rng(seed)
    obs = {"state": rng.uniform(-1, 1, 6), "target": np.array([0.2, 0.05, 0.1, 1.0]), "tick": 7, "t_ns": 1}
    if image_size:
        obs["image"] = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
    return obs


def saved(tmp_path, cfg, name):
    torch.manual_seed(0)
    return lm.save_checkpoint(tmp_path / name, *lm.build_policy(cfg, lm.unit_stats(cfg)))


def lerobot_reference(folder, raw, diffusion=False, seed=0):
    """LeRobot's own path, written out without the adapter."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    cfg = PreTrainedConfig.from_pretrained(folder)
    policy = get_policy_class(cfg.type).from_pretrained(folder)
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(folder))
    policy.reset()
    torch.manual_seed(seed)  # after loading: building the model draws from the global RNG
    with torch.no_grad():
        if diffusion:  # LeRobot's select_action pops the chunk one row at a time
            batch = pre(raw)
            return torch.cat([post(policy.select_action(dict(batch))) for _ in range(cfg.n_action_steps)]).numpy()
        return post(policy.predict_action_chunk(pre(raw)))[0].numpy()


def raw_obs(obs, image_size=None, env=True, task=""):
    raw = {"observation.state": torch.as_tensor(obs["state"], dtype=torch.float32), "task": task}
    if env:
        raw["observation.environment_state"] = torch.as_tensor(obs["target"], dtype=torch.float32)
    if image_size:
        raw["observation.images.workspace"] = torch.as_tensor(obs["image"]).permute(2, 0, 1).float() / 255.0
    return raw


@pytest.mark.parametrize("image_size", [None, 32])
def test_act_adapter_matches_lerobot(tmp_path, image_size):
    cfg = lm.act_config(chunk_size=10, image_size=image_size, dim_model=32, n_heads=2, dim_feedforward=64,
                        n_encoder_layers=1)
    folder = saved(tmp_path, cfg, "act")
    obs = observation(image_size)
    pol = LeRobotPolicy.load(folder)
    assert isinstance(pol, Policy)
    chunk = pol.predict_chunk(obs)
    assert isinstance(chunk, ActionChunk) and chunk.start_tick == 7
    assert chunk.actions.shape == (10, 6) == (pol.chunk_size, pol.action_dim)
    ref = lerobot_reference(folder, raw_obs(obs, image_size))
    np.testing.assert_allclose(chunk.actions, ref, rtol=1e-5, atol=1e-5)
    # the processors really ran: un-normalised output is not the raw network output
    assert not np.allclose(chunk.actions, pol.policy.predict_action_chunk(pol.preprocessor(pol.lerobot_observation(obs)))[0].detach().numpy())


def test_diffusion_ddim_adapter_matches_lerobot(tmp_path):
    cfg = lm.diffusion_config(image_size=32)
    folder = saved(tmp_path, cfg, "diffusion")
    obs = observation(32)
    pol = LeRobotPolicy.load(folder)
    torch.manual_seed(3)
    chunk = pol.predict_chunk(obs).actions
    ref = lerobot_reference(folder, raw_obs(obs, 32, env=False), diffusion=True, seed=3)
    assert chunk.shape == (4, 6)
    np.testing.assert_allclose(chunk, ref, rtol=1e-4, atol=1e-4)
    assert read_checkpoint_meta(folder)["horizon"] == 4 == pol.chunk_size  # n_action_steps, from config.json


def test_smolvla_tiny_adapter_matches_lerobot(tmp_path):
    vlm = lm.tiny_smolvlm(tmp_path / "vlm", image_size=64)
    cfg = lm.smolvla_config(vlm, image_size=64, chunk_size=10)
    folder = saved(tmp_path, cfg, "smolvla")
    obs = {**observation(64), "task": "reach the target"}
    pol = LeRobotPolicy.load(folder)
    torch.manual_seed(5)
    chunk = pol.predict_chunk(obs).actions
    ref = lerobot_reference(folder, raw_obs(obs, 64, env=False, task="reach the target"), seed=5)
    assert chunk.shape == (10, 6)
    np.testing.assert_allclose(chunk, ref, rtol=1e-4, atol=1e-4)


def test_units_and_bad_observations(tmp_path):
    cfg = lm.act_config(chunk_size=4, dim_model=16, n_heads=2, dim_feedforward=32, n_encoder_layers=1)
    folder = saved(tmp_path, cfg, "act")
    scale, offset = np.full(6, 100 / np.pi), np.arange(6.0)
    units = JointUnits(scale, offset)
    q = np.linspace(-1, 1, 6)
    np.testing.assert_allclose(units.to_rad(units.to_policy(q)), q)
    plain, scaled = LeRobotPolicy.load(folder), LeRobotPolicy.load(folder, units=units)
    obs = observation()
    a = plain.predict_chunk({**obs, "state": units.to_policy(obs["state"])}).actions
    np.testing.assert_allclose(scaled.predict_chunk(obs).actions, units.to_rad(a), rtol=1e-6, atol=1e-6)
    with pytest.raises(KeyError, match="target"):
        plain.predict_chunk({"state": np.zeros(6)})
    with pytest.raises(ValueError, match="observation.state"):
        plain.predict_chunk({"state": np.zeros(5), "target": np.zeros(4)})
    with pytest.raises(FileNotFoundError):
        LeRobotPolicy.load(tmp_path / "nowhere")


def test_rtctl_metadata_in_the_folder_leaves_lerobot_loading_unchanged(tmp_path):
    cfg = lm.act_config(chunk_size=6, dim_model=16, n_heads=2, dim_feedforward=32, n_encoder_layers=1)
    folder = saved(tmp_path, cfg, "act")
    assert read_checkpoint_meta(folder) == {"horizon": 6, "action_dim": 6}  # config.json only: no rate
    write_checkpoint_meta(folder, checkpoint_meta("lerobot_act", 30.0, 6, "rad", 6))
    obs = observation()
    chunk = LeRobotPolicy.load(folder).predict_chunk(obs).actions
    np.testing.assert_allclose(chunk, lerobot_reference(folder, raw_obs(obs)), rtol=1e-5, atol=1e-5)
    meta = read_checkpoint_meta(folder)
    assert meta["rate_hz"] == 30.0 and meta["horizon"] == 6 and meta["action_units"] == "rad"
