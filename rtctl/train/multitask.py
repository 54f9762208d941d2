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
from typing import Any, Mapping

import numpy as np
import torch
from tqdm import tqdm

from rtctl.config import ConfigError, dump_config, load_config
from rtctl.report.runfolder import RunFolder, default_run_dir, peak_rss_mb

from .mt_config import MultitaskConfig
from .mt_runlog import TrainLog, plot_curves


def build_trainer(cfg: MultitaskConfig):
    torch.set_num_threads(cfg.torch_threads)
    torch.use_deterministic_algorithms(True)
    try:
        if cfg.mode == "bandit":
            from .mt_bandit import BanditTrainer
            return BanditTrainer(cfg)
        from .mt_multistep import MultistepTrainer
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
            if meta["config"] != config_text:
                raise ConfigError(f"resume: the checkpoint in {resume} was made with a different config")
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


def export_meta(action: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """What an exported actor records (see `rtctl.policies.base`), from what the trainers hand to
    `rtctl.policies.mlp.export_actor`: one action per chunk; the control rate of the env in ``extra["env"]``
    (multistep), built once here to read it: its ``control_hz`` (the SO-101 arm's, for arm_reach) or ``1/dt``
    (Gymnasium's MuJoCo and classic-control envs), else None; radians and joint names for the arm (absolute
    joint targets). A bandit export (a one-shot design, no env) has no rate."""
    from rtctl.policies.base import checkpoint_meta

    dim = len(action["low"])
    rate, units, names = None, None, None
    if extra.get("env") is not None:
        from .mt_envs import make_env

        env = make_env(extra["env"])
        try:
            u = env.unwrapped
            arm = getattr(u, "arm", None)  # ArmReachRL wraps the SO-101 sim
            rate = getattr(u, "control_hz", None) or getattr(arm, "control_hz", None)
            if rate is None and getattr(u, "dt", None):
                rate = 1.0 / float(u.dt)
            if arm is not None and action.get("mode") == "delta_state":
                from rtctl.sim.arm_env import JOINT_NAMES

                units = "rad"
                names = list(JOINT_NAMES) if len(JOINT_NAMES) == dim else None
        finally:
            env.close()
    return checkpoint_meta("mlp", rate, 1, units, dim, names, env_kind=extra.get("kind"))


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
