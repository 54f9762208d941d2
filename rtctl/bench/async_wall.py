"""Wall-clock rows of `rtctl bench async`: `rtctl run` with a real 30 Hz tick and the policy in a Ray actor.

Two sets, both on whack with the offset-trained BC (`async_chunks.WALL`):
- constant latency: every scheduling mode once, the actor held to Δ = 4 ticks (133 ms);
- jittered latency (`actor.extra_latency`): a normal 133 ± 40 ms clipped to [60, 250] ms and (full run
  only) a drift from 100 ms up by 6 ms/s, each run with async_rollforward on the measured Δ̂ (the default),
  async_rollforward on a fixed `scheduler.delay_ticks` = 4 (VLASH's fixed overlap) and replan_rollforward.
Rows carry the smoothness keys (before/after the shield), hits per minute and Δ̂'s spread over the run
(from the run log's `delay_est`).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from rtctl.bench import async_chunks as ac
from rtctl.bench.async_chunks import SMOOTHNESS
from rtctl.chunking.scheduler import MODES
from rtctl.bench.stats import wilson_ci

DELAY = 4  # ticks of the constant rows, and the fixed overlap of the jitter rows
ROUND_TRIP_MS = 6.0  # Ray's own submit → poll round trip, taken off the injected latency so Δ lands at 4
JITTER = {  # actor.extra_latency specs (rtctl.runtime.ray_client); ms are before Ray's round trip
    "normal_133±40ms": {"kind": "normal", "ms": 133.0 - ROUND_TRIP_MS, "std_ms": 40.0, "min_ms": 60.0,
                        "max_ms": 250.0},
    "drift_100ms+6ms/s": {"kind": "drift", "ms": 100.0 - ROUND_TRIP_MS, "drift_ms_per_s": 6.0, "min_ms": 60.0,
                          "max_ms": 250.0},
}
# (row label, scheduler mode, fixed delay_ticks or None for the measured Δ̂)
JITTER_SCHEDULERS = (("measured", "async_rollforward", None), ("fixed", "async_rollforward", DELAY),
                     ("measured", "replan_rollforward", None))


def jitter_supported() -> bool:
    """Whether this tree's actor config has `extra_latency` (added alongside this benchmark)."""
    from rtctl.runtime.ray_client import ActorConfig

    return "extra_latency" in ActorConfig.model_fields


def wall_config(task: str, mode: str, ckpt: str, duration_s: float, seed: int, rate: float, horizon: int,
                exec_steps: int, max_in_flight: int, shield: bool, plots: bool, delay: int = DELAY,
                extra_latency: Optional[dict] = None, delay_ticks: Optional[int] = None,
                episodes: Optional[int] = None) -> dict[str, Any]:
    """The `rtctl run` config of one wall row: constant injected latency of ``delay`` ticks, or the
    ``extra_latency`` spec; ``delay_ticks`` pins the scheduler's Δ instead of measuring it; ``episodes``
    ends the run after that many episodes (else at ``duration_s``)."""
    actor: dict[str, Any] = {"enabled": True, "num_cpus": 1}
    policy: dict[str, Any] = {"type": "bc", "checkpoint": ckpt, "horizon": horizon}
    if extra_latency is None:
        # Inject a little under Δ ticks: Ray's own round trip brings it to Δ at the next poll.
        policy["extra_latency_ms"] = max(0.0, delay * 1000.0 / rate - ROUND_TRIP_MS)
    else:
        actor["extra_latency"] = {**extra_latency, "seed": seed}
    sched: dict[str, Any] = {"mode": mode, "exec_steps": exec_steps, "max_in_flight": max_in_flight}
    if delay_ticks is not None:
        sched["delay_ticks"] = delay_ticks
    return {"seed": seed, "duration_s": duration_s, **({"episodes": episodes} if episodes else {}),
            "tick": {"rate_hz": rate},
            "driver": {"type": "sim_arm", "task": task}, "policy": policy, "actor": actor,
            "scheduler": sched, "shield": {"enabled": shield}, "plots": plots}


