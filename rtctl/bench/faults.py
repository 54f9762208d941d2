"""`rtctl bench faults --out DIR`: every fault drill as one row — what was injected, and what the robot and
the evidence did. The reliability table in docs/runtime.md is this bench's output.

Each drill runs the real command (`rtctl run`, `rtctl deploy`, `rtctl trial`, `rtctl estop`) as a process
(`rtctl.bench.procs.Watched`), injects one fault, and reads the run folder it left. Columns:

* ``exit``: the command's exit code (−N: killed by signal N); ``line``: its last stderr line.
* ``log_lost_s``: time between the last log row on disk and the moment the process could last have logged
  (SIGKILL: the kill; otherwise the run's own `stopped` event), both on the host's monotonic clock (rows
  carry ``t_end_ms`` from the `loop_started` event's ``t0_ns``; a car's rows ``t`` from the trial's start).
* ``summary``: final / partial (the writer's partial summary, every 5 s) / none.
* ``jump_ratio``: the largest per-tick step of the applied command (after the shield, as sent to the
  driver) from the fault to the end of the log (an actor kill: to 1 s after the policy answered again),
  over the p99 step of the same config run without a fault in this bench (``baseline`` rows). Goal ≤ 1.
* ``hold_s``: an actor kill: the longest `starved` hold after it (tick timestamps); ``recovered_s``: the
  failure → first answer again (`policy_actor_recovered`). ``stop_s``: signal / e-stop / fault → the
  loop's last tick. ``brake_s`` (cars): e-stop → the car's speed below 0.05 m/s in the world's log.
* ``folder``: a run folder was created (bad-input drills: must be no); ``leftovers``: processes the
  command started that were still alive 10 s after it ended (Ray's head processes and workers, the
  emulator, cars).

Goals (issue 13): 0 rows losing more than 0.5 s of log, 0 jump ratios above 1, 0 leftovers; with a warm
standby, hold ≤ 0.5 s after a kill -9 of the active actor. No goal is asserted here: the rows say.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from rtctl.bench.procs import Watched
from rtctl.bench.fault_figures import event, loop_running, loop_t0, run_figures, steps, summary_state, table
from rtctl.report.runfolder import read_events, read_log_checked, write_rows

ROOT = Path(__file__).resolve().parents[2]
RTCTL = [sys.executable, "-m", "rtctl.cli"]
RUN_CFG = {  # the arm in MuJoCo, the scripted expert in a Ray actor with VLA-like inference time
    "seed": 0, "duration_s": 60, "tick": {"rate_hz": 30}, "plots": False,
    "driver": {"type": "sim_arm", "task": "whack"},
    "policy": {"type": "expert", "v_max": 1.0, "horizon": 50, "extra_latency_ms": 100},
    "actor": {"enabled": True, "num_cpus": 1},
    "scheduler": {"mode": "async_rollforward", "exec_steps": 25},
}
LOOP_WAIT_S = 90  # Ray + the actor start (a busy 2-core box: up to ~30 s)
GRACE_S = 10.0
SELF_FAULT_AT_S = 25  # emulator faults, from the emulator's start: after the deploy's loop started


@dataclass
class Drill:
    name: str
    injected: str
    fn: Callable[["Bench", "Drill"], dict]
    kw: dict


class Bench:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
        self.p99: dict[str, float] = {}  # baseline p99 step per config kind

    def config(self, name: str, data: dict) -> Path:
        p = self.out / "configs" / f"{name}.yaml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        return p

    def start(self, args: list[str], **kw: Any) -> Watched:
        return Watched(RTCTL + args, cwd=ROOT, env=self.env, **kw)

    def folder(self, name: str) -> Path:
        d = self.out / "runs" / name
        shutil.rmtree(d, ignore_errors=True)
        d.parent.mkdir(parents=True, exist_ok=True)
        return d


def finish(w: Watched, timeout_s: float = 60) -> dict:
    code = w.finish(timeout_s)
    left = w.leftovers(GRACE_S)
    w.kill_leftovers()
    lines = [x for x in w.stderr.strip().splitlines() if x.strip()]
    return {"exit": code, "line": lines[-1][:160] if lines else "", "leftovers": len(left),
            "leftover_names": left[:4]}


# -- drills --------------------------------------------------------------------------------------------
def baseline(bench: Bench, d: Drill) -> dict:
    """The config without a fault: its p99 per-tick step is the jump reference for the other rows."""
    run = bench.folder(d.name)
    w = bench.start([d.kw["cmd"], str(d.kw["config"](bench)), "--out", str(run), "--duration",
                     str(d.kw.get("duration", 8))])
    res = finish(w, 180)
    st = steps(read_log_checked(run)[0])
    bench.p99[d.kw["kind"]] = float(np.percentile(st, 99)) if st.size else float("nan")
    return {**res, "summary": summary_state(run), "p99_step_rad": round(bench.p99[d.kw["kind"]], 4)}


def signal_run(bench: Bench, d: Drill) -> dict:
    """A signal to the running command, ``after_s`` into its loop."""
    run = bench.folder(d.name)
    w = bench.start([d.kw["cmd"], str(d.kw["config"](bench)), "--out", str(run), "--duration", "60"],
                    preexec_fn=d.kw.get("preexec"))
    if not w.wait_until(loop_running(run), LOOP_WAIT_S):
        return {**finish(w), "error": "the loop never started"}
    if d.kw.get("signal") is None:  # the emulator's own fault ends the run (a bus fault)
        res = finish(w, 120)
        goals = run / "emulator_goals.jsonl"  # the emulator's bus log: its fault, stamped on the host's clock
        lines = goals.read_text().splitlines() if goals.is_file() else []
        fault = next((json.loads(x) for x in lines if '"fault"' in x), None)
        return {**res, **run_figures(bench.p99, run, None if fault is None else int(fault["t_ns"]), d.kw["kind"])}
    w.wait_until(lambda: False, d.kw.get("after_s", 3.0))
    t = w.send(d.kw["signal"])
    res = finish(w)
    fig = run_figures(bench.p99, run, t, d.kw["kind"])
    if d.kw["signal"] == signal.SIGKILL:
        fig.pop("stop_s", None)  # no stop to time: the process is gone at once
    return {**res, **fig}


def disk_full(bench: Bench, d: Drill) -> dict:
    """The log file may not grow past 64 KB (RLIMIT_FSIZE: the write that passes it fails with EFBIG, as
    on a full disk); no Ray actor (its processes would inherit the limit)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    cfg = {**RUN_CFG, "actor": {"enabled": False}}
    run = bench.folder(d.name)
    w = bench.start(["run", str(bench.config("run_inline", cfg)), "--out", str(run), "--duration", "60"],
                    preexec_fn=limit)
    res = finish(w, 120)
    return {**res, **run_figures(bench.p99, run, None, "run")}


