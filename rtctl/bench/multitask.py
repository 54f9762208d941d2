"""`rtctl bench multitask [--quick] --out DIR`: RobustAnalog-style multi-task RL against its ablations and
baselines on the op-amp PVT benchmark and on SO-101 reach over arm variations.

Op-amp rows (``benchmark="opamp_pvt45"``): ``method, seed, sims_to_pass_all, censored, passed, wall_s`` for
full, no_pruning, no_pcgrad, ddpg_nominal, random_search, cmaes, bo. Every corner simulation counts
(training, full-corner checks, re-pruning); one early-stop rule for all (``EARLY_STOP``); a seed that does
not pass within the cap is scored at the cap and marked censored. One extra, informational row set
re-runs random search under the other early-stop rule, because that rule changes its cost the most.
Backend rows (``benchmark="opamp_backend_consistency"``): Kendall tau per spec between the analytic and
the ngspice backend over random designs x 45 corners (skipped, with the reason, without ngspice).
Arm rows (``benchmark="arm_reach65"``): ``method, seed, env_steps, mean_return, worst_return,
worst10_return`` for full, uniform_dr, epopt, nominal_only after the same env-step budget, evaluated on all
65 training variations (and the 8 held-out ones). ``seed="median"`` rows aggregate (median, min-max
spread, ratios to ``full`` measured in the same run).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rtctl.report.runfolder import peak_rss_mb, write_rows

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EARLY_STOP = "never"
OTHER_RULE = "first_fail"

OPAMP_METHODS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_pruning": {"tasks.schedule": "all"},
    "no_pcgrad": {"combiner.kind": "sum"},
    "ddpg_nominal": {"tasks.schedule": "nominal"},
}
SEARCH_METHODS = ("random_search", "cmaes", "bo")
ARM_DR = {"tasks.schedule": "uniform", "tasks.critic_input": "none", "replay.sampling": "pooled",
          "combiner.kind": "sum", "agent.batch_per_task": 256}
ARM_METHODS: dict[str, dict[str, Any]] = {
    "full": {},
    "uniform_dr": {**ARM_DR, "tasks.per_iteration": 4},
    "epopt": {**ARM_DR, "tasks.per_iteration": 8, "tasks.cvar_epsilon": 0.25},
    "nominal_only": {**ARM_DR, "tasks.schedule": "nominal", "multistep.episodes_per_task": 4},
}


def settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"seeds": [0], "cap": 20_000, "tau_designs": 20, "arm_seeds": [0], "arm_budget": 5_000,
                "arm_eval_every": 2_500, "arm_learning_starts": 1_000}
    return {"seeds": [0, 1, 2, 3, 4], "cap": 20_000, "tau_designs": 200, "arm_seeds": [0, 1, 2, 3, 4],
            "arm_budget": 40_000, "arm_eval_every": 4_000, "arm_learning_starts": 2_000}


# -- jobs: each runs in its own process and leaves its row in <out>/rows/<name>.json --------------------
def _trained(config: str, overrides: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train into ``out``, or reuse the complete run already there if it was made with the same config."""
    from rtctl.config import dump_config, load_config
    from rtctl.train.multitask.config import MultitaskConfig
    from rtctl.train.multitask.train import train

    cfg = load_config(CONFIGS / config, MultitaskConfig, {**overrides, "log.progress": False,
                                                          "log.tensorboard": False})
    if (out / "summary.json").exists():
        if (out / "config.yaml").read_text() != dump_config(cfg):
            raise RuntimeError(f"{out} holds a finished run made with another config; use a fresh --out")
    else:
        shutil.rmtree(out, ignore_errors=True)  # a run cut off midway starts again
        train(cfg, out)
    return json.loads((out / "summary.json").read_text())


def _opamp_trainer_job(method: str, seed: int, cap: int, early_stop: str, out: str) -> dict[str, Any]:
    overrides = {**OPAMP_METHODS[method], "seed": seed, "bandit.budget_sims": cap, "bandit.early_stop": early_stop}
    s = _trained("multitask_opamp.yaml", overrides, Path(out))
    return _opamp_row(method, seed, s["passed"], s["sims"], s["best_corners_passed"], cap, early_stop,
                      s["wall_s"], s["peak_rss_mb"])


