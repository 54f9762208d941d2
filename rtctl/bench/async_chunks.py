"""`rtctl bench async`: sync vs naive async vs VLASH rollforward vs continuous replanning, side by side.

Fixed defaults: 30 Hz tick, H = 50, K = 25 executed actions per chunk, hard-switch merge for every mode.
Virtual clock for the grid (inference latency simulated in ticks: deterministic, same seed → same
figures; every cell runs the same seeded episodes, so cells are paired): tasks reach/whack × modes ×
injected Δ ∈ {0, 2, 4, 8} × q ∈ {1, 2} × policies bc / bc_offset (rtctl's chunking MLP) and, when the
`rtctl[lerobot]` extra is installed, lerobot_act / lerobot_act_offset (a small LeRobot ACT through
`rtctl.policies.lerobot_adapter`, trained by `rtctl train lerobot_act`). Each offset-trained policy is
compared with its plain twin (difference and 95% CI, paired seeds). Wall clock (real Ray actor, real tick,
latency injected in the actor) once per mode at Δ = 4, for timing and as a cross-check.
"""
from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from rtctl.chunking.scheduler import MODES
from rtctl.chunking.stats import diff_means_ci, diff_proportions_ci, mean_ci, wilson_ci
from rtctl.report.runfolder import write_rows

RATE, H, K = 30.0, 50, 25
DELAYS = (0, 2, 4, 8)
QS = (1, 2)
TASKS = ("reach", "whack")
POLICIES = ("bc", "bc_offset")
LEROBOT_POLICIES = ("lerobot_act", "lerobot_act_offset")
OFFSET_PAIRS = {"bc_offset": "bc", "lerobot_act_offset": "lerobot_act"}  # offset-trained → plain twin
# One checkpoint per task and variant: reach is demonstrated slowly (0.35 rad/s, several chunks per
# episode), whack fast (1.0 rad/s, 2.5 s deadlines); the observation does not say which task it is.
TRAIN_CONFIGS = {(task, pol): f"configs/{pol.removesuffix('_offset')}_{task}{'_offset' if pol.endswith('_offset') else ''}.yaml"
                 for task in ("reach", "whack") for pol in POLICIES + LEROBOT_POLICIES}
REPLAN_IN_FLIGHT = 4
SEED = 1000  # evaluation episodes are seeds SEED, SEED+1, … (disjoint from the demos' seeds)


def default_policies() -> tuple[str, ...]:
    """bc pair always; the LeRobot ACT pair when lerobot is installed (it is an optional extra)."""
    if importlib.util.find_spec("lerobot") is None:
        print("bench async: lerobot not installed, skipping policies", ", ".join(LEROBOT_POLICIES))
        return POLICIES
    return POLICIES + LEROBOT_POLICIES


def ensure_checkpoint(task: str, policy: str) -> str:
    if policy in LEROBOT_POLICIES:
        from rtctl.train.lerobot_act import ensure_checkpoint as ensure
    else:
        from rtctl.train.bc import ensure_checkpoint as ensure
    return str(ensure(TRAIN_CONFIGS[(task, policy)]))


def load_policy(policy: str, ckpt: str):
    if policy in LEROBOT_POLICIES:
        from rtctl.policies.lerobot_adapter import LeRobotPolicy

        return LeRobotPolicy.load(ckpt)
    from rtctl.policies.bc import BCPolicy

    return BCPolicy.load(ckpt)


