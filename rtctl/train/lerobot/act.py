"""`rtctl train lerobot_act CONFIG`: train a small LeRobot ACT (state-only) on the sim arm's scripted demos,
recorded as a LeRobotDataset, with or without VLASH's offset-aware augmentation (``offset.max_delay``).

The demos are the ones `rtctl train bc` learns from (same `DemoConfig`), written once per demo config to
``artifacts/lerobot_data/`` by `rtctl.train.lerobot.data`; normalisation statistics are the dataset's own
(LeRobot computes them when it writes episodes); batches come from `rtctl.train.lerobot.offsets`; the loss is
ACT's own ``forward`` (L1 on the un-padded rows) after LeRobot's pre-processor, as `lerobot-train` does.
The run folder's ``checkpoint/`` is a LeRobot checkpoint folder (`rtctl.policies.lerobot_adapter` loads it,
so does LeRobot's ``from_pretrained``), plus ``rtctl_meta.json`` (rate, horizon, units: `policy_meta`).
Checkpoints the benchmarks need are made on first use (`ensure_checkpoint`), keyed by the config's hash,
never committed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from rtctl.config import StrictModel, dump_config, load_config
from rtctl.policies.base import checkpoint_meta, write_checkpoint_meta
from rtctl.report.runfolder import RunFolder, default_run_dir
from rtctl.train.artifacts import ARTIFACTS, Artifact, cached, digest
from rtctl.train.bc.train import DemoConfig, OptimConfig, make_demos
from rtctl.train.runlog import plot_loss

STD_FLOOR = 1e-2
RECIPE = 1  # bumps the checkpoint cache key when training code changes what a config produces


class ACTModelConfig(StrictModel):
    chunk_size: int = Field(50, ge=1, le=1000)
    dim_model: int = Field(128, ge=8, le=2048)
    n_heads: int = Field(4, ge=1, le=64)
    dim_feedforward: int = Field(512, ge=8, le=8192)
    n_encoder_layers: int = Field(2, ge=1, le=12)
    n_decoder_layers: int = Field(1, ge=1, le=12)
    use_vae: bool = False
    dropout: float = Field(0.1, ge=0.0, le=0.9)


class ACTOptimConfig(OptimConfig):
    threads: int = Field(1, ge=1, le=64)  # torch threads; 1 leaves the other core to the rest of the box


class ACTOffsetConfig(StrictModel):
    max_delay: int = Field(0, ge=0, le=100)  # VLASH δmax in ticks; 0 = plain ACT
    state_source: Literal["action", "state"] = "action"  # a_{t+δ−1} (VLASH default) or recorded s_{t+δ}
    hold_after_scene_change: bool = True  # as `rtctl train bc` (see rtctl.train.offsets)


class LeRobotACTTrainConfig(StrictModel):
    seed: int = 0
    demos: DemoConfig = DemoConfig()
    model: ACTModelConfig = ACTModelConfig()
    train: ACTOptimConfig = ACTOptimConfig()
    offset: ACTOffsetConfig = ACTOffsetConfig()


def ensure_dataset(cfg: DemoConfig, seed: int, root: Path = ARTIFACTS) -> tuple[Path, str]:
    """The demos for this demo config as a LeRobotDataset, recorded now if they do not exist yet."""
    from rtctl.train.lerobot.data import TASK_TEXT, write_demos

    name = "_".join(cfg.tasks)
    repo_id = f"rtctl/sim_arm_{name}"
    task_text = " or ".join(TASK_TEXT[t] for t in cfg.tasks)
    out = root / "lerobot_data" / f"{name}-{digest(dump_config(cfg) + f'seed={seed}')}"
    return cached(out, "meta/info.json", lambda tmp: write_demos(make_demos(cfg, seed), tmp, repo_id,
                                                                 round(cfg.control_hz), task_text)), repo_id


def dataset_stats(root: Path, repo_id: str) -> dict:
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata(repo_id, root=root)
    out = {k: {s: torch.as_tensor(np.asarray(v), dtype=torch.float32) for s, v in st.items()}
           for k, st in meta.stats.items()}
    for st in out.values():  # a constant column (reach's target-active flag) must not divide by ~0
        if "std" in st:
            st["std"] = st["std"].clamp(min=STD_FLOOR)
    return out


def policy_meta(cfg: LeRobotACTTrainConfig) -> dict:
    """What a checkpoint trained from ``cfg`` records (``rtctl_meta.json`` in the folder, see
    `rtctl.policies.base`): chunks of ``model.chunk_size`` joint targets in radians (the demos' own units),
    one per tick at ``demos.control_hz``."""
    from rtctl.sim.arm_env import JOINT_NAMES

    return checkpoint_meta("lerobot_act", cfg.demos.control_hz, cfg.model.chunk_size, "rad", len(JOINT_NAMES),
                           JOINT_NAMES, max_delay=cfg.offset.max_delay, seed=cfg.seed)


def train(cfg: LeRobotACTTrainConfig, out_dir: Path, progress: bool = True, data_root: Path = ARTIFACTS) -> Path:
    import torch
    from tqdm import tqdm

    from rtctl.train.lerobot.data import load_columns
    from rtctl.train.lerobot.models import act_config, build_policy, save_checkpoint
    from rtctl.train.lerobot.offsets import lerobot_batch, sample_offsets
    from rtctl.train.offsets import episode_bounds, scene_ends

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.train.threads)
    rng = np.random.default_rng(cfg.seed)
    folder = RunFolder(out_dir, dump_config(cfg))
    t0 = time.monotonic()
    root, repo_id = ensure_dataset(cfg.demos, cfg.seed, data_root)
    cols = load_columns(root, repo_id)
    _, ep_end = episode_bounds(cols["episode_index"])
    scene = scene_ends(cols["targets"], cols["episode_index"]) if cfg.offset.hold_after_scene_change else None
    m = cfg.model
    act = act_config(chunk_size=m.chunk_size, dim_model=m.dim_model, n_heads=m.n_heads,
                     dim_feedforward=m.dim_feedforward, n_encoder_layers=m.n_encoder_layers,
                     n_decoder_layers=m.n_decoder_layers, use_vae=m.use_vae, dropout=m.dropout, lr=cfg.train.lr)
    policy, pre, post = build_policy(act, dataset_stats(root, repo_id))
    policy.train()
    opt = torch.optim.AdamW(policy.get_optim_params(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.train.steps)
    losses: list[float] = []
    for step in tqdm(range(cfg.train.steps), desc="train lerobot act", disable=not progress, mininterval=2.0):
        ix = sample_offsets(rng, ep_end, cfg.train.batch, m.chunk_size, cfg.offset.max_delay, scene)
        batch = {k: torch.as_tensor(v) for k, v in lerobot_batch(cols, ix, cfg.offset.state_source).items()}
        loss, _ = policy.forward(pre(batch))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == cfg.train.steps - 1:
            folder.log({"step": step, "loss": float(np.mean(losses[-100:]))})
    policy.eval()
    ckpt = save_checkpoint(out_dir / "checkpoint", policy, pre, post)
    write_checkpoint_meta(ckpt, policy_meta(cfg))
    folder.close({"final_loss": float(np.mean(losses[-100:])), "frames": int(len(ep_end)),
                  "episodes": int(cols["episode_index"].max() + 1), "dataset": str(root),
                  "wall_s": time.monotonic() - t0, "steps": cfg.train.steps,
                  "checkpoint": str(ckpt.relative_to(out_dir)),  # the run folder may be renamed (cache)
                  "max_delay": cfg.offset.max_delay})
    plot_loss(out_dir, losses, "LeRobot ACT training loss", "loss")
    return out_dir


def main(config_path, out_dir: Optional[Path] = None, **_) -> Path:
    cfg = load_config(config_path, LeRobotACTTrainConfig)
    return train(cfg, Path(out_dir) if out_dir else default_run_dir("train-lerobot-act"))


ARTIFACT = Artifact("lerobot_act", LeRobotACTTrainConfig, RECIPE, ready="checkpoint/config.json", checkpoint="checkpoint",
                    make=lambda cfg, tmp, root: train(cfg, tmp, data_root=root), meta=lambda cfg: policy_meta(cfg))
checkpoint_dir = ARTIFACT.folder  # where ensure_checkpoint keeps a config's checkpoint
ensure_checkpoint = ARTIFACT.ensure  # the checkpoint for a config, trained on first use