def actor_kill(bench: Bench, d: Drill) -> dict:
    """kill -9 of the serving policy actor's worker, ``after_s`` into the loop; the run goes on."""
    cfg = json.loads(json.dumps(RUN_CFG))
    cfg["actor"]["standby"] = d.kw.get("standby", 0)
    cfg["actor"]["num_cpus"] = 0.5  # two actors on the 2-CPU local cluster leave room for the restart
    run = bench.folder(d.name)
    w = bench.start(["run", str(bench.config(d.name, cfg)), "--out", str(run), "--duration", "60"])
    if not w.wait_until(loop_running(run), LOOP_WAIT_S):
        return {**finish(w), "error": "the loop never started"}
    pid = int(event(read_events(run), "policy_actor_started")["pid"])
    w.wait_until(lambda: False, 3.0)
    w.sample()
    t_kill = time.monotonic_ns()
    os.kill(pid, signal.SIGKILL)
    recovered = lambda: event(read_events(run), "policy_actor_recovered") is not None  # noqa: E731
    w.wait_until(recovered, 60)
    w.wait_until(lambda: False, 2.0)
    t_end = w.send(signal.SIGTERM)
    res = finish(w)
    events = read_events(run)
    rec = event(events, "policy_actor_recovered")
    t0 = loop_t0(run)
    rel_kill = (t_kill - t0) / 1e9
    holds = [e["s"] for e in events if e.get("event") == "starved" and e["tick"] / 30.0 >= rel_kill - 1.0]
    until = t_kill + int(((rec or {}).get("since_failure_s", 0) + 1.0) * 1e9) if rec else t_end
    fig = run_figures(bench.p99, run, t_kill, "run", until_ns=until)
    fig.pop("stop_s", None)  # the run did not stop at this fault
    s = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return {**res, **fig, "hold_s": max(holds) if holds else 0.0,
            "recovered_s": rec["since_failure_s"] if rec else None,
            "restarts": s.get("restarts"), "failures": (s.get("actor") or {}).get("failures")}