def virtual_cell(task: str, mode: str, policy: str, ckpt: str, delay: int, q: int, episodes: int,
                 seed: int = SEED, shield: bool = False) -> dict[str, Any]:
    import torch

    from rtctl.chunking.delay import DelayEstimator
    from rtctl.chunking.inference import InlineClient
    from rtctl.chunking.scheduler import ChunkScheduler
    from rtctl.control import ControlLoop
    from rtctl.drivers.sim_arm import SimArmDriver

    torch.set_num_threads(1)
    driver = SimArmDriver(task=task, rate_hz=RATE, seed=seed)
    driver.connect()
    client = InlineClient(load_policy(policy, ckpt), delay_ticks=delay)
    est = DelayEstimator(window=20, percentile=95, warmup=2)
    low, high = driver.spec.action_low, driver.spec.action_high

    def make() -> ChunkScheduler:
        return ChunkScheduler(mode, H, K, low, high, q=q, delay=est, max_in_flight=REPLAN_IN_FLIGHT)

    arm_shield = None
    if shield:
        from rtctl.shielding import ArmShieldStep, ShieldSection

        arm_shield = ArmShieldStep(ShieldSection(), RATE)
    loop = ControlLoop(driver, make, client, RATE, episodes=episodes, record_rows=False, shield=arm_shield)
    t0 = time.perf_counter()
    k = 0
    while loop.tick(k):
        k += 1
    eps = loop.episodes
    return {
        "task": task, "mode": mode, "policy": policy, "delay_steps": delay, "q": q, "shield": shield,
        "shield_counts": arm_shield.counts() if arm_shield is not None else None,
        "success": [e.success for e in eps], "task_time": [e.task_time_s for e in eps],
        "reactions": [r for e in eps for r in e.reactions_s],
        "reactions_motion": [r for e in eps for r in e.reactions_motion_s],
        "seam_jumps": loop.seam_jumps, "inside_steps": loop.inside_steps,
        "delay_measured": est.value, "counts": loop.counts(), "ticks": k, "cpu_s": time.perf_counter() - t0,
    }


def _cell_job(args: tuple) -> dict[str, Any]:
    return virtual_cell(*args)


def row_from(cell: dict[str, Any], clock: str) -> dict[str, Any]:
    succ = cell["success"]
    n = len(succ)
    lo, hi = wilson_ci(int(sum(succ)), n)
    tt, tt_lo, tt_hi = mean_ci(cell["task_time"])
    jumps, steps = np.asarray(cell["seam_jumps"]), np.asarray(cell["inside_steps"])
    med = float(np.median(steps)) if steps.size else float("nan")
    react = np.asarray(cell["reactions"], float)
    motion = np.asarray(cell["reactions_motion"], float)
    whack = cell["task"] == "whack"
    return {
        "task": cell["task"], "mode": cell["mode"], "policy": cell["policy"], "clock": clock,
        "shield": cell.get("shield", False),
        "shield_interventions": (cell.get("shield_counts") or {}).get("interventions"),
        "shield_fallbacks": (cell.get("shield_counts") or {}).get("fallbacks"),
        "delay_steps": cell["delay_steps"], "delay_steps_measured": cell["delay_measured"],
        "exec_steps": K, "q": cell["q"], "episodes": n,
        "success_rate": float(np.mean(succ)) if n else float("nan"), "success_ci95": [lo, hi],
        "task_time_s": tt, "task_time_ci95": [tt_lo, tt_hi],
        "reaction_latency_s_p50": float(np.median(react)) if whack and react.size else None,
        "reaction_latency_s_p95": float(np.percentile(react, 95)) if whack and react.size else None,
        "reaction_motion_s_p50": float(np.median(motion)) if whack and motion.size else None,
        "seam_jump_p95": float(np.percentile(jumps, 95) / med) if jumps.size and med > 0 else None,
        "tick_period_err_p99_ms": cell.get("tick_period_err_p99_ms"),
        "deadline_misses": cell.get("deadline_misses"),
        "hold_ticks": cell["counts"].get("hold_ticks"), "starved_ticks": cell["counts"].get("starved_ticks"),
        "rejected_chunks": cell["counts"].get("rejected_chunks"),
    }


def wall_cell(task: str, mode: str, policy: str, ckpt: str, delay: int, duration_s: float,
              out_dir: Path, shield: bool = False) -> dict[str, Any]:
    """One wall-clock run: real tick, real Ray actor with Δ ticks of injected latency."""
    import yaml

    from rtctl.run import run

    cfg = {
        "seed": SEED, "duration_s": duration_s,
        "tick": {"rate_hz": RATE},
        "driver": {"type": "sim_arm", "task": task},
        # Inject a little under Δ ticks: Ray's own round trip (~1–3 ms) brings it to Δ at the next poll.
        "policy": {"type": "bc", "checkpoint": ckpt, "horizon": H,
                   "extra_latency_ms": max(0.0, delay * 1000.0 / RATE - 6.0)},
        "actor": {"enabled": True, "num_cpus": 1},
        "scheduler": {"mode": mode, "exec_steps": K, "max_in_flight": REPLAN_IN_FLIGHT},
        "shield": {"enabled": shield},
        "plots": True,
    }
    run_dir = out_dir / "wall" / f"{task}-{mode}-{policy}"
    cfg_path = out_dir / "wall" / f"{task}-{mode}-{policy}.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    run(cfg_path, run_dir, progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"run_dir": str(run_dir), **summary}


