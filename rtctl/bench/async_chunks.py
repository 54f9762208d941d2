"""`rtctl bench async`: sync vs naive async vs VLASH rollforward vs continuous replanning, side by side.

Fixed defaults: 30 Hz tick, H = 50, K = 25 executed actions per chunk, hard-switch merge for every mode.
Virtual clock for the grid (inference latency simulated in ticks: deterministic, same seed → same
figures; every cell runs the same seeded episodes, so cells are paired): tasks reach/whack × modes ×
injected Δ ∈ {0, 2, 4, 8} × q ∈ {1, 2} × policies. Policies (``--policies``, default the bc pair):
bc / bc_offset (rtctl's chunking MLP) and, opted in, lerobot_act / lerobot_act_offset (a small LeRobot ACT
through `rtctl.policies.lerobot_adapter`, trained by `rtctl train lerobot_act`; needs `rtctl[lerobot]`).
Each offset-trained policy is compared with its plain twin (difference and 95% CI, paired seeds).
Wall clock (real Ray actor, real tick; `rtctl.bench.async_wall`): once per mode at a constant Δ = 4, and
under jittered / drifting actor latency the measured Δ̂ vs a fixed `scheduler.delay_ticks` vs replanning.

Checkpoints are trained once by `setup()` (named and timed up front, cached under artifacts/); `run()`
finds them cached. Reaction floor: Δ / rate — a chunk launched on the tick a target appears is used on
the tick it arrives, Δ ticks later.
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
from rtctl.bench.stats import diff_means_ci, diff_proportions_ci, mean_ci, wilson_ci
from rtctl.report.runfolder import write_rows

RATE, H, K = 30.0, 50, 25
DELAYS = (0, 2, 4, 8)
QS = (1, 2)
TASKS = ("reach", "whack")
POLICIES = ("bc", "bc_offset")
LEROBOT_POLICIES = ("lerobot_act", "lerobot_act_offset")
ALL_POLICIES = POLICIES + LEROBOT_POLICIES
OFFSET_PAIRS = {"bc_offset": "bc", "lerobot_act_offset": "lerobot_act"}  # offset-trained → plain twin
# One checkpoint per task and variant: reach is demonstrated slowly (0.35 rad/s, several chunks per
# episode), whack fast (1.0 rad/s, 2.5 s deadlines); the observation does not say which task it is.
TRAIN_CONFIGS = {(task, pol): f"configs/{pol.removesuffix('_offset')}_{task}{'_offset' if pol.endswith('_offset') else ''}.yaml"
                 for task in TASKS for pol in ALL_POLICIES}
# Minutes to train one checkpoint on this shared 2-core machine (measured: BC 40–50 s alone, ~80 s two at a
# time; ACT 6–7 min alone, docs/so101.md).
TRAIN_MIN = {"bc": 1.5, "bc_offset": 1.5, "lerobot_act": 7.0, "lerobot_act_offset": 7.0}
WALL = ("whack", "bc_offset")  # the wall-clock rows' task and policy (a BC checkpoint: the actor loads it)
REPLAN_IN_FLIGHT = 4
SMOOTHNESS = ("seam_jump_p95", "seam_jump_p95_cmd", "step_p95_cmd", "step_p95_applied", "jerk_p95_cmd",
              "jerk_p95_applied")
SEED = 1000  # evaluation episodes are seeds SEED, SEED+1, … (disjoint from the demos' seeds)


def parse_policies(text: Optional[str]) -> tuple[str, ...]:
    """``--policies`` → policy names in the order given, no repeats; None or "" → the bc pair.
    Raises ValueError naming an unknown policy."""
    if not text:
        return POLICIES
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [p for p in names if p not in ALL_POLICIES]
    if bad or not names:
        raise ValueError(f"unknown policy '{', '.join(bad) or text}' in --policies (known: {', '.join(ALL_POLICIES)})")
    return names


def reaction_floor(delays: tuple[int, ...], rate: float = RATE) -> dict[str, float]:
    """Reaction-latency floor per injected Δ: Δ / rate (the chunk is used on the tick it arrives)."""
    return {str(d): d / rate for d in delays}


# -- checkpoints (the one-time set-up) ----------------------------------------------------------------------
def _cache_dir(task: str, policy: str) -> tuple[Path, str]:
    """Where `ensure_checkpoint` keeps this checkpoint and the file that marks it complete (the trainers'
    own cache key, so set-up can say what it will train)."""
    if policy in LEROBOT_POLICIES:
        from rtctl.train.lerobot.act import checkpoint_dir

        return checkpoint_dir(TRAIN_CONFIGS[(task, policy)]), "checkpoint/config.json"
    from rtctl.train.bc.train import checkpoint_dir

    return checkpoint_dir(TRAIN_CONFIGS[(task, policy)]), "policy.pt"


def needed(policies: tuple[str, ...], wall_clock: bool) -> list[tuple[str, str]]:
    """(task, policy) checkpoints the bench uses: every task × policy, plus the wall rows' one."""
    out = [(task, pol) for task in TASKS for pol in policies]
    return out + ([WALL] if wall_clock and WALL not in out else [])


