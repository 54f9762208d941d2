"""Which tasks an iteration runs and learns from, re-pruning, and the checkpoint files both modes share."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtctl.train.multitask.config import MultitaskConfig, TasksConfig
from rtctl.train.multitask.prune import Selection, select_tasks
from rtctl.train.multitask.replay import Batch, TaskReplay


class TaskSchedule:
    def __init__(self, cfg: TasksConfig, n_tasks: int, nominal: int) -> None:
        self.cfg, self.n_tasks, self.nominal = cfg, n_tasks, nominal
        self.active = [nominal] if cfg.schedule == "nominal" else list(range(n_tasks))
        self.since_prune = 0
        self.prunes = 0

    @property
    def pruned(self) -> bool:
        return self.cfg.schedule == "pruned"

    def iteration_tasks(self, rng: np.random.Generator) -> list[int]:
        if self.cfg.schedule == "uniform":
            return [int(t) for t in rng.integers(self.n_tasks, size=self.cfg.per_iteration)]
        return list(self.active)

    def learning_tasks(self) -> list[int]:
        return list(range(self.n_tasks)) if self.cfg.schedule == "uniform" else list(self.active)

    def due(self) -> bool:
        return self.pruned and self.since_prune >= self.cfg.prune_period

    def tick(self) -> None:
        self.since_prune += 1

    def prune(self, features: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> Selection:
        c = self.cfg
        sel = select_tasks(features, scores, self.nominal, rng, k=None if c.prune_k == "auto" else c.prune_k,
                           k_min=c.prune_k_min, k_max=c.prune_k_max, include_nominal=c.include_nominal)
        self.active, self.since_prune = sel.active, 0
        self.prunes += 1
        return sel

    def state(self) -> dict[str, Any]:
        return {"active": self.active, "since_prune": self.since_prune, "prunes": self.prunes}

    def load(self, s: dict[str, Any]) -> None:
        self.active, self.since_prune, self.prunes = list(s["active"]), int(s["since_prune"]), int(s["prunes"])


def sample_batches(replay: TaskReplay, tasks: list[int], cfg: MultitaskConfig, rng: np.random.Generator) -> list[Batch]:
    n = cfg.agent.batch_per_task
    if cfg.replay.sampling == "pooled":
        return replay.sample_pooled(tasks, n, rng)
    return replay.sample_stratified(tasks, n, rng)


# -- checkpoints --------------------------------------------------------------------------------------
def save_checkpoint(path: Path, learner_state: dict, replay: TaskReplay, meta: dict[str, Any]) -> Path:
    """Write learner.pt, replay.npz and meta.json into ``path`` via a temporary folder and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(learner_state, tmp / "learner.pt")
    np.savez(tmp / "replay.npz", **replay.state_arrays())
    (tmp / "meta.json").write_text(json.dumps(meta))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"no multitask checkpoint in {path} (expected learner.pt, replay.npz, meta.json)")
    learner = torch.load(path / "learner.pt", map_location="cpu", weights_only=True)
    with np.load(path / "replay.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return learner, arrays, json.loads((path / "meta.json").read_text())


def save_trainer(trainer: Any, path: Path, mode: str, config_text: str, **extra: Any) -> Path:
    """Checkpoint a trainer (learner, replay, schedule, loop state, RNG states)."""
    meta = {"mode": mode, "config": config_text, "state": asdict(trainer.state), "schedule": trainer.schedule.state(),
            "rng": trainer.rng.bit_generator.state, "torch_rng": torch.get_rng_state().tolist(), **extra}
    return save_checkpoint(path, trainer.learner.state_dict(), trainer.replay, meta)


def load_trainer(trainer: Any, path: Path, mode: str, state_cls: type) -> dict[str, Any]:
    """Restore what `save_trainer` wrote; returns the metadata (the config text among it)."""
    learner, arrays, meta = load_checkpoint(path)
    if meta.get("mode") != mode:
        raise ValueError(f"{path} holds a {meta.get('mode')!r} checkpoint, this run is {mode}")
    trainer.learner.load_state_dict(learner)
    trainer.replay.load_arrays(arrays)
    trainer.state = state_cls(**meta["state"])
    trainer.schedule.load(meta["schedule"])
    trainer.rng.bit_generator.state = meta["rng"]
    torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
    return meta
