"""`rtctl bench marl`: shielded robust MAPPO against its ablations on the car scenarios.

For each trained scenario family (highway, oval, intersection) every method (full, no_shield, no_v2v,
non_robust, domain_randomised) is trained from the same config with the same budget and seed
(`rtctl.train.marl.config.for_method`), then evaluated greedily on the same seeded episodes under a fixed
V2V delay (2 steps = 0.2 s) and the time-varying delay (truncated Gaussian 120 ± 40 ms in [50, 200] ms).
The highway policy is evaluated at all three obstacle densities. Extra rows: `full` with no delay, a
random allowed-behaviour policy (for the delay-robustness ratio (R − R_random)/(R_no_delay − R_random)),
the scripted driver every method's actor is warm-started from (`rtctl.vehicles.scripted`),
every method under a 10-step PGD observation attack in the training ε-ball, and the sim's throughput with
and without the shield (agent-steps per CPU-second, median of 3 repeats).

Full: 50 episodes per row; each policy is warm-started as its config says (behaviour cloning of the
scripted driver) and trains for FULL_ITERATIONS MAPPO iterations of the configs/marl_*.yaml settings
(2 Ray workers × 16 episodes) — about an hour on 2 cores for the 15 policies (the configs' own 60
iterations are for `rtctl train marl`). ``--quick``: checkpoints from a short set-up training (a warm start
on 2 × 4 scripted episodes, 3 iterations of 4 episodes, in-process), kept in ``<out>/checkpoints`` and reused when present;
10 episodes per row, medium densities only. The figures come from whatever was trained: read the
training budget (``train_env_steps``) in the rows.
"""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np

from rtctl.config import load_config
from rtctl.report.runfolder import peak_rss_mb, write_rows

from rtctl.vehicles.envs import FIXED_2, NO_DELAY, TIME_VARYING
from rtctl.vehicles.evaluate import evaluate, throughput
from rtctl.train.marl.train import train
from rtctl.train.marl.config import METHOD_SWITCHES, METHODS, MarlConfig, for_method
from rtctl.bench.common import spread

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
FAMILIES = {"highway": ("highway-low", "highway-medium", "highway-high"), "oval": ("oval-medium",),
            "intersection": ("intersection",)}
DELAYS = {"fixed_0.2s": FIXED_2, "tv_120ms": TIME_VARYING}
EVAL_SEED = 10_000
FULL_ITERATIONS = 20
TRAIN_MIN = {True: 0.1, False: 2.0}  # ~minutes to train one policy here (--quick / full), for set-up's notice


def _policies(out: pathlib.Path, quick: bool) -> dict[tuple[str, str], dict]:
    """Train (or reuse) one policy per (family, method); returns its path and training figures."""
    found = {}
    for family in FAMILIES:
        base = load_config(CONFIGS / f"marl_{family}.yaml", MarlConfig)
        base = base.model_copy(update={"iterations": FULL_ITERATIONS})
        if quick:
            base = base.model_copy(update={
                "iterations": 3, "env": base.env.model_copy(update={"envs_per_worker": 4}),
                "warm_start": base.warm_start.model_copy(update={"batches": 2, "epochs": 30}),
                "rollout": base.rollout.model_copy(update={"backend": "local", "workers": 1}),
                "log": base.log.model_copy(update={"progress": False})})
        for method in METHODS:
            run = out / "checkpoints" / f"{family}-{method}"
            if not (run / "policy.pt").is_file():
                train(for_method(base, method), run)
            s = json.loads((run / "summary.json").read_text())
            found[family, method] = {"policy": run / "policy.pt", "train_env_steps": s["env_steps"],
                                     "train_iterations": s["iterations"], "train_wall_s": s["wall_s"]}
    return found


def setup(out_dir: pathlib.Path, quick: bool) -> dict:
    """Train the policies not in OUT/checkpoints yet, after saying how many and about how long (the one-time
    step; a later run into the same OUT reuses them)."""
    out = pathlib.Path(out_dir)
    todo = [f"{family}-{method}" for family in FAMILIES for method in METHODS
            if not (out / "checkpoints" / f"{family}-{method}" / "policy.pt").is_file()]
    if todo:
        print(f"bench marl: training {len(todo)} policies once (~{len(todo) * TRAIN_MIN[quick]:.0f} min), kept in "
              f"{out / 'checkpoints'} — later runs into this --out skip this", flush=True)
        if not quick:  # one local Ray cluster for every training (each would otherwise start its own)
            import ray
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            _policies(out, quick)
        finally:
            if not quick:
                ray.shutdown()
    return {"trained": todo}