def bad_input(bench: Bench, d: Drill) -> dict:
    """A config, checkpoint, port or folder that cannot work: refused before anything starts."""
    run = bench.out / "runs" / d.name
    shutil.rmtree(run, ignore_errors=True)
    cfg_path = d.kw["make"](bench, run)
    w = bench.start([d.kw.get("cmd", "run"), str(cfg_path), "--out", str(run), "--duration", "5"])
    t0 = time.monotonic_ns()
    res = finish(w, 120)
    made = run.exists() and any(p.name != "marker" for p in run.iterdir())
    lines = [x for x in w.stderr.strip().splitlines() if x.strip()]
    return {**res, "seconds_to_fail": round((w.t_exit_ns - t0) / 1e9, 2), "stderr_lines": len(lines),
            "folder": "left untouched" if d.kw.get("used") else ("created" if made else "no"),
            "processes_started": len(w.seen)}


def estop_nobody(bench: Bench, d: Drill) -> dict:
    addr = f"ipc://{bench.out}/nobody-estop"
    w = bench.start(["estop", addr])
    t0 = time.monotonic_ns()
    res = finish(w, 30)
    return {**res, "seconds_to_fail": round((w.t_exit_ns - t0) / 1e9, 2)}


def deploy_estop(bench: Bench, d: Drill) -> dict:
    """`rtctl estop RUN` on a running deploy; a second deploy at the same address is refused meanwhile."""
    run = bench.folder(d.name)
    w = bench.start(["deploy", str(deploy_config(bench)), "--out", str(run), "--duration", "60"])
    if not w.wait_until(loop_running(run), LOOP_WAIT_S):
        return {**finish(w), "error": "the loop never started"}
    w.wait_until(lambda: False, 3.0)
    t = time.monotonic_ns()
    e = subprocess.run(RTCTL + ["estop", str(run)], cwd=ROOT, env=bench.env, capture_output=True, text=True,
                       timeout=30)
    res = finish(w)
    return {**res, **run_figures(bench.p99, run, t, "deploy"), "estop_exit": e.returncode,
            "estop_line": e.stdout.strip()[:120]}


def trial_drill(bench: Bench, d: Drill) -> dict:
    """A trial in sim: a car killed (SIGKILL) or terminated (SIGTERM), or the launcher terminated."""
    run = bench.folder(d.name)
    cfg = yaml.safe_load((ROOT / "configs" / "trial_sim.yaml").read_text())
    cfg.update(plots=False, duration_s=8.0, log_hz=50)
    cfg["faults"] = {**(cfg.get("faults") or {}), **d.kw.get("faults", {})}
    w = bench.start(["trial", str(bench.config(d.name, cfg)), "--out", str(run)])
    t_sig = None
    if d.kw.get("signal"):
        w.wait_until(lambda: event(read_events(run), "start") is not None, LOOP_WAIT_S)
        w.wait_until(lambda: False, 3.0)
        t_sig = w.send(d.kw["signal"])
    res = finish(w, 120)
    out = {**res, "summary": summary_state(run)}
    events = read_events(run)
    car = d.kw.get("car")
    if car:
        crows, torn = read_log_checked(run / "cars" / car) if (run / "cars" / car / "log.jsonl").is_file() else ([], False)
        killed = event(events, "killed")
        out.update(car_summary=summary_state(run / "cars" / car), car_log_rows=len(crows), torn_last_line=torn)
        csum = run / "cars" / car / "summary.json"  # a car that stopped itself: its last tick, on the rows' clock
        last_tick = json.loads(csum.read_text()).get("last_tick_s") if csum.is_file() else None
        end = killed["t"] if killed is not None else last_tick
        if end is not None and crows:
            out["log_lost_s"] = round(max(0.0, end - crows[-1]["t"]), 3)
    if car and (term := json.loads((run / "summary.json").read_text()).get("terminated", {}).get(car)) is not None:
        brake = event(read_events(run / "cars" / car), "brake")
        out["stop_s"] = None if brake is None else round(brake["t"] - term, 3)  # SIGTERM → the car's brake command
    estop = event(events, "estop")
    world = read_log_checked(run / "world")[0] if (run / "world" / "log.jsonl").is_file() else []
    if estop is not None and world:  # e-stop → every rtctl car below 0.05 m/s (other traffic is not ours)
        names = json.loads((run / "world" / "summary.json").read_text())["names"]
        ours = [names.index(c["id"]) for c in cfg["cars"]]
        stopped = next((r["t"] for r in world if r["t"] >= estop["t"] and max(r["v"][i] for i in ours) < 0.05), None)
        out["brake_s"] = None if stopped is None else round(stopped - estop["t"], 3)
    if t_sig is not None:
        out["stop_s"] = round((w.t_exit_ns - t_sig) / 1e9, 3)
    return out