def wall_cell(name: str, cfg: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run one config under out_dir/wall/<name>; its summary.json plus Δ̂'s spread from the log."""
    import yaml

    from rtctl.runtime.runner import run

    run_dir = out_dir / "wall" / name
    cfg_path = out_dir / "wall" / f"{name}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.rmtree(run_dir, ignore_errors=True)
    run(cfg_path, run_dir, progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    est = []
    with open(run_dir / "log.jsonl") as f:
        for line in f:
            v = json.loads(line).get("delay_est")
            if v is not None:
                est.append(v)
    spread = [int(min(est)), int(np.median(est)), int(max(est))] if est else None
    return {"run_dir": str(run_dir), "delay_est_min_p50_max": spread, **summary}


def wall_row(s: dict[str, Any], mode: str, latency: str, delay_source: str, shield: bool, task: str,
             policy: str, exec_steps: int) -> dict[str, Any]:
    n = s.get("episodes") or 0
    counts = s.get("counts") or {}
    return {
        "task": task, "mode": mode, "policy": policy, "clock": "wall", "latency": latency,
        "delay_source": delay_source, "delay_steps": DELAY if latency == "constant" else None,
        "shield": shield, "shield_interventions": (s.get("shield") or {}).get("interventions"),
        "shield_fallbacks": (s.get("shield") or {}).get("fallbacks"),
        "delay_steps_measured": s.get("delay_steps_measured"),
        "delay_est_min_p50_max": s.get("delay_est_min_p50_max"), "exec_steps": exec_steps, "q": 1,
        "episodes": n, "success_rate": s.get("success_rate"),
        "success_ci95": list(wilson_ci(int(round((s.get("success_rate") or 0) * n)), n)),
        "task_time_s": s.get("task_time_s"), "task_time_ci95": None, "hits_per_min": s.get("hits_per_min"),
        "reaction_latency_s_p50": s.get("reaction_latency_s_p50"),
        "reaction_latency_s_p95": s.get("reaction_latency_s_p95"), "reaction_motion_s_p50": None,
        **{key: s.get(key) for key in SMOOTHNESS},
        "tick_period_err_p99_ms": s.get("period_err_p99_ms"), "deadline_misses": s.get("deadline_misses"),
        "hold_ticks": counts.get("hold_ticks"), "starved_ticks": counts.get("starved_ticks"),
        "rejected_chunks": counts.get("rejected_chunks"),
        "inference_latency_ms_p50": s.get("inference_latency_ms_p50"),
        "inference_latency_ms_p95": s.get("inference_latency_ms_p95"),
        # submit → the poll that used the result (what the scheduler sees); the injected part alone
        "inference_available_ms_p50": s.get("inference_available_ms_p50", s.get("inference_latency_ms_p50")),
        "inference_available_ms_p95": s.get("inference_available_ms_p95", s.get("inference_latency_ms_p95")),
        "inference_injected_ms_p50": s.get("inference_injected_ms_p50"),
        "inference_injected_ms_p95": s.get("inference_injected_ms_p95"),
        # from the actor's own timestamps: the model alone, and submit → the actor done
        "inference_model_ms_p50": s.get("inference_model_ms_p50"),
        "inference_round_trip_ms_p50": s.get("inference_round_trip_ms_p50"),
        "disturbances": (s.get("disturbances") or {}).get("events"),
        "peak_rss_mb": s.get("peak_rss_mb"), "wall_s": s.get("wall_s"), "run_dir": s.get("run_dir"),
    }


def plan(jitter: bool, quick: bool = False) -> list[tuple[str, str, str, Optional[dict], Optional[int]]]:
    """(name, mode, latency label, extra_latency spec, fixed delay_ticks) of every wall run. --quick runs the
    normal jitter case only (its 3 extra runs keep `rtctl bench async --quick` ≤ 3 min with all 4 policies)."""
    runs = [(f"constant-{mode}", mode, "constant", None, None) for mode in MODES]
    if jitter:
        for label, spec in list(JITTER.items())[:1 if quick else None]:
            kind = spec["kind"]
            runs += [(f"{kind}-{mode}-{src}", mode, label, spec, fixed) for src, mode, fixed in JITTER_SCHEDULERS]
    return runs


def wall_rows(ckpt: str, quick: bool, out_dir: Path, shield: bool, label: str = "async",
              jitter: bool = True) -> list[dict]:
    """Every wall run of `plan` in one local Ray cluster (2 CPUs). Full: 40 s each; --quick: one whack
    episode each (4 targets, ≤ 12 s), so a quick row still has a success, task time and reactions."""
    import ray

    if jitter and not jitter_supported():
        jitter = False
        print(f"bench {label}: actor.extra_latency not in this build (rtctl/runtime/ray_client.py) — "
              "jittered-latency wall rows skipped", flush=True)
    duration, episodes = (12.0, 1) if quick else (40.0, None)
    task, policy = ac.WALL
    rows = []
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for name, mode, latency, spec, fixed in tqdm(plan(jitter, quick), desc=f"bench {label} (wall)"):
            cfg = wall_config(task, mode, ckpt, duration, ac.SEED, ac.RATE, ac.H, ac.K, ac.REPLAN_IN_FLIGHT,
                              shield, plots=not quick, extra_latency=spec, delay_ticks=fixed, episodes=episodes)
            s = wall_cell(name, cfg, out_dir)
            source = "measured" if fixed is None else f"fixed {fixed}"
            rows.append(wall_row(s, mode, latency, source, shield, task, policy, ac.K))
    finally:
        ray.shutdown()
    return rows
