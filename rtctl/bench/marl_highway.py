"""`rtctl bench marl_highway [--quick] --out DIR`: the highway-medium comparison docs/vehicles.md quotes.

Each of full, non_robust, no_v2v and no_shield is trained from configs/marl_highway_long.yaml (a warm start
on 128 scripted episodes, then 30 MAPPO iterations of 16 episodes; no_shield sees fewer steps because its
episodes end at a collision), then evaluated greedily on 50 seeded episodes under the fixed 0.2 s and the
time-varying V2V delay and under a PGD observation attack, plus `full` without delay, a random
allowed-behaviour policy for the delay-robustness ratio, and the scripted driver itself. Longer than
`rtctl bench marl`'s per-family budget, on one scenario only.
``--quick``: 3 training iterations, 10 episodes per row. Trainings are reused when ``DIR/runs/<method>`` holds one.
"""
from __future__ import annotations

import json
import pathlib
import time

from rtctl.config import load_config
from rtctl.report.runfolder import peak_rss_mb, write_rows

from rtctl.vehicles.envs import FIXED_2, NO_DELAY, TIME_VARYING
from rtctl.vehicles.evaluate import evaluate
from rtctl.train.marl.train import train
from rtctl.train.marl.config import METHOD_SWITCHES, MarlConfig, for_method
from rtctl.bench.marl import CONFIGS, EVAL_SEED, _delay_robustness, table

SCENARIO = "highway-medium"
METHODS = ("full", "non_robust", "no_v2v", "no_shield")
TRAIN_MIN = {True: 1.0, False: 3.5}  # ~minutes to train one method here (--quick / full), for set-up's notice


def _base(quick: bool) -> MarlConfig:
    return load_config(CONFIGS / "marl_highway_long.yaml", MarlConfig, {"iterations": 3} if quick else None)


def setup(out_dir: pathlib.Path, quick: bool) -> dict:
    """Train the methods not in OUT/runs yet, after saying how many and about how long (the one-time step;
    a later run into the same OUT reuses them)."""
    out = pathlib.Path(out_dir)
    todo = [m for m in METHODS if not (out / "runs" / m / "policy.pt").is_file()]
    if todo:
        print(f"bench marl_highway: training {len(todo)} policies once (~{len(todo) * TRAIN_MIN[quick]:.0f} min), "
              f"kept in {out / 'runs'} — later runs into this --out skip this", flush=True)
    base = _base(quick)
    for method in todo:
        train(for_method(base, method), out / "runs" / method)
    return {"trained": todo}


def run(out_dir: pathlib.Path, quick: bool) -> list[dict]:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup(out, quick)  # nothing to do after `rtctl bench`'s own set-up step
    t0 = time.monotonic()
    base = _base(quick)
    episodes = 10 if quick else 50
    eps = base.robust.epsilon
    rows: list[dict] = []
    for method in METHODS:
        run_dir = out / "runs" / method
        steps = json.loads((run_dir / "summary.json").read_text())["env_steps"]
        shield, v2v, _ = METHOD_SWITCHES[method]
        conds = [("fixed_0.2s", FIXED_2, 0.0), ("tv_120ms", TIME_VARYING, 0.0), (f"tv_120ms+pgd_eps{eps}", TIME_VARYING, eps)]
        if method == "full":
            conds.append(("none", NO_DELAY, 0.0))
        for name, delay, attack in conds:
            res = evaluate(run_dir / "policy.pt", SCENARIO, 3, episodes, EVAL_SEED, shield, v2v, delay, attack_eps=attack)
            rows.append({"scenario": SCENARIO, "method": method, "delay": name, **res, "train_env_steps": steps})
    res = evaluate(None, SCENARIO, 3, episodes, EVAL_SEED, True, True, TIME_VARYING)
    rows.append({"scenario": SCENARIO, "method": "random", "delay": "tv_120ms", **res, "train_env_steps": 0})
    res = evaluate("scripted", SCENARIO, 3, episodes, EVAL_SEED, True, True, TIME_VARYING)
    rows.append({"scenario": SCENARIO, "method": "scripted", "delay": "tv_120ms", **res, "train_env_steps": 0})
    summary = {"delay_robustness": _delay_robustness(rows), "quick": quick, "episodes_per_row": episodes,
               "wall_s": time.monotonic() - t0, "peak_rss_mb": peak_rss_mb()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_rows(out / "results.json", rows)
    (out / "table.md").write_text(table(rows))
    return rows
