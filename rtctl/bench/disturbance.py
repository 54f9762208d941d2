"""`rtctl bench disturbance`: how fast rtctl's policy reacts when the arm is pushed, and how often the
disturbance rule fires when nothing pushes.

Push drill (wall clock: real 30 Hz tick, BC in a Ray actor with 4 ticks of injected latency, reach task,
`async_rollforward`, shield on and off): shoulder_pan pushed +35° (0.61 rad) from where it is at t = 3 s and
held 1.5 s by the sim driver (`rtctl.drivers.sim_arm.Push`). Figures, from the run folder's timestamps (a
command's time is the end of the tick that wrote it to the driver):

* (a) push → first command written that comes from a chunk conditioned on the pushed state, in ticks and
  ms; goal ≤ Δ̂ + 2 ticks.
* (b) push → first written (applied, after the shield) command that moved toward the pushed position by
  more than the shield's tracking bound of that joint (None: never during the run).
* detection: push → the disturbance rule's start.

False triggers (virtual clock, same seeded episodes as `bench async`, shield on, Δ = 4): disturbance events
per simulated minute in unpushed reach and whack runs, both rollforward modes; goal ≤ 0.1 per minute.

Emulated SO-101 (`rtctl deploy configs/so101_emulated_act.yaml`: LeRobot ACT in a Ray actor, the Feetech
emulator process): the emulator's own fault `push:1:35:1.5@10` (servo 1 = shoulder_pan), timed by the
emulator's bus log (`emulator_goals.jsonl`: the push and every goal, stamped on receipt); (a) and (b) are
push → the goal packet the emulator received for that tick. An unpushed deploy gives the false triggers per
minute on the emulator (its first-order servos lag more than MuJoCo's, whose table the bound comes from).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from rtctl.bench.common import spread
from rtctl.report.runfolder import write_rows

RATE, H, K, DELAY = 30.0, 50, 25, 4
PUSH = {"joint": "shoulder_pan", "offset_rad": 0.61, "start_s": 3.0, "duration_s": 1.5}


def push_run(ckpt: str, out_dir: Path, shield: bool, seed: int, duration_s: float = 7.0) -> dict[str, Any]:
    import yaml

    from rtctl.runtime.runner import run

    cfg = {
        "seed": seed, "duration_s": duration_s, "tick": {"rate_hz": RATE},
        "driver": {"type": "sim_arm", "task": "reach", "push": [PUSH]},
        "policy": {"type": "bc", "checkpoint": ckpt, "horizon": H,
                   "extra_latency_ms": DELAY * 1000.0 / RATE - 6.0},
        "actor": {"enabled": True, "num_cpus": 1},
        "scheduler": {"mode": "async_rollforward", "exec_steps": K},
        "shield": {"enabled": shield}, "plots": False,
    }
    run_dir = out_dir / f"push-shield_{'on' if shield else 'off'}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg_path = run_dir.with_suffix(".yaml")
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run(cfg_path, run_dir, progress=False)
    return push_figures(run_dir, shield)


def push_figures(run_dir: Path, shield: bool) -> dict[str, Any]:
    """(a), (b) and detection from one pushed run's log.jsonl / events.jsonl / summary.json."""
    from rtctl.safety.arm_config import so101_tracking
    from rtctl.sim.arm_env import JOINT_NAMES

    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    push = next(e for e in events if e["event"] == "push_start")
    p = int(push["tick"])
    j = JOINT_NAMES.index(push["joint"])
    sign = np.sign(push["offset_rad"])
    bound = so101_tracking(1.0)[0][j]
    at_push = rows[p]["applied"][j]
    det = next((e["tick"] for e in events if e["event"] == "disturbance" and e["state"] == "start" and e["tick"] >= p), None)
    react = next((d for d in summary["disturbances"]["detect_to_reaction_ticks"]), None)
    a_tick = det + react if det is not None and react is not None else None
    b_tick = next((r["tick"] for r in rows[p:] if sign * (r["applied"][j] - at_push) > bound), None)
    end = p + int(round(PUSH["duration_s"] * RATE))

    def ms(t: Optional[int]) -> Optional[float]:
        return None if t is None else rows[t]["t_end_ms"] - rows[p]["t_end_ms"]

    return {"run_dir": str(run_dir), "shield": shield, "push_tick": p, "delay_est": rows[p]["delay_est"],
            "detect_ticks": None if det is None else det - p, "detect_ms": ms(det),
            "a_ticks": None if a_tick is None else a_tick - p, "a_ms": ms(a_tick),
            "b_ticks": None if b_tick is None else b_tick - p, "b_ms": ms(b_tick),
            "b_during_push": b_tick is not None and b_tick < end,
            "shield_fallback_ticks_during_push": sum(1 for r in rows[p:end] if (r.get("shield") or {}).get("status") == "fallback"),
            "disturbance_events": summary["disturbances"]["events"]}