def ensure_checkpoint(task: str, policy: str) -> str:
    if policy in LEROBOT_POLICIES:
        from rtctl.train.lerobot.act import ensure_checkpoint as ensure
    else:
        from rtctl.train.bc.train import ensure_checkpoint as ensure
    return str(ensure(TRAIN_CONFIGS[(task, policy)]))


def setup(out_dir: Path, quick: bool, policies: Optional[tuple[str, ...]] = None, wall_clock: bool = True,
          label: str = "async") -> dict[str, Any]:
    """Train the checkpoints the bench needs that are not cached yet, after saying how many and about how
    long. Returns {"checkpoints": {(task, policy): path}, "trained": [...], "train_s": ...}."""
    from rtctl.config import ConfigError

    policies = tuple(policies or POLICIES)
    lerobot = [p for p in policies if p in LEROBOT_POLICIES]
    if lerobot and importlib.util.find_spec("lerobot") is None:
        raise ConfigError(f"--policies {', '.join(lerobot)} need the LeRobot extra (pip install 'rtctl[lerobot]')")
    jobs = needed(policies, wall_clock)
    todo = [(t, p) for t, p in jobs if not Path(*_cache_dir(t, p)).exists()]
    t0 = time.monotonic()
    if todo:
        # two at a time (each trains on one thread): the 2 cores, at about half the sequential time
        mins = sorted((TRAIN_MIN[p] for _, p in todo), reverse=True)
        est = max(mins[0], sum(mins) / 2)
        print(f"bench {label}: training {len(todo)} polic{'y' if len(todo) == 1 else 'ies'} once (~{est:.0f} min: "
              f"{', '.join(f'{p}/{t}' for t, p in todo)}), cached in artifacts/ — later runs skip this", flush=True)
        with mp.get_context("spawn").Pool(processes=min(2, len(todo))) as pool:
            pool.starmap(ensure_checkpoint, todo)
    ckpts = {job: ensure_checkpoint(*job) for job in jobs}
    return {"checkpoints": ckpts, "trained": [f"{p}/{t}" for t, p in todo], "train_s": time.monotonic() - t0}


def load_policy(policy: str, ckpt: str):
    if policy in LEROBOT_POLICIES:
        from rtctl.policies.lerobot_adapter import LeRobotPolicy

        return LeRobotPolicy.load(ckpt)
    from rtctl.policies.bc import BCPolicy

    return BCPolicy.load(ckpt)


