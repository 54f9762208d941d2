"""Training logs every trainer shares: log.jsonl rows, metrics.csv, TensorBoard scalars, the loss plot."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

from rtctl.report.runfolder import RunFolder


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


def plot_loss(out_dir: Path, losses: list[float], title: str = "BC training loss",
              ylabel: str = "masked MSE (normalised)") -> None:
    """<run>/plots/loss.png: a training loss per step, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(losses, lw=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_dir / "plots" / "loss.png", dpi=100)
    plt.close(fig)