def emulated_run(out_dir: Path, push: bool, duration_s: float, seed: int = 0) -> dict[str, Any]:
    """One `rtctl deploy` of the ACT config on the emulator, optionally pushed; figures from its folder."""
    import yaml

    from rtctl.runtime import deploy

    cfg = yaml.safe_load(Path("configs/so101_emulated_act.yaml").read_text())
    cfg.update(seed=seed, duration_s=duration_s, plots=False)
    cfg["emulator"]["faults"] = ["push:1:35:1.5@10"] if push else []
    cfg["estop"] = {"key": False, "address": None}
    run_dir = out_dir / f"emulated-{'push' if push else 'nopush'}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg_path = run_dir.with_suffix(".yaml")
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    from rtctl.train.checkpoints import resolve_checkpoint

    deploy.main(cfg_path, run_dir, resolve_policy=resolve_checkpoint)
    summary = json.loads((run_dir / "summary.json").read_text())
    out = {"run_dir": str(run_dir), "pushed": push, "minutes": summary["ticks"] / RATE / 60.0,
           "disturbance_events": summary["disturbances"]["events"],
           "per_min": summary["disturbances"]["per_min"], "bus_emulator": summary.get("bus_emulator")}
    if push:
        out.update(emulated_push_figures(run_dir))
    return out


def emulated_push_figures(run_dir: Path) -> dict[str, Any]:
    from rtctl.safety.arm_config import so101_tracking

    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    bus = [json.loads(line) for line in (run_dir / "emulator_goals.jsonl").read_text().splitlines() if line.strip()]
    t0 = next(e["t0_ns"] for e in events if e["event"] == "loop_started")
    push_ns = next(b["t_ns"] for b in bus if b.get("fault") == "push")
    goals = np.asarray([b["t_ns"] for b in bus if "fault" not in b], dtype=np.int64)

    def start_ns(r: dict) -> int:
        return int(t0 + r["t_start_ms"] * 1e6)

    def at_bus_ms(tick: Optional[int]) -> Optional[float]:
        """push → the emulator's receipt of the first goal sent for ``tick``."""
        if tick is None:
            return None
        i = int(np.searchsorted(goals, start_ns(rows[tick])))
        return None if i >= goals.size else (goals[i] - push_ns) / 1e6

    p = next(r["tick"] for r in rows if start_ns(r) >= push_ns)  # first tick after the push began
    det = next((e["tick"] for e in events if e["event"] == "disturbance" and e["state"] == "start" and e["tick"] >= p - 1), None)
    summary = json.loads((run_dir / "summary.json").read_text())
    react = next(iter(summary["disturbances"]["detect_to_reaction_ticks"]), None)
    a_tick = det + react if det is not None and react is not None else None
    bound = so101_tracking(1.0)[0][0]
    ref = rows[p - 1]["applied"][0]
    b_tick = next((r["tick"] for r in rows[p:] if r["applied"][0] - ref > bound), None)
    return {"push_tick": p, "delay_est": rows[p]["delay_est"],
            "detect_ticks": None if det is None else det - p + 1, "a_ticks": None if a_tick is None else a_tick - p + 1,
            "a_ms_at_bus": at_bus_ms(a_tick), "b_ticks": None if b_tick is None else b_tick - p + 1,
            "b_ms_at_bus": at_bus_ms(b_tick),
            "b_during_push": b_tick is not None and b_tick < p + int(round(1.5 * RATE))}