# -- virtual clock ------------------------------------------------------------------------------------------
def virtual_cell(task: str, mode: str, policy: str, ckpt: str, delay: int, q: int, episodes: int,
                 seed: int = SEED, shield: bool = False) -> dict[str, Any]:
    import torch

    from rtctl.chunking.delay import DelayEstimator
    from rtctl.runtime.inference import InlineClient
    from rtctl.chunking.scheduler import ChunkScheduler
    from rtctl.runtime.loop import ControlLoop
    from rtctl.drivers.sim_arm import SimArmDriver

    torch.set_num_threads(1)
    driver = SimArmDriver(task=task, rate_hz=RATE, seed=seed)
    driver.connect()
    client = InlineClient(load_policy(policy, ckpt), delay_ticks=delay)
    est = DelayEstimator(window=20, percentile=95, warmup=2, rate_hz=RATE)
    low, high = driver.spec.action_low, driver.spec.action_high
    from rtctl.runtime.runner import DisturbanceConfig, disturbance_bound
    from rtctl.runtime.shield import ShieldStepConfig

    # the run's default disturbance rule (bound at the shield's speed limit, or the fastest table row without it)
    bound = disturbance_bound(DisturbanceConfig(), ShieldStepConfig().max_joint_speed if shield else None, len(low))

    def make() -> ChunkScheduler:
        return ChunkScheduler(mode, H, K, low, high, q=q, delay=est, max_in_flight=REPLAN_IN_FLIGHT,
                              disturbance_bound=bound)

    arm_shield = None
    if shield:
        from rtctl.runtime.shield import ArmShieldStep, ShieldStepConfig

        arm_shield = ArmShieldStep(ShieldStepConfig(), RATE)
    loop = ControlLoop(driver, make, client, RATE, episodes=episodes, record_rows=False, shield=arm_shield)
    t0 = time.perf_counter()
    k = 0
    while loop.tick(k):
        k += 1
    eps = loop.episodes
    smooth = loop.smoothness()
    return {
        "task": task, "mode": mode, "policy": policy, "delay_steps": delay, "q": q, "shield": shield,
        "shield_counts": arm_shield.counts() if arm_shield is not None else None,
        "success": [e.success for e in eps], "task_time": [e.task_time_s for e in eps],
        "hits": [getattr(e, "hits", 0) for e in eps], "targets": [getattr(e, "targets", 0) for e in eps],
        "episode_ticks": [e.ticks for e in eps],
        "reactions": [r for e in eps for r in e.reactions_s],
        "reactions_motion": [r for e in eps for r in e.reactions_motion_s],
        "seam_jumps": loop.seam_jumps, "inside_steps": loop.inside_steps, "smoothness": smooth,
        "delay_measured": est.value, "counts": loop.counts(), "ticks": k, "cpu_s": time.perf_counter() - t0,
    }


def _cell_job(args: tuple) -> dict[str, Any]:
    return virtual_cell(*args)


def hits_per_min(hits: list[int], targets: list[int], ticks: list[int], rate: float = RATE) -> Optional[float]:
    """Targets hit per minute of episode time; None where no episode had targets (reach)."""
    minutes = sum(ticks) / rate / 60.0
    return float(sum(hits) / minutes) if sum(targets) and minutes > 0 else None


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
    smooth = cell.get("smoothness") or {}
    if "seam_jump_p95" not in smooth:  # older ControlLoop: the same ratio from its seam/inside lists
        smooth = {**smooth, "seam_jump_p95": float(np.percentile(jumps, 95) / med) if jumps.size and med > 0 else None}
    return {
        "task": cell["task"], "mode": cell["mode"], "policy": cell["policy"], "clock": clock,
        "latency": f"virtual Δ={cell['delay_steps']}", "delay_source": "measured",
        "shield": cell.get("shield", False),
        "shield_interventions": (cell.get("shield_counts") or {}).get("interventions"),
        "shield_fallbacks": (cell.get("shield_counts") or {}).get("fallbacks"),
        "delay_steps": cell["delay_steps"], "delay_steps_measured": cell["delay_measured"],
        "exec_steps": K, "q": cell["q"], "episodes": n,
        "success_rate": float(np.mean(succ)) if n else float("nan"), "success_ci95": [lo, hi],
        "task_time_s": tt, "task_time_ci95": [tt_lo, tt_hi],
        "hits_per_min": hits_per_min(cell.get("hits", []), cell.get("targets", []), cell.get("episode_ticks", [])),
        "reaction_latency_s_p50": float(np.median(react)) if whack and react.size else None,
        "reaction_latency_s_p95": float(np.percentile(react, 95)) if whack and react.size else None,
        "reaction_motion_s_p50": float(np.median(motion)) if whack and motion.size else None,
        **{key: smooth.get(key) for key in SMOOTHNESS},
        "tick_period_err_p99_ms": cell.get("tick_period_err_p99_ms"),
        "deadline_misses": cell.get("deadline_misses"),
        "hold_ticks": cell["counts"].get("hold_ticks"), "starved_ticks": cell["counts"].get("starved_ticks"),
        "rejected_chunks": cell["counts"].get("rejected_chunks"),
        # false triggers of the disturbance rule (nothing pushes in this grid), per simulated minute
        "disturbances_per_min": cell["counts"].get("disturbances", 0) / (cell["ticks"] / RATE / 60.0) if cell["ticks"] else None,
    }