def run(out_dir: pathlib.Path, quick: bool) -> list[dict]:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup(out, quick)  # nothing to do after `rtctl bench`'s own set-up step
    t0 = time.monotonic()
    episodes = 10 if quick else 50
    pols = _policies(out, quick)
    rows: list[dict] = []

    def row(scenario, method, delay_name, pol, res, **extra):
        rows.append({"scenario": scenario, "method": method, "delay": delay_name, **res,
                     "train_env_steps": pol["train_env_steps"] if pol else 0, **extra})

    eps = MarlConfig().robust.epsilon
    for family, scenarios in FAMILIES.items():
        for scenario in scenarios[1:2] if quick and len(scenarios) > 1 else scenarios:
            for method in METHODS:
                pol = pols[family, method]
                shield, v2v, _ = METHOD_SWITCHES[method]
                for dname, delay in DELAYS.items():
                    row(scenario, method, dname, pol, evaluate(pol["policy"], scenario, 3, episodes, EVAL_SEED,
                                                               shield, v2v, delay))
                row(scenario, method, f"tv_120ms+pgd_eps{eps}", pol,
                    evaluate(pol["policy"], scenario, 3, episodes, EVAL_SEED, shield, v2v, TIME_VARYING,
                             attack_eps=eps))
            full = pols[family, "full"]
            row(scenario, "full", "none", full, evaluate(full["policy"], scenario, 3, episodes, EVAL_SEED, True,
                                                         True, NO_DELAY))
            row(scenario, "random", "tv_120ms", None, evaluate(None, scenario, 3, episodes, EVAL_SEED, True, True,
                                                               TIME_VARYING))
            row(scenario, "scripted", "tv_120ms", None, evaluate("scripted", scenario, 3, episodes, EVAL_SEED, True,
                                                                 True, TIME_VARYING))
    summary = {"delay_robustness": _delay_robustness(rows), "goals": _goals(rows)}
    for shield in (True, False):
        reps = [throughput("highway-medium", 64, 60 if quick else 200, shield, seed=k)["per_cpu_s"] for k in range(3)]
        rows.append({"scenario": "highway-medium", "method": "sim_throughput" + ("" if shield else "_no_shield"),
                     "agent_steps_per_cpu_s": spread(reps)["median"], "spread": spread(reps)})
    rows[-2]["ratio_to_no_shield"] = rows[-2]["agent_steps_per_cpu_s"] / rows[-1]["agent_steps_per_cpu_s"]
    summary.update(quick=quick, episodes_per_row=episodes, wall_s=time.monotonic() - t0, peak_rss_mb=peak_rss_mb())
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    write_rows(out / "results.json", rows)
    (out / "table.md").write_text(table(rows))
    return rows


def _delay_robustness(rows: list[dict]) -> dict[str, float]:
    """(R − R_random)/(R_no_delay − R_random) of `full` under each delay, per scenario."""
    get = {(r["scenario"], r["method"], r.get("delay")): r.get("mean_return") for r in rows}
    out = {}
    for (sc, m, d), R in get.items():
        if m == "full" and d in DELAYS:
            r0, rr = get.get((sc, "full", "none")), get.get((sc, "random", "tv_120ms"))
            if r0 is not None and rr is not None and abs(r0 - rr) > 1e-9:
                out[f"{sc}/{d}"] = (R - rr) / (r0 - rr)
    return out


def _goals(rows: list[dict]) -> dict:
    full = [r for r in rows if r["method"] == "full" and r.get("delay") in DELAYS]
    by = {(r["scenario"], r["method"], r.get("delay")): r for r in rows}
    v2v = {f"{sc}/{d}": (by[sc, "full", d]["intervention_rate"], by[sc, "no_v2v", d]["intervention_rate"])
           for sc, m, d in by if m == "full" and d in DELAYS and (sc, "no_v2v", d) in by}
    attack = [d for d in {r["delay"] for r in rows if "pgd" in str(r.get("delay"))}]
    robust = {sc: (by[sc, "full", d]["mean_return"], by[sc, "non_robust", d]["mean_return"])
              for d in attack for sc, m, dd in by if m == "full" and dd == d}
    return {"full_zero_collisions": all(r["collisions"] == 0 for r in full),
            "full_completion_ge_95": all(r["completion_rate"] >= 0.95 for r in full),
            "intervention_rate_full_vs_no_v2v": v2v,
            "return_under_attack_full_vs_non_robust": robust}


def table(rows: list[dict]) -> str:
    cols = ("scenario", "method", "delay", "episodes", "collisions", "collision_episodes", "completion_rate",
            "completion_time_s", "mean_return", "intervention_rate", "train_env_steps")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if "episodes" not in r:
            continue
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(f"{v:.3g}" if isinstance(v, float) and np.isfinite(v) else ("–" if v is None else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    for r in rows:
        if "agent_steps_per_cpu_s" in r:
            s = r["spread"]
            lines.append(f"\n{r['method']} ({r['scenario']}, 64 episodes × 3 agents): "
                         f"{r['agent_steps_per_cpu_s']:.0f} agent-steps per CPU-second "
                         f"(median of {s['n']}, {s['min']:.0f}–{s['max']:.0f})")
    return "\n".join(lines) + "\n"