def false_trigger_cell(task: str, mode: str, ckpt: str, episodes: int) -> dict[str, Any]:
    from rtctl.bench.async_chunks import SEED, load_policy
    from rtctl.chunking.delay import DelayEstimator
    from rtctl.runtime.inference import InlineClient
    from rtctl.chunking.scheduler import ChunkScheduler
    from rtctl.runtime.loop import ControlLoop
    from rtctl.drivers.sim_arm import SimArmDriver
    from rtctl.runtime.runner import DisturbanceConfig, disturbance_bound
    from rtctl.runtime.shield import ArmShieldStep, ShieldStepConfig

    driver = SimArmDriver(task=task, rate_hz=RATE, seed=SEED)
    driver.connect()
    client = InlineClient(load_policy("bc_offset", ckpt), delay_ticks=DELAY)
    est = DelayEstimator(window=20, percentile=95, warmup=2, rate_hz=RATE)
    bound = disturbance_bound(DisturbanceConfig(), ShieldStepConfig().max_joint_speed, 6)
    low, high = driver.spec.action_low, driver.spec.action_high

    def make() -> ChunkScheduler:
        return ChunkScheduler(mode, H, K, low, high, delay=est, max_in_flight=4, disturbance_bound=bound)

    loop = ControlLoop(driver, make, client, RATE, episodes=episodes, record_rows=False,
                       shield=ArmShieldStep(ShieldStepConfig(), RATE))
    k = 0
    while loop.tick(k):
        k += 1
    minutes = k / RATE / 60.0
    n = loop.counts().get("disturbances", 0)
    return {"task": task, "mode": mode, "episodes": episodes, "sim_minutes": minutes, "disturbances": n,
            "per_min": n / minutes, "success_rate": float(np.mean([e.success for e in loop.episodes]))}


ACT_CONFIG = "configs/lerobot_act_reach_offset.yaml"  # the policy of configs/so101_emulated_act.yaml


def setup(out_dir: Path, quick: bool) -> dict:
    """The one-time training (BC reach/whack offset; the LeRobot ACT when lerobot is installed), cached."""
    import importlib.util

    from rtctl.bench.async_chunks import ensure_checkpoint

    print("bench disturbance: making sure 2 BC checkpoints (~1 min each) and, with lerobot, 1 ACT (~2–7 min) "
          "exist, cached in artifacts/ — later runs skip this", flush=True)
    for task in ("reach", "whack"):
        ensure_checkpoint(task, "bc_offset")
    if importlib.util.find_spec("lerobot") is not None:
        from rtctl.train.lerobot.act import ensure_checkpoint as ensure_act

        ensure_act(ACT_CONFIG)
    return {}


def run(out_dir: Path, quick: bool) -> list[dict]:
    from rtctl.bench.async_chunks import ensure_checkpoint

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpts = {task: ensure_checkpoint(task, "bc_offset") for task in ("reach", "whack")}  # cached by setup()
    t1 = time.monotonic()
    episodes = 10 if quick else 60
    rows: list[dict] = [{"kind": "false_triggers", **false_trigger_cell(task, mode, ckpts[task], episodes)}
                        for task in ("reach", "whack") for mode in ("async_rollforward", "replan_rollforward")]
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    pushes = []
    try:
        for shield in (True, False):
            for seed in range(1 if quick else 3):
                pushes.append({"kind": "push", **push_run(ckpts["reach"], out_dir, shield, 1000 + seed)})
    finally:
        ray.shutdown()
    rows += pushes
    import importlib.util

    if importlib.util.find_spec("lerobot") is not None:  # the emulated SO-101 needs the lerobot extra
        for seed in range(1 if quick else 3):
            rows.append({"kind": "emulated_push", **emulated_run(out_dir, True, 14.0, seed)})
        rows.append({"kind": "emulated_nopush", **emulated_run(out_dir, False, 20.0 if quick else 60.0)})
    else:
        print("bench disturbance: lerobot not installed, skipping the emulated SO-101 rows")
    for shield in (True, False):
        mine = [r for r in pushes if r["shield"] == shield]
        rows.append({"kind": "push_summary", "shield": shield, "repeats": len(mine),
                     **{f"{key}": spread([r[key] for r in mine]) for key in ("detect_ticks", "a_ticks", "a_ms", "b_ticks", "b_ms")},
                     "b_never_during_push": sum(not r["b_during_push"] for r in mine)})
    rows.append({"kind": "timing", "bench_s": time.monotonic() - t1})
    write_rows(out_dir / "results.json", rows)
    return rows