def _opamp_search_job(method: str, seed: int, cap: int, early_stop: str) -> dict[str, Any]:
    from rtctl.sim.analog.env import OpAmpProblem
    from rtctl.train.multitask.train import baselines as mt_baselines

    fn = {"random_search": mt_baselines.random_search, "cmaes": mt_baselines.cmaes, "bo": mt_baselines.bayes_opt}
    t0 = time.monotonic()
    r = fn[method](OpAmpProblem(), cap, seed, early_stop)
    return _opamp_row(method, seed, r.passed, r.sims, r.best_corners_passed, cap, early_stop,
                      time.monotonic() - t0, peak_rss_mb())


def _opamp_row(method: str, seed: int, passed: bool, sims: int, best: float, cap: int, rule: str,
               wall: float, rss: float) -> dict[str, Any]:
    ok = bool(passed) and sims <= cap
    return {"benchmark": "opamp_pvt45", "method": method, "seed": seed, "sims_to_pass_all": sims if ok else cap,
            "censored": not ok, "passed": ok, "wall_s": round(wall, 2), "best_corners_passed": int(best),
            "cap": cap, "early_stop": rule, "peak_rss_mb": round(rss, 1)}


def _arm_job(method: str, seed: int, st: dict[str, Any], out: str) -> dict[str, Any]:
    overrides = {**ARM_METHODS[method], "seed": seed, "multistep.budget_env_steps": st["arm_budget"],
                 "multistep.eval_every_steps": st["arm_eval_every"],
                 "multistep.learning_starts": st["arm_learning_starts"], "rollout.backend": "local"}
    s = _trained("multitask_arm.yaml", overrides, Path(out))
    curve = _curve([json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()])
    return {"benchmark": "arm_reach65", "method": method, "seed": seed, "env_steps": s["env_steps"],
            "mean_return": s["full_set"]["mean"], "worst_return": s["full_set"]["worst"],
            "worst10_return": s["full_set"]["worst10"], "held_out_mean": s["held_out"]["mean"],
            "held_out_worst": s["held_out"]["worst"], "held_out_worst10": s["held_out"]["worst10"],
            "prunes": s["prunes"], "wall_s": round(s["wall_s"], 2), "peak_rss_mb": round(s["peak_rss_mb"], 1),
            "curve": curve}


JOBS = {"opamp_trainer": _opamp_trainer_job, "opamp_search": _opamp_search_job, "arm": _arm_job}


