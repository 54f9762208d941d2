"""`rtctl bench lerobot_latency`: LeRobot ACT inference latency on this CPU per camera image size.

What is timed: one `LeRobotPolicy.predict_chunk` (LeRobot pre-processor → ``predict_action_chunk`` →
post-processor, i.e. one chunk as the runtime asks for it), random weights, one torch thread (what a Ray
policy actor with ``num_cpus=1`` gets). Models: LeRobot's default ACT architecture (ResNet-18 backbone,
d=512, 4+1 layers, chunk 100; ~52 M parameters with a camera) state-only and with one camera at 64, 96
and 224 px; and the small state-only ACT that `rtctl bench async` runs (configs/lerobot_act_*.yaml).
Each repeat is a fresh process (its own peak RSS) that times every condition after warm-up calls; rows
give the median of the per-repeat medians with min/max over repeats, the ratio to the default ACT
state-only in the same run, the inference delay in 30 Hz ticks it implies, and the machine's 1-minute
load average at the end of each repeat (the CPU is shared: latencies scale with it).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rtctl.bench.common import run_child, spread
from rtctl.report.runfolder import write_rows

SIZES = (None, 64, 96, 224)
DEFAULT_ACT = dict(chunk_size=100, dim_model=512, n_heads=8, dim_feedforward=3200, n_encoder_layers=4,
                   n_decoder_layers=1, use_vae=True)
SMALL_ACT_CONFIG = "configs/lerobot_act_reach.yaml"
RATE_HZ = 30.0


def conditions() -> list[tuple[str, int | None, dict]]:
    from rtctl.config import load_config
    from rtctl.train.lerobot.act import LeRobotACTTrainConfig

    small = load_config(SMALL_ACT_CONFIG, LeRobotACTTrainConfig).model.model_dump()
    return [("act_default", s, DEFAULT_ACT) for s in SIZES] + [("act_small", None, small)]


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """One repeat (runs in a fresh process): median latency of every condition."""
    import torch

    from rtctl.policies.lerobot_adapter import LeRobotPolicy
    from rtctl.report.runfolder import peak_rss_mb
    from rtctl.train.lerobot.models import act_config, build_policy, unit_stats

    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    out = []
    for model, size, arch in conditions():
        cfg = act_config(image_size=size, **arch)
        pol = LeRobotPolicy(*build_policy(cfg, unit_stats(cfg)))
        obs = {"state": rng.uniform(-1, 1, 6), "target": np.array([0.2, 0.0, 0.1, 1.0]), "tick": 0}
        if size:
            obs["image"] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        times = []
        for i in range(args["warmup"] + args["calls"]):
            t0 = time.perf_counter()
            pol.predict_chunk(obs)
            if i >= args["warmup"]:
                times.append(time.perf_counter() - t0)
        out.append({"model": model, "image_px": size, "chunk_size": pol.chunk_size,
                    "params_m": sum(p.numel() for p in pol.policy.parameters()) / 1e6,
                    "latency_ms": 1000 * float(np.median(times))})
    return {"rows": out, "peak_rss_mb": peak_rss_mb(), "load_avg_1m": os.getloadavg()[0]}


def run(out_dir: Path, quick: bool) -> list[dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    args = {"threads": 1, "warmup": 2, "calls": 5 if quick else 20}
    repeats = [run_child("rtctl.bench.lerobot_latency", args, timeout_s=1800) for _ in range(3)]
    rows = []
    for i, first in enumerate(repeats[0]["rows"]):
        lat = spread([r["rows"][i]["latency_ms"] for r in repeats])
        rows.append({**{k: first[k] for k in ("model", "image_px", "chunk_size", "params_m")},
                     "latency_ms_median": lat["median"], "latency_ms_min": lat["min"], "latency_ms_max": lat["max"],
                     "repeats": lat["n"], "calls_per_repeat": args["calls"], "torch_threads": args["threads"],
                     "delay_ticks_30hz": math.ceil(lat["median"] / (1000.0 / RATE_HZ))})
    base = rows[0]["latency_ms_median"]  # default ACT, state-only
    rss = spread([r["peak_rss_mb"] for r in repeats])
    load = [r["load_avg_1m"] for r in repeats]  # the machine is shared: say how busy it was
    for r in rows:
        r["ratio_to_state_only"] = r["latency_ms_median"] / base
        r["peak_rss_mb_per_process"] = rss["median"]
        r["load_avg_1m_per_repeat"] = load
    write_rows(out_dir / "results.json", rows)
    _plot(out_dir, rows)
    return rows


def _plot(out_dir: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    act = [r for r in rows if r["model"] == "act_default"]
    labels = ["state" if r["image_px"] is None else f"{r['image_px']} px" for r in act]
    med = np.array([r["latency_ms_median"] for r in act])
    err = np.array([[m - r["latency_ms_min"], r["latency_ms_max"] - m] for m, r in zip(med, act)]).T
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(labels, med, yerr=err, capsize=4, color="tab:blue")
    ax.axhline(1000.0 / RATE_HZ, color="tab:red", lw=1, ls="--", label="one 30 Hz tick")
    ax.set_ylabel("ms per chunk (median; min–max of 3)")
    ax.set_title("LeRobot ACT (default size) on this CPU, 1 thread")
    ax.legend()
    fig.tight_layout()
    (out_dir / "plots").mkdir(exist_ok=True)
    fig.savefig(out_dir / "plots" / "lerobot_act_latency.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
