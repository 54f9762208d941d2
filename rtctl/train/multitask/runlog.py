"""The multi-task trainer's learning-curve PNGs (the log itself: `rtctl.train.runlog.TrainLog`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rtctl.train.multitask.prune import worst_mean


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
