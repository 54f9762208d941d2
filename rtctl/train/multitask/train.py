"""`rtctl train multitask CONFIG`: one policy for a whole set of variations, RobustAnalog style.

Each variation (PVT corner, arm dynamics) is a task. Tasks share one actor; a task-conditioned critic
learns per-task values; per-task gradients are combined by PCGrad (or sum / CAGrad); pruning keeps the
worst task of each k-means cluster of the tasks' current performance, plus the nominal one. ``mode: bandit``
sizes a circuit (one-step episodes, corner simulations in-process); ``mode: multistep`` trains a control
policy with TD3/DDPG on Ray actors. The run folder gets config.yaml, log.jsonl, metrics.csv, tb/,
checkpoint/ (resumable), policy.pt (the exported actor), summary.json and plots/.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rtctl.config import ConfigError, config_difference, dump_config, load_config
from rtctl.report.runfolder import RunFolder, default_run_dir, peak_rss_mb

from rtctl.train.multitask.config import MultitaskConfig
from rtctl.train.multitask.runlog import plot_curves
from rtctl.train.runlog import TrainLog
from rtctl.train.sections import PLACEMENT_KEYS


def build_trainer(cfg: MultitaskConfig):
    torch.set_num_threads(cfg.torch_threads)
    torch.use_deterministic_algorithms(True)
    try:
        if cfg.mode == "bandit":
            from rtctl.train.multitask.bandit import BanditTrainer
            return BanditTrainer(cfg)
        from rtctl.train.multitask.multistep import MultistepTrainer
        return MultistepTrainer(cfg)
    except (ValueError, KeyError) as err:
        raise ConfigError(f"multitask config: {err}") from None


def train(cfg: MultitaskConfig, out_dir: str | Path | None = None, resume: str | Path | None = None,
          stop_after: int | None = None, progress: bool | None = None) -> Path:
    """Run (or resume) a training; ``stop_after`` ends after that many iterations (checkpoint included)."""
    config_text = dump_config(cfg)
    trainer = build_trainer(cfg)
    out = Path(out_dir) if out_dir is not None else default_run_dir("multitask")
    try:
        if resume is not None:
            meta = trainer.load(Path(resume))
            if (diff := config_difference(meta["config"], config_text, PLACEMENT_KEYS)) is not None:
                raise ConfigError(f"resume: the checkpoint in {resume} was made with another config ({diff})")
        run = RunFolder(out, config_text)
        log = TrainLog(run, cfg.log.tensorboard, history=trainer.state.rows)
        t0 = time.monotonic()
        show = cfg.log.progress if progress is None else progress
        done0, total = trainer.progress()
        bar = tqdm(total=total, initial=min(done0, total), unit=trainer.unit, disable=not show, dynamic_ncols=True,
                   desc=f"multitask {cfg.mode}")
        ckpt = run.path / "checkpoint"
        while not trainer.finished() and (stop_after is None or trainer.iteration < stop_after):
            row = trainer.step()
            log.add(row)
            done, _ = trainer.progress()
            bar.update(max(0, min(done, total) - bar.n))
            bar.set_postfix(active=row["active_tasks"],
                            worst=f"{row.get('full_eval_worst', row.get('eval_worst', float('nan'))):.3g}")
            if trainer.iteration % cfg.log.checkpoint_every == 0:
                trainer.save(ckpt, config_text)
                log.write_csv()
        bar.close()
        trainer.save(ckpt, config_text)
        policy = trainer.export(run.path / "policy.pt")
        summary = {**trainer.summary(), "wall_s": time.monotonic() - t0, "peak_rss_mb": peak_rss_mb(),
                   "checkpoint": str(ckpt), "policy": str(policy), "resumed_from": str(resume) if resume else None}
        _plots(run.path, trainer, cfg)
        log.close()
        run.close(summary)
    finally:
        trainer.close()
    return run.path


def _plots(path: Path, trainer: Any, cfg: MultitaskConfig) -> None:
    xlabel, x, per_task = trainer.curves()
    ylabel = "corner reward (AutoCkt form)" if cfg.mode == "bandit" else "episode return"
    held = None
    if cfg.mode == "multistep":
        held = np.array([e["held_out"] for e in trainer.state.evals if "held_out" in e])
    plot_curves(path / "plots" / "task_curves.png", xlabel, x, per_task,
                f"multitask {cfg.mode}: per-task and worst-case ({cfg.tasks.schedule}, {cfg.combiner.kind})",
                ylabel=ylabel, held_out=held)


def main(config_path: str | Path, out_dir: str | Path | None = None, **opts: Any) -> Path:
    """CLI entry: ``opts`` may hold ``resume`` (checkpoint folder), ``overrides`` ({"dotted.key": value}),
    ``stop_after`` (iterations) and ``progress`` (bool)."""
    cfg = load_config(config_path, MultitaskConfig, opts.pop("overrides", None))
    unknown = set(opts) - {"resume", "stop_after", "progress"}
    if unknown:
        raise TypeError(f"multitask.main: unknown option(s) {sorted(unknown)}")
    return train(cfg, out_dir, **opts)