def _run_job(spec: dict[str, Any], rows_dir: Path) -> dict[str, Any]:
    """Run one job in a fresh process (its own peak RSS; a crash costs one row, not the benchmark)."""
    path = rows_dir / f"{spec['name']}.json"
    if not path.exists():
        proc = subprocess.run([sys.executable, "-m", "rtctl.bench.multitask", json.dumps(spec), str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"benchmark": spec["benchmark"], "method": spec["args"][0], "seed": spec["args"][1],
                    "error": f"job {spec['name']} failed (exit {proc.returncode}): " + " | ".join(tail)}
    return json.loads(path.read_text())


def _curve(rows: list[dict]) -> list[list[float]]:
    """(env steps, worst-10 %) at every measurement evaluation, from the training log."""
    seen, out = set(), []
    for r in rows:
        k = r.get("eval_env_steps")
        if k is not None and k not in seen:
            seen.add(k)
            out.append([float(k), float(r["eval_worst10"])])
    return out


# -- aggregation ------------------------------------------------------------------------------------------
def _median_row(bench: str, method: str, rows: list[dict], key: str, extra: dict[str, Any]) -> dict[str, Any]:
    v = np.array([r[key] for r in rows], dtype=float)
    return {"benchmark": bench, "method": method, "seed": "median", key: float(np.median(v)),
            "spread": [float(v.min()), float(v.max())], "n_seeds": len(v), **extra}


def opamp_summary(rows: list[dict]) -> list[dict]:
    out = []
    by = {}
    for r in rows:
        if r["benchmark"] == "opamp_pvt45":
            by.setdefault((r["method"], r["early_stop"]), []).append(r)
    full = np.median([r["sims_to_pass_all"] for r in by.get(("full", EARLY_STOP), [])] or [np.nan])
    for (method, rule), rs in by.items():
        med = float(np.median([r["sims_to_pass_all"] for r in rs]))
        out.append(_median_row("opamp_pvt45", method, rs, "sims_to_pass_all", {
            "early_stop": rule, "censored_seeds": sum(r["censored"] for r in rs),
            "ratio_to_full": med / full if full > 0 else None,
            "ratio_is_lower_bound": any(r["censored"] for r in rs) and method != "full"}))
    return out


def steps_to_reach(curve: list[list[float]], level: float) -> float | None:
    for steps, w10 in curve:
        if w10 >= level:
            return steps
    return None


def arm_summary(rows: list[dict]) -> list[dict]:
    arm = [r for r in rows if r["benchmark"] == "arm_reach65"]
    udr = {r["seed"]: r for r in arm if r["method"] == "uniform_dr"}
    out = []
    for r in arm:
        if r["method"] == "full" and r["seed"] in udr:
            target = udr[r["seed"]]["worst10_return"]
            reach = steps_to_reach(r["curve"], target)
            r["steps_to_uniform_dr_final_worst10"] = reach
            r["fraction_of_uniform_dr_steps"] = None if reach is None else reach / udr[r["seed"]]["env_steps"]
    for method in ARM_METHODS:
        rs = [r for r in arm if r["method"] == method]
        if not rs:
            continue
        extra = {k: float(np.median([r[k] for r in rs])) for k in ("mean_return", "worst_return", "env_steps",
                                                                     "held_out_worst10")}
        if method == "full" and udr:
            fr = [r.get("fraction_of_uniform_dr_steps") for r in rs]
            extra["fraction_of_uniform_dr_steps"] = float(np.median([np.inf if f is None else f for f in fr]))
            extra["seeds_reaching_uniform_dr_worst10"] = sum(f is not None for f in fr)
        out.append(_median_row("arm_reach65", method, rs, "worst10_return", extra))
    return out


def consistency_rows(n_designs: int) -> list[dict]:
    from scipy.stats import kendalltau

    from rtctl.sim.analog import ngspice
    from rtctl.sim.analog.env import OpAmpProblem

    if ngspice.ngspice_path() is None:
        return [{"benchmark": "opamp_backend_consistency", "skipped": "ngspice not on PATH "
                 "(apt-get install -y ngspice)"}]
    pa, ps = OpAmpProblem("analytic"), OpAmpProblem("ngspice")
    rng = np.random.default_rng(2024)
    a = np.repeat(rng.uniform(-1, 1, (n_designs, 8)), pa.n_tasks, axis=0)
    t = np.tile(np.arange(pa.n_tasks), n_designs)
    t0 = time.monotonic()
    ma = pa.simulate(a, t)
    t1 = time.monotonic()
    ms = ps.simulate(a, t)
    t2 = time.monotonic()
    rows = []
    for s in pa.spec_names:
        ok = np.isfinite(ms[s])
        rows.append({"benchmark": "opamp_backend_consistency", "spec": s, "kendall_tau": float(kendalltau(
            ma[s][ok], ms[s][ok])[0]), "rows": int(ok.sum()), "designs": n_designs, "corners": pa.n_tasks})
    agree = float(np.mean(pa.bench.passes(ma) == ps.bench.passes(ms)))
    rows.append({"benchmark": "opamp_backend_consistency", "spec": "pass/fail agreement", "agreement": agree,
                 "analytic_us_per_sim": 1e6 * (t1 - t0) / len(t), "ngspice_us_per_sim": 1e6 * (t2 - t1) / len(t),
                 "ngspice_slowdown": (t2 - t1) / max(t1 - t0, 1e-9)})
    return rows


def job_specs(out_dir: Path, st: dict[str, Any]) -> list[dict[str, Any]]:
    specs = []
    for seed in st["seeds"]:
        for m in OPAMP_METHODS:
            specs.append({"name": f"opamp_{m}_s{seed}", "benchmark": "opamp_pvt45", "kind": "opamp_trainer",
                          "args": [m, seed, st["cap"], EARLY_STOP, str(out_dir / "runs" / f"opamp_{m}_s{seed}")]})
        for m in SEARCH_METHODS:
            specs.append({"name": f"opamp_{m}_s{seed}", "benchmark": "opamp_pvt45", "kind": "opamp_search",
                          "args": [m, seed, st["cap"], EARLY_STOP]})
        specs.append({"name": f"opamp_random_search_{OTHER_RULE}_s{seed}", "benchmark": "opamp_pvt45",
                      "kind": "opamp_search", "args": ["random_search", seed, st["cap"], OTHER_RULE]})
    # the goal's pair (full vs uniform_dr) first, seed by seed, so a run cut short still answers it
    for pair in (("full", "uniform_dr"), ("epopt", "nominal_only")):
        for seed in st["arm_seeds"]:
            for m in pair:
                specs.append({"name": f"arm_{m}_s{seed}", "benchmark": "arm_reach65", "kind": "arm",
                              "args": [m, seed, st, str(out_dir / "runs" / f"arm_{m}_s{seed}")]})
    return specs


def run(out_dir: Path, quick: bool, jobs: int = 2) -> list[dict]:
    """All rows; rerunning into the same ``out_dir`` resumes (finished jobs are not repeated)."""
    out_dir = Path(out_dir)
    rows_dir = out_dir / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    st = settings(quick)
    specs = job_specs(out_dir, st)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(tqdm(pool.map(lambda sp: _run_job(sp, rows_dir), specs), total=len(specs),
                  desc="bench multitask", unit="job"))
    return finalize(out_dir, quick)


def finalize(out_dir: Path, quick: bool) -> list[dict]:
    """results.json from the rows finished so far (all of them after `run`; a subset if a run was cut
    short: the summaries then say how many seeds they cover), the backend consistency rows and the plot."""
    out_dir = Path(out_dir)
    st = settings(quick)
    rows = [json.loads(p.read_text()) for p in sorted((out_dir / "rows").glob("*.json"))]
    cons = out_dir / "consistency.json"
    if not cons.exists():
        cons.write_text(json.dumps(consistency_rows(st["tau_designs"])))
    rows += json.loads(cons.read_text())
    ok = [r for r in rows if "error" not in r]
    rows += opamp_summary(ok) + arm_summary(ok)
    for r in rows:
        r["quick"] = quick
    write_rows(out_dir / "results.json", rows)
    _plot_arm(out_dir, ok)
    return rows


def _plot_arm(out_dir: Path, rows: list[dict]) -> None:
    arm = [r for r in rows if r.get("benchmark") == "arm_reach65" and r.get("seed") != "median"]
    if not arm:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, method in enumerate(ARM_METHODS):
        for r in (r for r in arm if r["method"] == method):
            c = np.array(r["curve"])
            ax.plot(c[:, 0], c[:, 1], color=f"C{i}", alpha=0.6, label=method if r["seed"] == arm[0]["seed"] else None)
    ax.set_xlabel("env steps (training + re-pruning)")
    ax.set_ylabel("worst-10 % return over 65 arm variations")
    ax.grid(alpha=0.3)
    ax.legend()
    (out_dir / "plots").mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / "plots" / "arm_worst10.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # one job: python -m rtctl.bench.multitask SPEC_JSON ROW_PATH
    _spec = json.loads(sys.argv[1])
    _row = JOBS[_spec["kind"]](*_spec["args"])
    Path(sys.argv[2]).write_text(json.dumps(_row))
