"""`rtctl trial CONFIG`: launch one OS process per car (and the sim world), run, e-stop on request, report.

Sim mode: a world process (rtctl.trial.world) and every car process start; each car binds its V2V publisher
on loopback and reports the endpoint; the launcher hands every car the others' endpoints and the operator's
and a common start time, then watches: peak resident memory of every child, scheduled faults (SIGKILL a car),
the operator e-stop. Hardware mode: the same for the cars given by `cars` (default all, e.g. a bench with
every VESC on one computer; on the cars themselves run one car per computer), peers from the config.

Operator e-stop: SIGINT, SIGTERM or SIGUSR1 to the launcher, or the key `e` + Enter on its terminal, makes
the operator's V2V node ("op") broadcast an e-stop (repeated every 0.1 s); every car latches it and brakes
in lane; the trial ends `estop_hold_s` later. A second SIGINT ends it at once. CURVE keys are made into
<run>/keys as `rtctl keys` does, unless v2v.keys_dir names existing ones.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path

from rtctl.config import dump_config, load_config
from rtctl.report.runfolder import RunFolder, default_run_dir, peak_rss_mb
from rtctl.trial import proc
from rtctl.trial.car import car_main
from rtctl.trial.config import TrialConfig
from rtctl.trial.report import build_report
from rtctl.trial.world import world_main
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
        self.proc.start()
        child_conn.close()
        self.peak_rss_mb = 0.0
        self.killed_at: float | None = None
        self.ready: dict | None = None
        self.done = False

    def sample_rss(self) -> None:
        if self.proc.is_alive():
            rss = peak_rss_mb(self.proc.pid)
            if rss == rss:  # not NaN: the process still exists
                self.peak_rss_mb = max(self.peak_rss_mb, rss)

    def poll(self) -> dict | None:
        msg = proc.recv(self.conn, 0)
        return None if msg is None or "stop" in msg else msg  # "stop": the child's end of the pipe closed

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
        for line in sys.stdin:
            if line.strip().lower().startswith("e"):
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
    info: dict = {"estop": None, "killed": {}, "aborted": False}
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
        folder.event("start", cars=local, peers=peers)
        _watch(cfg, cars_, world, op, operator, folder, info, t_start, t_end)
    finally:
        operator.restore()
        for c in children:
            c.tell(stop="end")
        for c in children:
            c.proc.join(timeout=15)
            if c.proc.is_alive():
                c.proc.kill()
                c.proc.join(timeout=5)
        if world:
            world.tell(stop="end")
            world.proc.join(timeout=15)
            if world.proc.is_alive():
                world.proc.kill()
        if op is not None:
            op.close()
    for c in children + ([world] if world else []):
        info.setdefault("peak_rss_mb_sampled", {})[c.name] = round(c.peak_rss_mb, 1)
        info.setdefault("exit_codes", {})[c.name] = c.proc.exitcode
    summary = build_report(run, cfg, info)
    folder.close(summary)
    return run


def _watch(cfg, cars, world, op, operator, folder, info, t_start, t_end) -> None:
    next_rss = next_estop = 0.0
    pending_kills = dict(cfg.faults.kill)
    while True:
        now_ns = time.monotonic_ns()
        t = (now_ns - t_start) / 1e9
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
        for c in cars:
            msg = c.poll()
            if msg is not None and "done" in msg:
                c.done = True
        if now_ns > t_end + int(2e9) or (cars and all(c.done or not c.proc.is_alive() for c in cars)):
            return
        time.sleep(0.02)
