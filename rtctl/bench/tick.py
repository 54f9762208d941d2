"""`rtctl bench tick`: p99 period error of the real-time tick, alone and beside a busy inference actor.

Each repeat runs in a fresh process (`rtctl.bench.tick_worker`): the sim arm's driver read/write (MuJoCo
physics advanced one period per tick), a command from a committed chunk, and a per-tick log row into a run
folder — the runtime's data path without a policy. Under ``load=inference`` the same process also keeps a
~100 ms torch model busy in a Ray actor (submit, then poll with ``ray.wait(timeout=0)`` every tick), the
async-deployment pattern. Measures are ablated (none / each alone / all) at 100 Hz under load, so each
one is kept only because it measurably helps.
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from rtctl.bench.common import run_child, spread
from rtctl.report.runfolder import write_rows

MEASURES = {
    "none": {"pin_cpu": "off", "gc_pause": False, "switch_interval_us": None},
    "pin": {"pin_cpu": "auto", "gc_pause": False, "switch_interval_us": None},
    "gc_pause": {"pin_cpu": "off", "gc_pause": True, "switch_interval_us": None},
    "switch_interval": {"pin_cpu": "off", "gc_pause": False, "switch_interval_us": 500.0},
    "all": {"pin_cpu": "auto", "gc_pause": True, "switch_interval_us": 500.0},
}


def cells(quick: bool) -> list[tuple[int, str, str, float, int]]:
    """(rate Hz, load, measures, seconds, repeats) per cell. Full: 60 s main cells and 10 s ablation cells,
    3 repeats each. --quick (≤ 3 min here: a repeat under load pays ~10 s for its own Ray start): 4 s cells,
    2 repeats of the main cells and 1 of each ablation, whose baseline is then the main 100 Hz cell."""
    main_s, ablation_s = (4.0, 4.0) if quick else (60.0, 10.0)
    main_reps, ablation_reps = (2, 1) if quick else (3, 3)
    out = [(rate, load, "all", main_s, main_reps) for rate in (100, 500) for load in ("none", "inference")]
    out += [(100, "inference", m, ablation_s, ablation_reps) for m in MEASURES if m != "all"]
    if not quick:
        out += [(100, "inference", "all", ablation_s, ablation_reps)]  # the ablation's own baseline, same duration
    return out


def run(out_dir: Path, quick: bool) -> list[dict]:
    rows = []
    for rate, load, measures, dur, repeats in tqdm(cells(quick), desc="bench tick", unit="cell"):
        reps = [run_child("rtctl.bench.tick_worker",
                          {"rate_hz": rate, "load": load, "duration_s": dur, **MEASURES[measures]},
                          timeout_s=dur * 3 + 120) for _ in range(repeats)]
        p99 = spread([r["period_err_p99_ms"] for r in reps])
        rows.append({
            "rate_hz": rate, "load": load, "measures": measures, "duration_s": dur, "repeats": repeats,
            "p50_ms": spread([r["period_err_p50_ms"] for r in reps])["median"],
            "p99_ms": p99["median"], "p99_ms_min": p99["min"], "p99_ms_max": p99["max"],
            "max_ms": max(r["period_err_max_ms"] for r in reps),
            "deadline_misses": int(sum(r["deadline_misses"] for r in reps)),
            "deadline_misses_per_repeat": [r["deadline_misses"] for r in reps],
            "work_p99_ms": spread([r["work_p99_ms"] for r in reps])["median"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in reps),
            "actor_peak_rss_mb": max((r.get("actor_peak_rss_mb") or 0.0) for r in reps) or None,
            "actor_latency_ms_p50": spread([r.get("actor_latency_ms_p50") for r in reps])["median"],
        })
    for r in rows:
        none = next((x for x in rows if x["measures"] == "none" and x["rate_hz"] == r["rate_hz"]
                     and x["load"] == r["load"]), None)
        r["p99_ratio_to_none"] = (r["p99_ms"] / none["p99_ms"]) if none and none["p99_ms"] > 0 else None
    write_rows(out_dir / "results.json", rows)
    return rows
