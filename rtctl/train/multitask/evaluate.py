"""`rtctl eval CONFIG --checkpoint DIR` and `rtctl export CONFIG --checkpoint DIR --out FILE` for the
multi-task trainer.

Evaluation reports mean, worst-task and worst-10 % (mean of the worst ceil(K/10) tasks) return on the full
task set and on the held-out extreme variations. For sizing (bandit) runs a "return" is the AutoCkt-form
reward of one design on one corner, and the design is the one the run found (the first all-corner pass,
else the incumbent), with the actor's current deterministic output reported beside it. Export writes the
actor as a file `rtctl.policies.mlp.MLPPolicy.load` reads.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rtctl.config import load_config
from rtctl.train.multitask.config import MultitaskConfig


def _load(config_path: str | Path, checkpoint: str | Path, overrides: dict[str, Any] | None):
    from rtctl.train.multitask.train import build_trainer

    cfg = load_config(config_path, MultitaskConfig, overrides)
    trainer = build_trainer(cfg)
    trainer.load(Path(checkpoint))
    return cfg, trainer


def _stats(values: np.ndarray, names: list[str]) -> dict[str, Any]:
    from rtctl.train.multitask.prune import summarize

    return {**summarize(values), "n_tasks": len(values), "per_task": dict(zip(names, np.asarray(values).tolist()))}


def evaluate(config_path: str | Path, checkpoint: str | Path, out: str | Path | None = None,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Figures of a checkpoint on the full set and the held-out set; also written to ``out`` as JSON."""
    cfg, trainer = _load(config_path, checkpoint, overrides)
    try:
        result: dict[str, Any] = {"config": str(config_path), "checkpoint": str(checkpoint), "mode": cfg.mode}
        if cfg.mode == "bandit":
            result.update(_evaluate_design(trainer))
        else:
            for key, held in (("full_set", False), ("held_out", True)):
                if held and trainer.held is None:
                    continue
                vset = trainer.held if held else trainer.vset
                result[key] = _stats(trainer.evaluate(held_out=held)[0], vset.names)
    finally:
        trainer.close()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _evaluate_design(trainer: Any) -> dict[str, Any]:
    from rtctl.sim.analog.env import OpAmpProblem
    from rtctl.train.multitask.bandit import STATE

    held = OpAmpProblem(trainer.problem.backend, trainer.cfg.env.specs_path, corners="held_out")
    out: dict[str, Any] = {}
    for label, action in (("design", trainer.design()), ("actor", trainer.learner.act(STATE)[0])):
        full, ho = trainer.problem.evaluate_all(action), held.evaluate_all(action)
        out[label] = {
            "values": trainer.problem.describe(action),
            "full_set": {**_stats(full.reward, trainer.problem.vset.names), "corners_passed": int(full.passed.sum())},
            "held_out": {**_stats(ho.reward, held.vset.names), "corners_passed": int(ho.passed.sum())},
        }
    out["full_set"], out["held_out"] = out["design"]["full_set"], out["design"]["held_out"]
    return out


def export(config_path: str | Path, checkpoint: str | Path, out: str | Path,
           overrides: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint's actor as an `MLPPolicy` export."""
    _, trainer = _load(config_path, checkpoint, {**(overrides or {}), "rollout.backend": "local"})
    try:
        return trainer.export(Path(out))
    finally:
        trainer.close()