def deploy_config(bench: Bench, **changes: Any) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "so101_emulated.yaml").read_text())
    cfg["plots"] = False
    cfg["estop"] = {"key": False, "address": "auto"}
    for key, val in changes.items():
        sec, _, field = key.partition(".")
        cfg.setdefault(sec, {})[field] = val
    tag = "_".join(f"{k}-{v}" for k, v in changes.items())
    return bench.config("deploy" + ("_" + "".join(c if c.isalnum() or c in "-._" else "_" for c in tag) if tag else ""), cfg)


def _run_cfg(bench: Bench, **changes: Any) -> Path:
    cfg = json.loads(json.dumps(RUN_CFG))
    for key, val in changes.items():
        sec, _, field = key.partition(".")
        cfg[sec][field] = val
    return bench.config("run" + ("_" + "_".join(f"{k}-{v}" for k, v in changes.items()) if changes else ""), cfg)


def _write(bench: Bench, run: Path, name: str, text: str) -> Path:
    p = bench.out / "configs" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def _bad_checkpoint(kind: str) -> Callable[[Bench, Path], Path]:
    def make(bench: Bench, run: Path) -> Path:
        from rtctl.policies.base import meta_path
        from rtctl.train.bc.train import ensure_checkpoint

        good = Path(ensure_checkpoint(ROOT / "configs" / "bc_reach.yaml"))
        ck = bench.out / "configs" / f"{kind}.pt"
        ck.parent.mkdir(parents=True, exist_ok=True)
        rate = 30
        if kind == "truncated":
            ck.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
            shutil.copy(meta_path(good), meta_path(ck))
        elif kind == "wrong_rate":
            shutil.copy(good, ck)
            shutil.copy(meta_path(good), meta_path(ck))
            rate = 50
        cfg = {**RUN_CFG, "tick": {"rate_hz": rate},
               "policy": {"type": "bc", "checkpoint": str(ck), "horizon": 50}}
        return bench.config(f"checkpoint_{kind}", cfg)
    return make


def _used_folder(bench: Bench, run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "marker").write_text("an earlier run\n")
    return _run_cfg(bench)


