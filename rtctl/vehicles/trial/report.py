"""The trial report: one summary.json and plots from the world's and every car's run folder.

summary.json: collisions (every onset, with the pair and speeds), completion (time per car, rate),
interventions (rate per car and mean), message ages (p50/p99/max per receiving car and peer, and the widest
age margin the shield used), the per-car summaries (ticks, deadline misses, fallbacks, V2V drops, faults,
peak resident memory), the e-stop and the faults injected. plots/: trajectories (s over t, y over s),
speed with shield interventions, message ages.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rtctl.report.runfolder import read_events, read_log


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def build_report(run: Path, cfg, info: dict) -> dict:
    world = _json(run / "world" / "summary.json")
    cars = {c.id: _json(run / "cars" / c.id / "summary.json") for c in cfg.cars}
    rss_sampled = info.get("peak_rss_mb_sampled", {})
    per_car = {}
    for cid, s in cars.items():
        if s is None:
            per_car[cid] = {"summary": "missing (process killed or never started)",
                            "peak_rss_mb": rss_sampled.get(cid)}
            continue
        per_car[cid] = {k: s[k] for k in ("ticks", "interventions", "intervention_rate", "fallbacks", "estop_ticks",
                                          "collided_ticks", "fault", "estop_at_s", "distance_m", "target_speed")}
        per_car[cid]["deadline_misses"] = (s.get("tick") or {}).get("deadline_misses")
        per_car[cid]["v2v_drops"] = s["v2v"]["drops"]
        per_car[cid]["peak_rss_mb"] = max(s["peak_rss_mb"], rss_sampled.get(cid) or 0.0)
    live = [s for s in cars.values() if s is not None]
    summary = {
        "mode": cfg.mode, "cars": [c.id for c in cfg.cars], "duration_s": cfg.duration_s,
        "rates_hz": cfg.rates.model_dump(), "policy": cfg.policy.type,
        "collisions": len(world["collisions"]) if world else None,
        "collision_events": world["collisions"] if world else None,
        "completion": _completion(world, cfg) if world else None,
        "intervention_rate_mean": float(np.mean([s["intervention_rate"] for s in live])) if live else None,
        "message_age_s": {s["id"]: s["message_age_s"] for s in live},
        "age_margin_max_m": {s["id"]: s["age_margin_max_m"] for s in live},
        "peak_rss_mb": {cid: pc.get("peak_rss_mb") for cid, pc in per_car.items()},
        "peak_rss_mb_world": rss_sampled.get("world"),
        "per_car": per_car, "estop": info.get("estop"), "killed": info.get("killed"),
        "aborted": info.get("aborted", False), "exit_codes": info.get("exit_codes"),
        "world": {k: world[k] for k in ("t_sim", "command_timeouts", "rejected_requests", "tick")} if world else None,
    }
    try:
        summary["plots"] = [str(p.relative_to(run)) for p in plot_trial(run, cfg, world)] if cfg.plots else []
    except Exception as err:  # a plot must never cost the report
        summary["plots_error"] = f"{type(err).__name__}: {err}"
    return summary


def _completion(world: dict, cfg) -> dict:
    done = world["completed_at_s"]
    return {"at_s": done, "goal_m": world["goal_m"],
            "rate": sum(t is not None for t in done.values()) / max(len(done), 1)}


def plot_trial(run: Path, cfg, world: dict | None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    if world is not None and (run / "world" / "log.jsonl").is_file():
        rows = read_log(run / "world")
        if rows:
            t = np.array([r["t"] for r in rows])
            s = np.array([r["s"] for r in rows])
            y = np.array([r["y"] for r in rows])
            fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 7))
            for j, name in enumerate(world["names"]):
                kind = world["kind"][j]
                style = dict(lw=1.8) if kind == 0 else dict(lw=0.8, color="0.5", ls="--" if kind == 1 else ":")
                a1.plot(t, s[:, j], label=name if kind == 0 else None, **style)
                a2.plot(s[:, j], y[:, j], label=name if kind == 0 else None, **style)
            for c in world["collisions"]:
                a1.axvline(c["t"], color="red", lw=0.8)
            a1.set(xlabel="t (s)", ylabel="s (m)", title="progress (agents solid, humans dashed, obstacles dotted)")
            a2.set(xlabel="s (m)", ylabel="y (m)", title="paths on the road")
            a1.legend(fontsize=7)
            fig.tight_layout()
            out.append(plots / "trajectories.png")
            fig.savefig(out[-1], dpi=90)
            plt.close(fig)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 7))
    for c in cfg.cars:
        folder = run / "cars" / c.id
        if not (folder / "log.jsonl").is_file():
            continue
        rows = read_log(folder)
        if not rows:
            continue
        t = np.array([r["t"] for r in rows])
        a1.plot(t, [r["v"] for r in rows], label=c.id)
        hit = np.array([bool(r["intervened"]) for r in rows])
        a1.scatter(t[hit], np.array([r["v"] for r in rows])[hit], s=4, color="red")
        ages = [a for r in rows for a in r["ages"].values()]
        if ages:
            a2.hist(np.clip(ages, 0, 2.0), bins=40, histtype="step", label=c.id)
        for e in read_events(folder):
            if e["event"] == "estop":
                a1.axvline(e["t"], color="k", ls="--", lw=0.8)
    a1.set(xlabel="t (s)", ylabel="v (m/s)", title="speed; red dots: shield intervened; dashed: e-stop")
    a2.set(xlabel="message age at the receiver (s, clipped at 2)", ylabel="count", title="V2V message ages")
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.tight_layout()
    out.append(plots / "speed_interventions_ages.png")
    fig.savefig(out[-1], dpi=90)
    plt.close(fig)
    return out
