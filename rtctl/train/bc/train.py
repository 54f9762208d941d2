"""`rtctl train bc CONFIG`: chunking behaviour cloning from the scripted expert's demos, optionally with
VLASH's offset-aware augmentation (see `rtctl.train.offsets`). Seeded and reproducible: the checkpoints the
demo and the benchmarks need are made on first use by `ensure_checkpoint`, never committed."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from rtctl.config import StrictModel, dump_config, load_config
from rtctl.policies.base import checkpoint_meta, write_checkpoint_meta
from rtctl.report.runfolder import RunFolder, default_run_dir
from rtctl.train.artifacts import ARTIFACTS, Artifact
from rtctl.train.runlog import plot_loss
from rtctl.train.offsets import episode_bounds, sample_batch, scene_ends

X_STD_FLOOR = 1e-2  # rad / m: the smallest input scale the normaliser divides by
RECIPE = 2  # bumps the checkpoint cache key when training code changes what a config produces


class DemoConfig(StrictModel):
    tasks: list[Literal["reach", "whack"]] = ["reach", "whack"]
    episodes_per_task: int = Field(150, ge=1, le=100000)
    horizon: int = Field(50, ge=1, le=1000)
    exec_steps: int = Field(25, ge=1, le=1000)
    control_hz: float = Field(30.0, ge=1.0, le=1000.0)
    v_max: float = Field(1.0, gt=0.0, le=10.0)
    condition_on: Literal["state", "command"] = "command"  # see rtctl.sim.arm_expert.rollout_demos


class ModelConfig(StrictModel):
    hidden: int = Field(256, ge=8, le=4096)
    layers: int = Field(3, ge=1, le=12)


class OptimConfig(StrictModel):
    steps: int = Field(4000, ge=1, le=1000000)
    batch: int = Field(256, ge=1, le=65536)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-5, ge=0.0, le=1.0)


class OffsetConfig(StrictModel):
    max_delay: int = Field(0, ge=0, le=100)  # VLASH δmax in ticks; 0 = plain BC


class BCTrainConfig(StrictModel):
    seed: int = 0
    demos: DemoConfig = DemoConfig()
    model: ModelConfig = ModelConfig()
    train: OptimConfig = OptimConfig()
    offset: OffsetConfig = OffsetConfig()


def make_demos(cfg: DemoConfig, seed: int) -> dict[str, np.ndarray]:
    from rtctl.sim.arm_expert import rollout_demos

    parts = [rollout_demos(task, cfg.episodes_per_task, seed + 100000 * i, cfg.horizon, cfg.exec_steps,
                           cfg.control_hz, cfg.v_max, cfg.condition_on) for i, task in enumerate(cfg.tasks)]
    out = {}
    for key in ("states", "targets", "actions"):
        out[key] = np.concatenate([p[key] for p in parts]).astype(np.float64)
    offset = 0
    eps = []
    for p in parts:
        eps.append(np.asarray(p["episode_index"]) + offset)
        offset = int(eps[-1].max()) + 1
    out["episode_index"] = np.concatenate(eps)
    return out


def policy_meta(cfg: BCTrainConfig) -> dict:
    """What a checkpoint trained from ``cfg`` records (see `rtctl.policies.base`): chunks of ``demos.horizon``
    absolute joint targets in radians, one per tick at ``demos.control_hz`` (the rate the demos were rolled
    out at)."""
    from rtctl.sim.arm_env import JOINT_NAMES

    return checkpoint_meta("bc", cfg.demos.control_hz, cfg.demos.horizon, "rad", len(JOINT_NAMES), JOINT_NAMES,
                           max_delay=cfg.offset.max_delay, seed=cfg.seed)


def train(cfg: BCTrainConfig, out_dir: Path, progress: bool = True) -> Path:
    import torch

    from rtctl.policies.bc import ChunkMLP

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # small model: one thread is as fast, and bit-for-bit reproducible
    rng = np.random.default_rng(cfg.seed)
    H = cfg.demos.horizon
    folder = RunFolder(out_dir, dump_config(cfg))
    t0 = time.monotonic()
    demos = make_demos(cfg.demos, cfg.seed)
    _, ep_end = episode_bounds(demos["episode_index"])
    S, T, A = demos["states"], demos["targets"], demos["actions"]
    scene_end = scene_ends(T, demos["episode_index"])
    x = np.concatenate([S, T], axis=1)
    # residual targets over a large sample that includes offsets, for the normalisation statistics
    cond, tg, rows, valid = sample_batch(np.random.default_rng(cfg.seed + 1), S, T, A, ep_end, 20000, H,
                                         cfg.offset.max_delay, scene_end)
    resid = np.where(valid[..., None], rows - cond[:, None, :], np.nan)  # padding rows do not count
    # floor the input scale: an input the demos never vary (the gripper held at 0.3 rad) would otherwise be
    # divided by ~1e-6, and one encoder tick on a real or emulated arm becomes a 600-sigma input
    stats = {"x_mean": x.mean(0), "x_std": np.maximum(x.std(0), X_STD_FLOOR),
             "y_mean": np.nan_to_num(np.nanmean(resid, 0)), "y_std": np.nan_to_num(np.nanstd(resid, 0)) + 1e-4}
    st = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in stats.items()}
    net = ChunkMLP(x.shape[1], A.shape[1], H, cfg.model.hidden, cfg.model.layers)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.train.steps)
    from tqdm import tqdm

    losses = []
    for step in tqdm(range(cfg.train.steps), desc="train bc", disable=not progress, mininterval=2.0):
        cond, tg, rows, valid = sample_batch(rng, S, T, A, ep_end, cfg.train.batch, H, cfg.offset.max_delay,
                                             scene_end)
        xb = (torch.as_tensor(np.concatenate([cond, tg], 1), dtype=torch.float32) - st["x_mean"]) / st["x_std"]
        yb = (torch.as_tensor(rows - cond[:, None, :], dtype=torch.float32) - st["y_mean"]) / st["y_std"]
        m = torch.as_tensor(valid, dtype=torch.float32)[..., None]
        loss = (((net(xb) - yb) ** 2) * m).sum() / (m.sum().clamp(min=1.0) * A.shape[1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == cfg.train.steps - 1:
            folder.log({"step": step, "loss": float(np.mean(losses[-100:]))})
    ckpt = out_dir / "policy.pt"
    meta = policy_meta(cfg)
    torch.save({"arch": {"obs_dim": x.shape[1], "action_dim": A.shape[1], "horizon": H,
                         "hidden": cfg.model.hidden, "layers": cfg.model.layers},
                "weights": net.state_dict(), "stats": {k: torch.as_tensor(v) for k, v in stats.items()},
                "meta": meta}, ckpt)
    write_checkpoint_meta(ckpt, meta)  # the same, readable without torch
    folder.close({"final_loss": float(np.mean(losses[-100:])), "frames": int(len(S)),
                  "episodes": int(demos["episode_index"].max() + 1), "wall_s": time.monotonic() - t0,
                  "checkpoint": str(ckpt)})
    plot_loss(out_dir, losses)
    return out_dir


def main(config_path, out_dir: Optional[Path] = None, **_) -> Path:
    cfg = load_config(config_path, BCTrainConfig)
    return train(cfg, Path(out_dir) if out_dir else default_run_dir("train-bc"))


ARTIFACT = Artifact("bc", BCTrainConfig, RECIPE, ready="policy.pt", checkpoint="policy.pt",
                    make=lambda cfg, tmp, root: train(cfg, tmp), meta=lambda cfg: policy_meta(cfg))
checkpoint_dir = ARTIFACT.folder  # where ensure_checkpoint keeps a config's checkpoint
ensure_checkpoint = ARTIFACT.ensure  # the checkpoint for a config, trained on first use