DRILLS = [
    Drill("baseline_run", "none (8 s run: the jump reference)", baseline,
          {"cmd": "run", "config": lambda b: _run_cfg(b), "kind": "run"}),
    Drill("run_sigterm", "SIGTERM to rtctl run (Ray actor)", signal_run,
          {"cmd": "run", "config": lambda b: _run_cfg(b), "kind": "run", "signal": signal.SIGTERM}),
    Drill("run_ctrl_c", "SIGINT (Ctrl-C) to rtctl run (Ray actor)", signal_run,
          {"cmd": "run", "config": lambda b: _run_cfg(b), "kind": "run", "signal": signal.SIGINT}),
    Drill("run_sigkill", "SIGKILL to rtctl run (Ray actor)", signal_run,
          {"cmd": "run", "config": lambda b: _run_cfg(b), "kind": "run", "signal": signal.SIGKILL}),
    Drill("run_inline_sigterm", "SIGTERM to rtctl run (policy in-process)", signal_run,
          {"cmd": "run", "config": lambda b: _run_cfg(b, **{"actor.enabled": False}), "kind": "run",
           "signal": signal.SIGTERM}),
    Drill("run_disk_full", "log file limited to 64 KB (EFBIG, as a full disk)", disk_full, {}),
    Drill("actor_kill9", "kill -9 of the policy actor's worker", actor_kill, {"standby": 0}),
    Drill("actor_kill9_standby", "kill -9 of the active actor, warm standby (actor.standby: 1)", actor_kill,
          {"standby": 1}),
    Drill("checkpoint_missing", "policy.checkpoint names no file", bad_input, {"make": _bad_checkpoint("missing")}),
    Drill("checkpoint_truncated", "checkpoint cut to half its size", bad_input,
          {"make": _bad_checkpoint("truncated")}),
    Drill("checkpoint_wrong_rate", "30 Hz checkpoint in a 50 Hz run", bad_input,
          {"make": _bad_checkpoint("wrong_rate")}),
    Drill("config_empty", "empty YAML", bad_input, {"make": lambda b, r: _write(b, r, "empty.yaml", "")}),
    Drill("config_list", "YAML whose top level is a list", bad_input,
          {"make": lambda b, r: _write(b, r, "list.yaml", "- duration_s: 3\n")}),
    Drill("out_folder_used", "--out names a folder with an earlier run", bad_input,
          {"make": _used_folder, "used": True}),
    Drill("serial_port_missing", "deploy on a serial port that does not exist", bad_input,
          {"cmd": "deploy", "make": lambda b, r: _port_missing(b)}),
    Drill("baseline_deploy", "none (8 s deploy on the emulated SO-101: the jump reference)", baseline,
          {"cmd": "deploy", "config": lambda b: deploy_config(b), "kind": "deploy"}),
    Drill("deploy_sigterm", "SIGTERM to rtctl deploy", signal_run,
          {"cmd": "deploy", "config": lambda b: deploy_config(b), "kind": "deploy", "signal": signal.SIGTERM}),
    Drill("deploy_estop", "rtctl estop RUN on a running deploy", deploy_estop, {}),
    Drill("estop_nobody", "rtctl estop to an address nobody listens on", estop_nobody, {}),
    Drill("deploy_bus_closed", "the servo bus disappears (emulator fault close)", signal_run,
          {"cmd": "deploy", "config": lambda b: deploy_config(b, **{"emulator.faults": [f"close@{SELF_FAULT_AT_S}"]}),
           "kind": "deploy", "signal": None}),
    Drill("deploy_servo_silent", "servo 3 stops answering (emulator fault silent:3)", signal_run,
          {"cmd": "deploy", "config": lambda b: deploy_config(b, **{"emulator.faults": [f"silent:3@{SELF_FAULT_AT_S}"]}),
           "kind": "deploy", "signal": None}),
    Drill("trial_car_sigkill", "SIGKILL of one car's process (trial in sim)", trial_drill,
          {"faults": {"kill": {"car0": 2.0}}, "car": "car0"}),
    Drill("trial_car_sigterm", "SIGTERM to one car's process (trial in sim)", trial_drill,
          {"faults": {"term": {"car0": 2.0}}, "car": "car0"}),
    Drill("trial_car_disk_full", "one car's run folder cannot be written (trial in sim)", trial_drill,
          {"faults": {"disk_full": {"car1": 2.0}}, "car": "car1"}),
    Drill("trial_sigterm", "SIGTERM to rtctl trial (e-stop: every car brakes)", trial_drill,
          {"signal": signal.SIGTERM}),
]


def _port_missing(bench: Bench) -> Path:
    cfg = yaml.safe_load(deploy_config(bench).read_text())
    cfg["emulator"]["enabled"] = False
    cfg["driver"]["robot"]["port"] = "/dev/ttyACM-not-there"
    return bench.config("deploy_port_missing", cfg)


def setup(out: Path, quick: bool) -> dict:
    from rtctl.train.bc.train import ensure_checkpoint

    ensure_checkpoint(ROOT / "configs" / "bc_reach.yaml")  # the checkpoint drills' good checkpoint
    return {}


def run(out: Path, quick: bool = False) -> list[dict]:
    bench = Bench(Path(out))
    rows = []
    for d in DRILLS:
        t0 = time.monotonic()
        try:
            row = d.fn(bench, d)
        except Exception as err:  # one drill's failure is a row, not the end of the bench
            row = {"error": f"{type(err).__name__}: {err}"[:200]}
        row = {"drill": d.name, "injected": d.injected, **row, "drill_s": round(time.monotonic() - t0, 1)}
        print(json.dumps({k: row.get(k) for k in ("drill", "exit", "log_lost_s", "summary", "jump_ratio",
                                                  "hold_s", "stop_s", "leftovers", "drill_s")}), flush=True)
        rows.append(row)
        write_rows(bench.out / "results.json", rows)
        (bench.out / "table.md").write_text(table(rows))
    return rows
