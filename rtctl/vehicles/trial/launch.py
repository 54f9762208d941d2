"""`rtctl trial CONFIG`: launch one OS process per car (and the sim world), run, e-stop on request, report.

Sim mode: a world process (rtctl.vehicles.trial.world) and every car process start; each car binds its V2V publisher
on loopback and reports the endpoint; the launcher hands every car the others' endpoints and the operator's
and a common start time, then watches: peak resident memory of every child, scheduled faults (`faults.kill`:
SIGKILL a car; `faults.term`: SIGTERM a car or the world; `faults.disk_full` is done by the child itself), the
operator e-stop. Hardware mode: the same for the cars given by `cars` (default all, e.g. a bench with
every VESC on one computer; on the cars themselves run one car per computer), peers from the config.

Operator e-stop: SIGINT, SIGTERM or SIGUSR1 to the launcher, or the key `e` + Enter on its terminal, makes
the operator's V2V node ("op") broadcast an e-stop (repeated every 0.1 s); every car latches it and brakes
in lane; the trial ends `estop_hold_s` later. A second SIGINT ends it at once. CURVE keys are made into
<run>/keys as `rtctl keys` does, unless v2v.keys_dir names existing ones.

The children ignore SIGINT (a terminal's Ctrl-C reaches the whole process group: the launcher alone acts on
it) and take SIGTERM sent to themselves as a clean stop (rtctl.vehicles.trial.proc). Each child's run folder is flushed
every 0.25 s with a partial summary.json from its first tick; a child that ends early (a driver fault, its
own SIGTERM, a log it cannot write) says why in its summary and the launcher prints one line
`trial: <name> stopped: <why>` and keeps it in events.jsonl and summary.json (`child_faults`). When the sim
world stops, the trial ends (no car can drive without it). Every child is joined (killed after 15 s);
nothing the launcher started outlives it. The launcher's own summary.json is partial (pids, e-stop, faults)
every 5 s while it watches; its `pids` and the `start` event in events.jsonl name every child's process.

Exit codes of `rtctl trial` (rtctl.cli):
  0  the trial ran to its end: full time, an operator e-stop (SIGINT, SIGTERM, SIGUSR1, key), scheduled
     faults, or a car that stopped early (its line on stderr and in summary.json); the folder is complete
  1  a trial process could not start (one line; the children started are stopped)
  2  a config error or a used run folder (one line, nothing started)
  4  a run log could not be written (the launcher's, the world's or a car's): that process stopped safely
     (a car brakes; the world's stop ends the trial), the rest of the folder is complete; one line naming
     the folder (`RunLogError` from `main`)
  130  Ctrl-C before the launcher took over its signals (during imports)
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path

from rtctl.config import dump_config, load_config
from rtctl.runtime.estop import read_key
from rtctl.report.runfolder import RunFolder, RunLogError, default_run_dir, peak_rss_mb
from rtctl.vehicles.trial import proc
from rtctl.vehicles.trial.car import car_main
from rtctl.vehicles.trial.config import TrialConfig
from rtctl.vehicles.trial.report import build_report
from rtctl.vehicles.trial.world import world_main
from rtctl.v2v.config import V2VConfig
from rtctl.v2v.keys import make_keys
from rtctl.v2v.node import V2VNode

ESTOP_HOLD_S = 2.0
OPERATOR = "op"


class Child:
    def __init__(self, ctx, name: str, target, args: tuple) -> None:
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(*args, child_conn), name=f"rtctl-trial-{name}", daemon=False)
        with proc.sigint_ignored():  # inherited: the child ignores Ctrl-C from its first import on
            self.proc.start()
        child_conn.close()
        self.peak_rss_mb = 0.0
        self.killed_at: float | None = None
        self.ready: dict | None = None
        self.done = False
        self.fault: str | None = None
        self.log_error: str | None = None

    def sample_rss(self) -> None:
        if self.proc.is_alive():
            rss = peak_rss_mb(self.proc.pid)
            if rss == rss:  # not NaN: the process still exists
                self.peak_rss_mb = max(self.peak_rss_mb, rss)

    def poll(self) -> dict | None:
        msg = proc.recv(self.conn, 0)
        return None if msg is None or "stop" in msg else msg  # "stop": the child's end of the pipe closed

    def note_done(self, msg: dict, folder: RunFolder, info: dict) -> None:
        """A child's last message: its fault (if any) becomes one line on stderr, an event and a summary key."""
        self.done = True
        self.fault, self.log_error = msg.get("fault"), msg.get("log_error")
        if self.fault is not None:
            line = f"trial: {self.name} stopped: {self.fault}"
            print(line, file=sys.stderr, flush=True)
            info["child_faults"][self.name] = self.fault
            folder.event("child_fault", process=self.name, fault=self.fault)

    def drain(self, folder: RunFolder, info: dict) -> None:
        """Messages left in the pipe once the child ended (its last one may come after the watch)."""
        while not self.done:
            msg = self.poll()
            if msg is None:
                return
            if "done" in msg:
                self.note_done(msg, folder, info)

    def tell(self, **msg) -> None:
        try:
            proc.send(self.conn, **msg)
        except (BrokenPipeError, OSError):
            pass  # the child is gone (killed on purpose, or crashed: its summary says which)