def run(out_dir: Path, quick: bool, shield: bool = False, policies: Optional[tuple[str, ...]] = None,
        episodes: Optional[int] = None, delays: Optional[tuple[int, ...]] = None, wall_clock: bool = True) -> list[dict]:
    """The grid with the shield off (the comparison of scheduling modes alone); `rtctl bench async_shield`
    runs the same grid with every command through the CBF shield. ``policies``/``episodes``/``delays``
    narrow the grid (defaults: every installed policy; 12 or 200 episodes; Δ ∈ {0, 4} or `DELAYS`);
    ``wall_clock=False`` skips the wall-clock runs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policies = tuple(policies or default_policies())
    ckpts = {(task, pol): ensure_checkpoint(task, pol) for task in TASKS for pol in policies}
    episodes = episodes or (12 if quick else 200)
    delays = tuple(delays or ((0, 4) if quick else DELAYS))
    jobs = [(task, mode, pol, ckpts[(task, pol)], d, q, episodes, SEED, shield) for task in TASKS for mode in MODES
            for pol in policies for d in delays for q in QS]
    cells = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes=2) as pool:
        for cell in tqdm(pool.imap_unordered(_cell_job, jobs), total=len(jobs), desc="bench async (virtual)"):
            cells.append(cell)
    order = {j[:3] + (j[4], j[5]): i for i, j in enumerate(jobs)}
    cells.sort(key=lambda c: order[(c["task"], c["mode"], c["policy"], c["delay_steps"], c["q"])])
    (out_dir / "virtual_cells.json").write_text(json.dumps(cells))
    rows = [row_from(c, "virtual") for c in cells]

    wall_s = 12.0 if quick else 40.0
    wall_rows, latencies = [], []
    import ray

    if wall_clock:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for mode in tqdm(MODES if wall_clock else (), desc="bench async (wall)"):
            s = wall_cell("whack", mode, "bc_offset", ckpts[("whack", "bc_offset")], 4, wall_s, out_dir, shield)
            latencies.append(s.get("inference_latency_ms_p50"))
            wall_rows.append({
                "task": "whack", "mode": mode, "policy": "bc_offset", "clock": "wall", "delay_steps": 4,
                "shield": shield, "shield_interventions": (s.get("shield") or {}).get("interventions"),
                "shield_fallbacks": (s.get("shield") or {}).get("fallbacks"),
                "delay_steps_measured": s.get("delay_steps_measured"), "exec_steps": K, "q": 1,
                "episodes": s.get("episodes"), "success_rate": s.get("success_rate"),
                "success_ci95": list(wilson_ci(int(round((s.get("success_rate") or 0) * s.get("episodes", 0))),
                                               s.get("episodes", 0))),
                "task_time_s": s.get("task_time_s"), "task_time_ci95": None,
                "reaction_latency_s_p50": s.get("reaction_latency_s_p50"),
                "reaction_latency_s_p95": s.get("reaction_latency_s_p95"),
                "reaction_motion_s_p50": None, "seam_jump_p95": s.get("seam_jump_p95"),
                "tick_period_err_p99_ms": s.get("period_err_p99_ms"), "deadline_misses": s.get("deadline_misses"),
                "hold_ticks": s.get("counts", {}).get("hold_ticks"),
                "starved_ticks": s.get("counts", {}).get("starved_ticks"),
                "rejected_chunks": s.get("counts", {}).get("rejected_chunks"),
                "inference_latency_ms_p50": s.get("inference_latency_ms_p50"),
                "peak_rss_mb": s.get("peak_rss_mb"), "run_dir": s.get("run_dir"),
            })
    finally:
        if wall_clock:
            ray.shutdown()
    rows += wall_rows
    write_rows(out_dir / "results.json", rows)
    lat = [v for v in latencies if v is not None]
    floor = {str(d): (d + 1) / RATE for d in delays}
    if lat:
        floor["4"] = float(np.median(lat)) / 1000.0 + 1 / RATE  # measured on the wall clock
    (out_dir / "floor.json").write_text(json.dumps(floor, indent=2) + "\n")
    figures = headline(rows, cells, floor, policies)
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out_dir / "table.md").write_text(markdown_table(rows, figures))
    return rows


def _find(rows, **kw) -> Optional[dict]:
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)


def headline(rows: list[dict], cells: list[dict], floor: dict, policies: tuple[str, ...] = POLICIES) -> dict:
    """The issue's figures, computed from the rows (Δ = 4 unless said otherwise)."""
    out: dict[str, Any] = {}
    ideal = (K + 4) / K
    for task in TASKS:
        for pol in policies:
            base = dict(task=task, policy=pol, clock="virtual", delay_steps=4)
            sync, rf = _find(rows, mode="sync", q=1, **base), _find(rows, mode="async_rollforward", q=1, **base)
            naive = _find(rows, mode="async", q=1, **base)
            rf2 = _find(rows, mode="async_rollforward", q=2, **base)
            rp = _find(rows, mode="replan_rollforward", q=1, **base)
            if not (sync and rf):
                continue
            key = f"{task}/{pol}"
            sp = sync["task_time_s"] / rf["task_time_s"]
            out[key] = {
                "speedup_rollforward_vs_sync": sp, "ideal": ideal, "fraction_of_ideal": sp / ideal,
                "success_sync": sync["success_rate"], "success_rollforward": rf["success_rate"],
                "speedup_rollforward_q2_vs_sync": sync["task_time_s"] / rf2["task_time_s"] if rf2 else None,
                "success_rollforward_q2": rf2["success_rate"] if rf2 else None,
                "success_gain_vs_naive_pts": 100 * (rf["success_rate"] - naive["success_rate"]) if naive else None,
                "seam_ratio_naive_over_rollforward": (naive["seam_jump_p95"] / rf["seam_jump_p95"])
                if naive and naive["seam_jump_p95"] and rf["seam_jump_p95"] else None,
            }
            if task == "whack" and rp and rp["reaction_latency_s_p50"] is not None:
                out[key]["replan_reaction_p50_over_floor"] = rp["reaction_latency_s_p50"] / floor["4"]
                out[key]["replan_reaction_p50_s"] = rp["reaction_latency_s_p50"]
                if sync["reaction_latency_s_p50"]:
                    out[key]["replan_reaction_over_sync"] = rp["reaction_latency_s_p50"] / sync["reaction_latency_s_p50"]
    # offset-trained vs plain under async_rollforward, per policy family, task and Δ
    # (keys: "offset_minus_plain/<task>/delay<Δ>" for bc, "<plain>:offset_minus_plain/…" for the others)
    by = {(c["task"], c["mode"], c["policy"], c["delay_steps"], c["q"]): c for c in cells}
    for offset_pol, plain in OFFSET_PAIRS.items():
        prefix = "" if plain == "bc" else f"{plain}:"
        for task in TASKS:
            for d in sorted({c["delay_steps"] for c in cells}):
                a = by.get((task, "async_rollforward", offset_pol, d, 1))
                b = by.get((task, "async_rollforward", plain, d, 1))
                if a and b:
                    ds = diff_proportions_ci(sum(a["success"]), len(a["success"]), sum(b["success"]), len(b["success"]))
                    dt = diff_means_ci(a["task_time"], b["task_time"])
                    out[f"{prefix}offset_minus_plain/{task}/delay{d}"] = {"success_diff": ds, "task_time_diff_s": dt}
    return out


def markdown_table(rows: list[dict], figures: dict) -> str:
    def f(v, nd=2):
        return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"

    lines = ["| task | policy | clock | mode | Δ | q | success (95% CI) | task time s | seam p95 | reaction p50/p95 s | tick p99 ms | misses |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["clock"] == "virtual" and r["delay_steps"] not in (0, 4, 8) and r["q"] != 1:
            continue
        ci = r["success_ci95"]
        lines.append(f"| {r['task']} | {r['policy']} | {r['clock']} | {r['mode']} | {r['delay_steps']} | {r['q']} | "
                     f"{f(r['success_rate'])} ({f(ci[0])}–{f(ci[1])}) | {f(r['task_time_s'])} | {f(r['seam_jump_p95'])} | "
                     f"{f(r['reaction_latency_s_p50'])}/{f(r['reaction_latency_s_p95'])} | "
                     f"{f(r['tick_period_err_p99_ms'], 3)} | {r['deadline_misses'] if r['deadline_misses'] is not None else '–'} |")
    lines.append("")
    lines.append("```json")
    lines.append(json.dumps(figures, indent=1))
    lines.append("```")
    return "\n".join(lines) + "\n"