def run(out_dir: Path, quick: bool, shield: bool = False, policies: Optional[tuple[str, ...]] = None,
        episodes: Optional[int] = None, delays: Optional[tuple[int, ...]] = None, wall_clock: bool = True,
        label: str = "async", jitter: bool = True) -> list[dict]:
    """The grid with the shield off (the comparison of scheduling modes alone); `rtctl bench async_shield`
    runs the same grid with every command through the CBF shield. ``policies``/``episodes``/``delays``
    narrow the grid (defaults: the bc pair; 12 or 200 episodes; Δ ∈ {0, 4} or `DELAYS`);
    ``wall_clock=False`` skips the wall-clock runs, ``jitter=False`` only their jittered-latency ones."""
    from rtctl.bench import async_table, async_wall

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policies = tuple(policies or POLICIES)
    ckpts = setup(out_dir, quick, policies, wall_clock, label)["checkpoints"]  # cached after the CLI's set-up
    episodes = episodes or (12 if quick else 200)
    delays = tuple(delays or ((0, 4) if quick else DELAYS))
    jobs = [(task, mode, pol, ckpts[(task, pol)], d, q, episodes, SEED, shield) for task in TASKS for mode in MODES
            for pol in policies for d in delays for q in QS]
    cells = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes=2) as pool:
        for cell in tqdm(pool.imap_unordered(_cell_job, jobs), total=len(jobs), desc=f"bench {label} (virtual)"):
            cells.append(cell)
    order = {j[:3] + (j[4], j[5]): i for i, j in enumerate(jobs)}
    cells.sort(key=lambda c: order[(c["task"], c["mode"], c["policy"], c["delay_steps"], c["q"])])
    (out_dir / "virtual_cells.json").write_text(json.dumps(cells))
    rows = [row_from(c, "virtual") for c in cells]

    wall_rows = async_wall.wall_rows(ckpts[WALL], quick, out_dir, shield, label, jitter) if wall_clock else []
    rows += wall_rows
    write_rows(out_dir / "results.json", rows)
    floor = reaction_floor(delays)
    lat = [r["inference_available_ms_p50"] for r in wall_rows
           if r.get("latency") == "constant" and r.get("inference_available_ms_p50") is not None]
    if lat:  # submit → the poll that used the result, on the wall clock (already whole ticks)
        floor["wall_4"] = float(np.median(lat)) / 1000.0
    (out_dir / "floor.json").write_text(json.dumps(floor, indent=2) + "\n")
    figures = headline(rows, cells, floor, policies)
    (out_dir / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out_dir / "table.md").write_text(async_table.markdown_table(rows, figures))
    return rows


def _find(rows, **kw) -> Optional[dict]:
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)


def headline(rows: list[dict], cells: list[dict], floor: dict, policies: tuple[str, ...] = POLICIES) -> dict:
    """The issue's figures, computed from the rows (Δ = 4 unless said otherwise). Reaction ratios are to the
    floor Δ/rate (`reaction_floor`); the wall row's to floor["wall_4"], its measured submit → use time."""
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
            if task == "whack" and rp and rp["reaction_latency_s_p50"] is not None and floor.get("4"):
                out[key]["replan_reaction_p50_over_floor"] = rp["reaction_latency_s_p50"] / floor["4"]
                out[key]["replan_reaction_p50_s"] = rp["reaction_latency_s_p50"]
                if sync["reaction_latency_s_p50"]:
                    out[key]["replan_reaction_over_sync"] = (rp["reaction_latency_s_p50"]
                                                             / sync["reaction_latency_s_p50"])
    wall_rp = _find(rows, clock="wall", mode="replan_rollforward", latency="constant")
    if wall_rp and wall_rp.get("reaction_latency_s_p50") is not None and floor.get("wall_4"):
        out["wall/replan_reaction_p50_over_floor"] = wall_rp["reaction_latency_s_p50"] / floor["wall_4"]
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