class Operator:
    """The e-stop sources of the launcher: signals, a key, and a scheduled time."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.abort = False
        self._old = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            self._old[sig] = signal.signal(sig, self._on_signal)
        if sys.stdin is not None and sys.stdin.isatty():
            threading.Thread(target=self._keys, daemon=True, name="rtctl-estop-key").start()

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _on_signal(self, sig, frame) -> None:
        if self.requested is not None and sig == signal.SIGINT:
            self.abort = True
        self.requested = self.requested or signal.Signals(sig).name

    def _keys(self) -> None:
        read_key(self._key)

    def _key(self) -> None:
        self.requested = self.requested or "key"


def _wait_ready(children: list[Child], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for c in children:
        while c.ready is None:
            msg = c.poll()
            if msg is not None and "ready" in msg:
                c.ready = msg
            elif msg is not None and "done" in msg:
                raise RuntimeError(f"trial process {c.name} stopped during start-up: {msg.get('fault')}")
            elif not c.proc.is_alive():
                raise RuntimeError(f"trial process {c.name} exited during start-up (exit code {c.proc.exitcode})")
            elif time.monotonic() > deadline:
                raise RuntimeError(f"trial process {c.name} not ready within {timeout_s:.0f} s")
            else:
                time.sleep(0.01)


def main(config_path, out_dir=None, duration=None, cars: list[str] | None = None) -> Path:
    """Run a trial; returns the run folder (config.yaml, world/, cars/<id>/, summary.json, plots/)."""
    overrides = {"duration_s": float(duration)} if duration is not None else None
    cfg = load_config(config_path, TrialConfig, overrides)
    ids = [c.id for c in cfg.cars]
    local = ids if cars is None else list(cars)
    if unknown := sorted(set(local) - set(ids)):
        from rtctl.config import ConfigError

        raise ConfigError(f"--car names cars that are not in {config_path}: {unknown} (cars: {ids})")
    run = Path(out_dir) if out_dir is not None else default_run_dir("trial")
    folder = RunFolder(run, dump_config(cfg))
    keys_dir = cfg.v2v.keys_dir
    if cfg.v2v.curve and keys_dir is None:
        make_keys(run / "keys", ids + [OPERATOR])
        keys_dir = str(run / "keys")
    v = cfg.v2v
    # the operator's node needs the op secret key: a car computer without it e-stops only its own cars
    has_op_key = keys_dir is None or (Path(keys_dir) / "secret" / f"{OPERATOR}.key_secret").is_file()
    op = V2VNode(V2VConfig(id=OPERATOR, bind=v.operator_bind or f"tcp://{v.host}:*", keys_dir=keys_dir,
                           hwm=v.hwm, limits=v.limits, clock=v.clock)) if has_op_key else None
    operator = Operator()
    ctx = mp.get_context("spawn")  # a fresh interpreter per car: what runs on a car's own computer
    cfg_json = cfg.model_dump_json()
    children: list[Child] = []
    world = None
    info: dict = {"estop": None, "killed": {}, "terminated": {}, "aborted": False, "child_faults": {},
                  "log_error": None}
    try:
        operator.install()
        if cfg.mode == "sim":
            world = Child(ctx, "world", world_main, (cfg_json, str(run / "world")))
        # cars start while the world starts (imports take seconds on a small computer)
        cars_ = [Child(ctx, cid, car_main, (cfg_json, cid, keys_dir, str(run / "cars" / cid), None))
                 for cid in local]
        children = cars_
        if world:
            _wait_ready([world], cfg.startup_timeout_s)
            for c in cars_:
                c.tell(world=world.ready["ready"])
        _wait_ready(cars_, cfg.startup_timeout_s)
        peers = {c.id: c.v2v_endpoint for c in cfg.cars if c.v2v_endpoint}
        peers.update({c.name: c.ready["ready"] for c in cars_})
        if v.operator_endpoint or op is not None:
            peers[OPERATOR] = v.operator_endpoint or op.endpoint
        t_start = time.monotonic_ns() + int(0.5e9)
        t_end = t_start + int(cfg.duration_s * 1e9)
        for c in cars_:
            c.tell(peers=peers, t_start_ns=t_start, t_end_ns=t_end)
        if world:
            world.tell(t_start_ns=t_start)
        pids = {c.name: c.proc.pid for c in cars_ + ([world] if world else [])}
        info["pids"] = pids
        folder.event("start", cars=local, peers=peers, pids=pids)
        _watch(cfg, cars_, world, op, operator, folder, info, t_start, t_end)
    finally:
        operator.restore()
        for c in children:
            c.tell(stop="end")
        for c in children:
            _join(c)
        if world:
            world.tell(stop="end")
            _join(world)
        if op is not None:
            op.close()
    for c in children + ([world] if world else []):
        c.drain(folder, info)
        info.setdefault("peak_rss_mb_sampled", {})[c.name] = round(c.peak_rss_mb, 1)
        info.setdefault("exit_codes", {})[c.name] = c.proc.exitcode
    summary = build_report(run, cfg, info)
    _add_launcher_facts(summary, run, info)
    folder.close(summary)
    log_error = info["log_error"] or folder.error or next(
        (c.log_error for c in children + ([world] if world else []) if c.log_error), None)
    if log_error is not None:  # the trial stopped safely, but part of its evidence could not be written
        raise RunLogError(log_error)
    return run


def _join(c: Child) -> None:
    c.proc.join(timeout=15)
    if c.proc.is_alive():
        c.proc.kill()
        c.proc.join(timeout=5)


def _add_launcher_facts(summary: dict, run: Path, info: dict) -> None:
    """What only the launcher knows, next to rtctl.vehicles.trial.report's figures: pids, faults it sent or heard, and
    which per-car summaries are partial (the process ended before its final one: killed or crashed)."""
    summary.update(pids=info.get("pids"), terminated=info["terminated"], child_faults=info["child_faults"])
    for cid, car in summary["per_car"].items():
        own = run / "cars" / cid / "summary.json"
        if own.is_file() and str(json.loads(own.read_text()).get("stopped_by", "")).startswith("running"):
            car["summary"] = "partial (the process ended before its final summary: killed or crashed)"


def _watch(cfg, cars, world, op, operator, folder, info, t_start, t_end) -> None:
    next_rss = next_estop = next_partial = 0.0
    pending_kills = dict(cfg.faults.kill)
    pending_terms = dict(cfg.faults.term)
    by_name = {c.name: c for c in cars + ([world] if world else [])}
    while True:
        now_ns = time.monotonic_ns()
        t = (now_ns - t_start) / 1e9
        if time.monotonic() >= next_partial:  # a killed launcher still leaves who ran and what it did
            # copies: the writer thread encodes them later, while this loop may add to the dicts
            folder.write_partial({"stopped_by": "running (partial summary)", "t": round(t, 3),
                                  **{k: dict(info[k]) if info.get(k) else info.get(k)
                                     for k in ("pids", "estop", "killed", "terminated", "child_faults")}})
            next_partial = time.monotonic() + 5.0
        if time.monotonic() >= next_rss:
            for c in cars + ([world] if world else []):
                c.sample_rss()
            next_rss = time.monotonic() + 0.25
        for cid, at in list(pending_kills.items()):
            if t >= at:
                c = next(c for c in cars if c.name == cid)
                c.sample_rss()
                os.kill(c.proc.pid, signal.SIGKILL)
                info["killed"][cid] = round(t, 3)
                folder.event("killed", car=cid, t=round(t, 3))
                del pending_kills[cid]
        for name, at in list(pending_terms.items()):
            if t >= at:  # the child stops cleanly by itself (rtctl.vehicles.trial.proc.ChildSignals)
                if name in by_name and by_name[name].proc.is_alive():
                    os.kill(by_name[name].proc.pid, signal.SIGTERM)
                info["terminated"][name] = round(t, 3)
                folder.event("terminated", process=name, t=round(t, 3))
                del pending_terms[name]
        if cfg.faults.estop_at_s is not None and t >= cfg.faults.estop_at_s and operator.requested is None:
            operator.requested = "scheduled"
        if operator.requested is not None:
            if info["estop"] is None:
                info["estop"] = {"t": round(t, 3), "source": operator.requested}
                folder.event("estop", **info["estop"])
                t_end = min(t_end, now_ns + int(ESTOP_HOLD_S * 1e9))
                for c in cars:
                    c.tell(t_end_ns=t_end)
            if time.monotonic() >= next_estop:
                if op is not None:
                    op.publish_estop(f"operator ({operator.requested})")
                for c in cars:  # also over the pipe: local cars stop even if the bus is down
                    c.tell(estop=f"launcher ({operator.requested})")
                next_estop = time.monotonic() + 0.1
        if operator.abort:
            info["aborted"] = True
            return
        for c in cars + ([world] if world else []):
            msg = c.poll()
            if msg is not None and "done" in msg:
                c.note_done(msg, folder, info)
        if folder.error is not None:  # the launcher's own evidence cannot be written: end the trial
            info["log_error"] = folder.error
            return
        if world is not None and (world.done or not world.proc.is_alive()):
            return  # no sim car drives without its world: end the trial (the cars brake)
        if now_ns > t_end + int(2e9) or (cars and all(c.done or not c.proc.is_alive() for c in cars)):
            return
        time.sleep(0.02)
