"""PNG plots of a run folder, drawn from its log alone (so `rtctl report DIR` can redraw them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtctl.report.runfolder import read_log


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _col(rows: list[dict], key: str, default: Any = np.nan) -> np.ndarray:
    return np.array([r.get(key, default) if r.get(key) is not None else default for r in rows], dtype=float)


def plot_timing(rows: list[dict], out: Path) -> Path:
    plt = _plt()
    err = _col(rows, "period_err_us") / 1000.0
    miss = int(sum(bool(r.get("miss")) for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(err[np.isfinite(err)], bins=80, color="tab:blue")
    ax.set_yscale("log")
    if err.size:
        p99 = float(np.nanpercentile(err, 99))
        ax.axvline(p99, color="tab:red", ls="--", label=f"p99 {p99:.3f} ms")
        ax.legend()
    ax.set_xlabel("period error |start − scheduled| (ms)")
    ax.set_ylabel("ticks")
    ax.set_title(f"tick period error ({len(rows)} ticks, {miss} deadline misses)")
    path = out / "tick_period_error.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_trajectories(rows: list[dict], out: Path) -> Path:
    plt = _plt()
    t = _col(rows, "t_start_ms") / 1000.0
    if not np.isfinite(t).any():
        t = np.arange(len(rows), dtype=float)
    state = np.array([r["state"] for r in rows if r.get("state") is not None], dtype=float)
    applied = np.array([r["applied"] for r in rows if r.get("applied") is not None], dtype=float)
    seams = [t[i] for i, r in enumerate(rows) if r.get("seam")]
    episodes = [t[i] for i in range(1, len(rows)) if rows[i].get("episode") != rows[i - 1].get("episode")]
    n = state.shape[1] if state.ndim == 2 else 0
    fig, axes = plt.subplots(max(n, 1), 1, figsize=(9, 1.6 * max(n, 1) + 1), sharex=True)
    axes = np.atleast_1d(axes)
    for j in range(n):
        ax = axes[j]
        ax.plot(t[: len(state)], state[:, j], lw=1.0, label="measured")
        ax.plot(t[: len(applied)], applied[:, j], lw=0.8, ls="--", label="command applied")
        for s in seams:
            ax.axvline(s, color="0.6", lw=0.4)
        for e in episodes:
            ax.axvline(e, color="tab:red", lw=0.8)
        ax.set_ylabel(f"q{j} (rad)")
    axes[0].legend(loc="upper right", fontsize=7)
    axes[0].set_title("joint trajectories (grey: chunk seams, red: episode starts)")
    axes[-1].set_xlabel("time (s)")
    path = out / "joint_trajectories.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_queue(rows: list[dict], out: Path) -> Path:
    plt = _plt()
    t = _col(rows, "t_start_ms") / 1000.0
    if not np.isfinite(t).any():
        t = np.arange(len(rows), dtype=float)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(t, _col(rows, "queue_depth"), lw=0.8, label="queue depth (planned ticks)")
    ax.plot(t, _col(rows, "delay_est"), lw=1.2, label="measured Δ̂ (ticks)")
    ax.plot(t, _col(rows, "in_flight"), lw=0.8, label="inferences in flight")
    holds = [t[i] for i, r in enumerate(rows) if r.get("starved")]
    if holds:
        ax.plot(holds, np.zeros(len(holds)), "r|", ms=8, label="held (chunk late)")
    ax.set_xlabel("time (s)")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("action queue and inference delay")
    path = out / "queue_and_delay.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_shield(rows: list[dict], out: Path) -> Path | None:
    info = [r.get("shield") for r in rows]
    if not any(i is not None for i in info):
        return None
    plt = _plt()
    t = _col(rows, "t_start_ms") / 1000.0
    hmin = np.array([i.get("min_barrier", np.nan) if i else np.nan for i in info], dtype=float)
    hit = [t[k] for k, i in enumerate(info) if i and i.get("intervened")]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(t, hmin, lw=0.9, label="min barrier value h")
    ax.axhline(0.0, color="k", lw=0.6)
    if hit:
        ax.plot(hit, np.zeros(len(hit)), "r|", ms=8, label="shield intervened")
    ax.set_xlabel("time (s)")
    ax.legend(fontsize=7)
    ax.set_title("safety shield")
    path = out / "shield.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    rows = read_log(run_dir)
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    if not rows:
        return []
    paths = [plot_timing(rows, out), plot_trajectories(rows, out), plot_queue(rows, out), plot_shield(rows, out)]
    return [p for p in paths if p is not None]
