"""table.md of `rtctl bench async`: one line per row (virtual: all of q = 1, Δ ∈ {0, 4, 8} of q = 2; every
wall row), then the figures.

Smoothness columns give the scheduler's command → what the shield let through (the same number twice
with the shield off): seam p95 (joint step at a chunk switch / median step inside chunks), per-tick joint
step p95 (rad) and jerk p95 (rad/s³).
"""
from __future__ import annotations

import json

import numpy as np

COLUMNS = ("task", "policy", "clock", "latency", "mode", "Δ source", "q", "success (95% CI)", "task time s",
           "hits/min", "seam p95 cmd→applied", "step p95 rad cmd→applied", "jerk p95 rad/s³ cmd→applied",
           "reaction p50/p95 s", "Δ̂ min/p50/max", "tick p99 ms", "misses")


def _f(v, nd=2) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def _pair(r: dict, key: str, nd: int) -> str:
    after = r.get(key) if key == "seam_jump_p95" else r.get(key + "_applied")  # seam_jump_p95: after the shield
    return f"{_f(r.get(key + '_cmd'), nd)}→{_f(after, nd)}"


def line(r: dict) -> str:
    ci = r["success_ci95"]
    est = r.get("delay_est_min_p50_max")
    cells = [
        r["task"], r["policy"], r["clock"], r.get("latency", "–"), r["mode"], r.get("delay_source", "measured"),
        str(r["q"]), f"{_f(r['success_rate'])} ({_f(ci[0])}–{_f(ci[1])})", _f(r["task_time_s"]),
        _f(r.get("hits_per_min"), 1), _pair(r, "seam_jump_p95", 1), _pair(r, "step_p95", 3),
        _pair(r, "jerk_p95", 0), f"{_f(r['reaction_latency_s_p50'])}/{_f(r['reaction_latency_s_p95'])}",
        "/".join(str(v) for v in est) if est else str(r.get("delay_steps_measured", "–")),
        _f(r.get("tick_period_err_p99_ms"), 3),
        "–" if r.get("deadline_misses") is None else str(r["deadline_misses"]),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_table(rows: list[dict], figures: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if r["clock"] == "virtual" and r["delay_steps"] not in (0, 4, 8) and r["q"] != 1:
            continue
        lines.append(line(r))
    lines += ["", "```json", json.dumps(figures, indent=1), "```"]
    return "\n".join(lines) + "\n"
