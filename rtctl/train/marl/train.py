"""`rtctl train marl CONFIG`: cooperative driving policies for 1/10-scale cars, MAPPO with a CBF shield.

Each iteration every rollout worker (Ray actor, or in-process with ``rollout.backend: local``) plays one
batch of synchronous episodes of the car sim (`rtctl.sim.vehicles`) with the current actor: behaviours masked
by the shield, neighbours as received over the simulated V2V link with a delay drawn per batch (delay
randomisation), shield interventions penalised in the reward. The learner then runs MAPPO (shared actor,
centralised critic on `state()`, value normalisation) and, for ``method: full``, the robust terms (PGD
worst-case Q in the advantage, KL smoothness in the ε-ball). With ``warm_start.batches`` > 0 the actor and
critic first imitate the scripted lane-changing driver (`rtctl.vehicles.scripted`; its env steps count in the
budget). The run folder gets config.yaml, log.jsonl,
metrics.csv, checkpoint/ (learner state, resumable), policy.pt (the actor, `rtctl.policies.marl_actor`),
summary.json and plots/learning_curve.png.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rtctl.config import ConfigError, config_difference, dump_config, load_config
from rtctl.vehicles.control import BEHAVIOUR_NAMES
from rtctl.policies.marl_actor import export_actor
from rtctl.report.runfolder import RunFolder, default_run_dir, peak_rss_mb
from rtctl.sim.vehicles.observe import ObsConfig

from rtctl.train.marl.config import MarlConfig
from rtctl.train.marl.learner import MarlLearner
from rtctl.train.marl.rollout import LocalWorkers, RayWorkers
from rtctl.vehicles.episodes import summarise
from rtctl.train.runlog import TrainLog
from rtctl.train.sections import PLACEMENT_KEYS

CHECKPOINT = "learner.pt"


def train(cfg: MarlConfig, out_dir: str | Path | None = None, resume: str | Path | None = None,
          progress: bool | None = None) -> Path:
    config_text = dump_config(cfg)
    torch.set_num_threads(cfg.torch_threads)
    out = Path(out_dir) if out_dir is not None else default_run_dir("marl")
    workers = (RayWorkers if cfg.rollout.backend == "ray" else LocalWorkers)(cfg)
    try:
        obs_dim, K, state_dim = workers.spaces()
        learner = MarlLearner(cfg, obs_dim, K, state_dim, cfg.env.n_agents)
        start, history = 0, []
        if resume is not None:
            blob = torch.load(Path(resume) / CHECKPOINT, map_location="cpu", weights_only=True)
            if (diff := config_difference(blob["config"], config_text, PLACEMENT_KEYS)) is not None:
                raise ConfigError(f"resume: the checkpoint in {resume} was made with another config ({diff})")
            learner.load_state_dict(blob["learner"])
            start, history = int(blob["iteration"]), list(blob["history"])
        run = RunFolder(out, config_text)
        log = TrainLog(run, cfg.log.tensorboard, history=history)
        show = cfg.log.progress if progress is None else progress
        bar = tqdm(total=cfg.iterations, initial=start, unit="it", disable=not show, dynamic_ncols=True,
                   desc=f"marl {cfg.method} {cfg.env.scenario}")
        t0 = time.monotonic()
        env_steps = int(history[-1]["env_steps"]) if history else 0
        ckpt = run.path / "checkpoint"
        ws = cfg.warm_start
        if ws.batches and (start == 0 or ws.bc_weight > 0):
            demos = [b for _ in range(ws.batches) for b in workers.collect_scripted()]
            shown = summarise([b.pop("stats") for b in demos], 0.1)
            if start == 0:
                env_steps += int(sum(np.asarray(b["live"]).sum() for b in demos))
                log.add({"iteration": 0, "env_steps": env_steps, **shown, **learner.warm_start(demos)})
            else:  # resumed: the DAPG term needs the demonstrations again (not kept in checkpoints)
                learner.keep_demos(demos)
        for it in range(start, cfg.iterations):
            t_roll = time.monotonic()
            batches = workers.collect({k: v.clone() for k, v in learner.actor.state_dict().items()})
            t_roll = time.monotonic() - t_roll
            stats = summarise([b.pop("stats") for b in batches], 0.1)
            env_steps += int(sum(np.asarray(b["live"]).sum() for b in batches))
            t_upd = time.monotonic()
            upd = learner.update(batches, (it + 1) / cfg.iterations)
            row = {"iteration": it + 1, "env_steps": env_steps, **stats, **upd,
                   "rollout_s": t_roll, "update_s": time.monotonic() - t_upd}
            log.add(row)
            bar.update(1)
            bar.set_postfix(ret=f"{stats['mean_return']:.2f}", coll=stats["collisions"],
                            done=f"{stats['completion_rate']:.2f}")
            if (it + 1) % cfg.log.checkpoint_every == 0 or it + 1 == cfg.iterations:
                _save(ckpt, learner, it + 1, log.rows, config_text)
                log.write_csv()
        bar.close()
        policy = export_actor(run.path / "policy.pt", learner.actor, BEHAVIOUR_NAMES,
                              dataclasses.asdict(ObsConfig()), cfg.env.scenario, cfg.method)
        last = log.rows[-1] if log.rows else {}
        summary = {"method": cfg.method, "scenario": cfg.env.scenario, "iterations": cfg.iterations,
                   "env_steps": env_steps, "wall_s": time.monotonic() - t0, "peak_rss_mb": peak_rss_mb(),
                   "final": {k: last.get(k) for k in ("mean_return", "collisions", "completion_rate",
                                                      "intervention_rate")},
                   "checkpoint": str(ckpt), "policy": str(policy), "resumed_from": str(resume) if resume else None}
        plot_learning_curve(run.path / "plots" / "learning_curve.png", log.rows, f"{cfg.method} on {cfg.env.scenario}")
        log.close()
        run.close(summary)
    finally:
        workers.close()
    return run.path


def _save(path: Path, learner: MarlLearner, iteration: int, rows: list[dict], config_text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (CHECKPOINT + ".tmp")
    torch.save({"learner": learner.state_dict(), "iteration": iteration, "history": rows,
                "config": config_text}, tmp)
    tmp.replace(path / CHECKPOINT)


def plot_learning_curve(path: Path, rows: list[dict], title: str) -> Path | None:
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["env_steps"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, label in zip(axes, ("mean_return", "completion_rate", "intervention_rate"),
                              ("mean episode return per agent", "completion rate", "shield intervention rate")):
        ax.plot(x, [r[key] for r in rows], lw=1.5)
        ax.set_xlabel("agent steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(config_path: str | Path, out_dir: str | Path | None = None, **opts: Any) -> Path:
    """CLI entry: ``opts`` may hold ``resume`` (a run's checkpoint folder), ``overrides``
    ({"dotted.key": value}) and ``progress`` (bool)."""
    cfg = load_config(config_path, MarlConfig, opts.pop("overrides", None))
    unknown = set(opts) - {"resume", "progress"}
    if unknown:
        raise TypeError(f"marl.main: unknown option(s) {sorted(unknown)}")
    return train(cfg, out_dir, **opts)
