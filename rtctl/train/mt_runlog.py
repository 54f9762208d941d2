"""Training logs of the multi-task trainer: metrics.csv, TensorBoard scalars, log.jsonl rows, curve PNGs."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rtctl.report.runfolder import RunFolder

from .mt_prune import worst_mean


class TrainLog:
    """Rows go to the run folder's log.jsonl, to metrics.csv (rewritten whole, so a resumed run's file
    holds the full history) and, if enabled, to TensorBoard under ``<run>/tb``."""

    def __init__(self, run: RunFolder, tensorboard: bool, history: Sequence[dict] = ()) -> None:
        self.run = run
        self.rows: list[dict] = []
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(log_dir=str(run.path / "tb"))
        for row in history:
            self.add(row)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.run.log(row)
        if self.tb is not None:
            step = int(row.get("sims", row.get("env_steps", row.get("iteration", 0))))
            for k, v in row.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, step)

    def write_csv(self) -> Path:
        path = self.run.path / "metrics.csv"
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for r in self.rows:
                w.writerow({k: _fmt(r.get(k)) for k in keys})
        tmp.replace(path)
        return path

    def close(self) -> None:
        self.write_csv()
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # full precision: resumed and uninterrupted runs compare exactly
    return "" if v is None else v


def plot_curves(path: Path, xlabel: str, x: Sequence[float], per_task: np.ndarray, title: str,
                ylabel: str = "return", held_out: np.ndarray | None = None) -> Path | None:
    """Per-task curves (thin), worst task, worst-10 % and mean (bold), and the held-out worst if given."""
    per_task = np.asarray(per_task, dtype=float)
    if per_task.size == 0:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for k in range(per_task.shape[1]):
        ax.plot(x, per_task[:, k], color="0.6", lw=0.6, alpha=0.5)
    ax.plot(x, per_task.mean(axis=1), lw=2, label="mean over tasks")
    ax.plot(x, [worst_mean(r, 0.1) for r in per_task], lw=2, label="worst 10 % of tasks")
    ax.plot(x, per_task.min(axis=1), lw=2, color="k", label="worst task")
    if held_out is not None and np.asarray(held_out).size:
        ax.plot(x[-len(held_out):], np.min(held_out, axis=1), lw=1.5, ls="--", label="held-out worst")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
