"""The sim-world process of a trial: steps every car of the scenario and serves each agent's driver over ZeroMQ.

Agents are driven by their car processes (`rtctl.drivers.car_sim.CarSimDriver`): each command is held until
the next; a car whose commands stop for `sim.command_timeout_s` brakes fully (what a VESC does when its host
goes quiet), so a killed car process leaves a stopped car on the road. Scripted humans and parked obstacles
come from `rtctl.sim.vehicles`. The world physics runs at `sim.world_hz` from the common start time; before it,
it answers drivers (so they connect) without moving anything. It records collisions (separating-axis test on
the car bodies; onsets of each pair), completion times, and a state log, into <run>/world/.

Evidence as in a car's process (rtctl.vehicles.trial.car): rows flushed every 0.25 s, a partial summary.json from the
first tick and every 5 s; SIGTERM a clean stop, SIGINT ignored; a log write error stops the world (``fault``
names the folder). Without its world no sim car drives: the launcher ends the trial when the world stops.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import msgpack
import numpy as np
import zmq

from rtctl.report.runfolder import RunFolder
from rtctl.sim.vehicles.dynamics import PSI, S, V, Y, rectangles_overlap, step, world_corners
from rtctl.sim.vehicles.scenarios import AGENT, HUMAN, OBSTACLE, make_scenario
from rtctl.sim.vehicles.traffic import human_commands
from rtctl.runtime.tick import TickStats, run_loop
from rtctl.vehicles.trial import proc
from rtctl.vehicles.trial.config import TrialConfig

MAX_REQUEST = 256


def load_scenario(cfg: TrialConfig):
    """The trial's scenario (the same map in every process: same name, agent count and seed)."""
    scn = make_scenario(cfg.sim.scenario, len(cfg.cars), cfg.sim.seed)
    if not cfg.sim.humans:
        keep = scn.kind != HUMAN
        scn = dataclasses.replace(scn, cars=scn.cars[keep], path=scn.path[keep], kind=scn.kind[keep],
                                  human_speed=scn.human_speed[:0], brake_at_s=scn.brake_at_s[:0],
                                  brake_for_s=scn.brake_for_s[:0], runs_red=scn.runs_red[:0])
    return scn


def car_names(scn, ids: list[str]) -> list[str]:
    n = {HUMAN: 0, OBSTACLE: 0}
    names = []
    for k in scn.kind.tolist():
        if k == AGENT:
            names.append(ids[len(names)])
        else:
            names.append(f"{'human' if k == HUMAN else 'obstacle'}{n[k]}")
            n[k] += 1
    return names


def parse_request(data: bytes) -> tuple[int, list[float] | None] | None:
    if len(data) > MAX_REQUEST:
        return None
    try:
        r = msgpack.unpackb(data, raw=False, max_str_len=16, max_bin_len=0, max_array_len=4, max_map_len=4,
                            max_ext_len=0)
    except Exception:  # hostile bytes raise many types
        return None
    if type(r) is not dict or r.keys() != {"seq", "cmd"} or type(r["seq"]) is not int:
        return None
    cmd = r["cmd"]
    if cmd is None:
        return r["seq"], None
    if type(cmd) is not list or len(cmd) != 2 or not all(type(x) in (int, float) and math.isfinite(x) for x in cmd):
        return None
    return r["seq"], [float(cmd[0]), float(cmd[1])]


class World:
    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        self.ids = [c.id for c in cfg.cars]
        self.scn = load_scenario(cfg)
        self.p, self.track = self.scn.params, self.scn.track
        self.cars = self.scn.cars.copy()
        self.names = car_names(self.scn, self.ids)
        self.n = len(self.ids)
        self.humans = np.flatnonzero(self.scn.kind == HUMAN)
        self.others = np.flatnonzero(self.scn.kind != AGENT)
        self.cmd = np.zeros((self.n, 2))
        self.cmd[:, 0] = -self.p.brake_max  # until a car's process commands it, it brakes
        self.t_cmd = np.zeros(self.n, dtype=np.int64)
        self.timeout_ns = int(cfg.sim.command_timeout_s * 1e9)
        self.t_sim = 0.0
        self.touching = np.zeros((len(self.cars), len(self.cars)), dtype=bool)
        self.collisions: list[dict] = []
        self.start_s = self.cars[: self.n, S].copy()
        self.completed: dict[str, float | None] = {i: None for i in self.ids}
        self.timeouts = np.zeros(self.n, dtype=int)

    def command(self, i: int, cmd: list[float], now_ns: int) -> None:
        self.cmd[i] = cmd
        self.t_cmd[i] = now_ns

    def step(self, dt: float, now_ns: int) -> None:
        C = len(self.cars)
        accel, steer = np.zeros(C), np.zeros(C)
        stale = now_ns - self.t_cmd > self.timeout_ns
        self.timeouts += stale
        accel[: self.n] = np.where(stale, -self.p.brake_max, self.cmd[:, 0])
        steer[: self.n] = self.cmd[:, 1]
        steer[: self.n][stale] = self.cars[: self.n, 4][stale]  # the servo holds its last position
        if len(self.humans):
            alive = np.ones((1, C), dtype=bool)
            a_h, s_h = human_commands(self.scn, self.cars[None], alive, self.t_sim)
            accel[self.humans], steer[self.humans] = a_h[0], s_h[0]
        self.cars = step(self.cars, accel, steer, self.p, dt, kappa_ref=self.track.kappa_ref(self.cars[:, S]),
                         y_ref=self.track.y_ref)
        self.t_sim += dt
        self._collisions()
        done = self.cars[: self.n, S] - self.start_s >= self.scn.goal_s - self.scn.cars[: self.n, S]
        for i in np.flatnonzero(done).tolist():
            if self.completed[self.ids[i]] is None:
                self.completed[self.ids[i]] = round(self.t_sim, 3)

    def _collisions(self) -> None:
        x, y, yaw = self.track.to_world(self.scn.path, self.cars[:, S], self.cars[:, Y], self.cars[:, PSI])
        corners = world_corners(np.asarray(x), np.asarray(y), np.asarray(yaw), self.p)
        touch = rectangles_overlap(*np.broadcast_arrays(corners[:, None], corners[None, :]))
        np.fill_diagonal(touch, False)
        touch[self.n:, self.n:] = False  # only collisions that involve an agent are the trial's business
        for i, j in zip(*np.nonzero(np.triu(touch & ~self.touching))):
            self.collisions.append({"t": round(self.t_sim, 3), "a": self.names[i], "b": self.names[j],
                                    "v_a": float(self.cars[i, V]), "v_b": float(self.cars[j, V])})
        self.touching = touch

    def reply(self, i: int, seq: int, now_ns: int) -> bytes:
        me = self.cars[i]
        R = self.cfg.sim.perception_range_m
        if self.track.kind == "cross":  # other paths: range in the world frame, tracks in their own frames
            wx, wy, _ = self.track.to_world(self.scn.path, self.cars[:, S], self.cars[:, Y], self.cars[:, PSI])
            near = np.hypot(wx[self.others] - wx[i], wy[self.others] - wy[i]) <= R
            ds = self.cars[self.others, S] - me[S]
        else:
            ds = self.track.wrap(self.cars[self.others, S] - me[S])
            near = np.abs(ds) <= R
        near &= self.scn.kind[self.others] == HUMAN  # parked obstacles are on the map every car has
        rows = self.cars[self.others[near]][:, [S, Y, PSI, V]]
        rows[:, 0] = me[S] + ds[near]
        x, y, yaw = self.track.to_world(self.scn.path[i], me[S], me[Y], me[PSI])
        return msgpack.packb({"seq": seq, "t_ns": now_ns, "state": me.tolist(),
                              "pose": [float(x), float(y), float(yaw)], "perceived": rows.tolist(),
                              "perceived_idx": self.others[near].tolist(), "collided": bool(self.touching[i].any()),
                              "t_sim": self.t_sim})

    def log_row(self) -> dict:
        return {"t": round(self.t_sim, 4), "s": self.cars[:, S].round(4), "y": self.cars[:, Y].round(4),
                "psi": self.cars[:, PSI].round(4), "v": self.cars[:, V].round(4)}


def world_summary(world: World, state: dict, stats: TickStats, stopped_by: str, fault: str | None,
                  partial: bool = False) -> dict:
    """The world's summary.json; ``partial``: the same keys without the tick percentiles (cheap every 5 s)."""
    tick = ({"ticks": len(stats.work_us), "deadline_misses": stats.misses, "skipped_slots": stats.skipped_slots}
            if partial else stats.summary())
    return {"pid": os.getpid(), "stopped_by": "running (partial summary)" if partial else stopped_by,
            "fault": fault, "names": world.names, "kind": world.scn.kind.tolist(), "n_agents": world.n,
            "collisions": list(world.collisions), "completed_at_s": dict(world.completed), "t_sim": world.t_sim,
            "goal_m": (world.scn.goal_s - world.scn.cars[: world.n, S]).tolist(),
            "command_timeouts": dict(zip(world.ids, world.timeouts.tolist())),
            "rejected_requests": state["rejected"], "track": dataclasses.asdict(world.track), "tick": tick}


def world_main(cfg_json: str, out_dir: str, conn) -> None:
    signals = proc.ChildSignals().install()  # first: a SIGTERM from here on is a clean stop
    cfg = TrialConfig.model_validate_json(cfg_json)
    world = World(cfg)
    index = {cid.encode(): i for i, cid in enumerate(world.ids)}
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 4096)
    sock.bind(f"tcp://{cfg.v2v.host}:*")
    folder = RunFolder(out_dir, cfg_json)
    proc.send(conn, ready=sock.getsockopt(zmq.LAST_ENDPOINT).decode(), pid=os.getpid())
    dt = 1.0 / cfg.sim.world_hz
    log_every = max(1, int(round(cfg.sim.world_hz / cfg.log_hz)))
    partial_every = max(1, int(5 * cfg.sim.world_hz))  # summary.json current to within 5 s
    state = {"t_start": None, "last": None, "ticks": 0, "rejected": 0, "stopped_by": "never started",
             "fault": None, "disk_full_at": cfg.faults.disk_full.get("world")}
    stats = TickStats(rate_hz=cfg.sim.world_hz)

    def work(timing) -> bool:
        now = time.monotonic_ns()
        if signals.stop is not None:
            state["stopped_by"] = state["fault"] = signals.stop
            return False
        if folder.error is not None:  # the evidence cannot be written: stop (every car then brakes)
            state["stopped_by"] = state["fault"] = folder.error
            return False
        if conn.poll():
            msg = proc.recv(conn)
            if "stop" in msg:
                state["stopped_by"] = f"stopped by the launcher ({msg['stop']})"
                return False
            state["t_start"] = msg["t_start_ns"]
            world.t_cmd[:] = msg["t_start_ns"]  # the timeout counts from the start, not from connect
        if timing.index % partial_every == 0:
            folder.write_partial(world_summary(world, state, stats, "", None, partial=True))
        at = state["disk_full_at"]
        if at is not None and state["t_start"] is not None and now >= state["t_start"] + at * 1e9:
            proc.fill_disk(folder.path)  # injected: the next drain fails with ENOSPC
            state["disk_full_at"] = None
        replies = []
        while True:
            try:
                ident, data = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except ValueError:  # not two frames
                state["rejected"] += 1
                continue
            req = parse_request(data)
            i = index.get(ident)
            if req is None or i is None:
                state["rejected"] += 1
                continue
            if req[1] is not None:
                world.command(i, req[1], now)
            replies.append((ident, i, req[0]))
        if state["t_start"] is not None and now >= state["t_start"]:
            last = state["last"] or now - int(dt * 1e9)
            n_sub = min(max(int(round((now - last) / (dt * 1e9))), 1), 5)  # keep up after a late tick, never burst
            for _ in range(n_sub):
                world.step(dt, now)
            state["last"] = last + int(n_sub * dt * 1e9)
            state["ticks"] += 1
            if state["ticks"] % log_every == 0:
                folder.log(world.log_row())
        for ident, i, seq in replies:
            sock.send_multipart([ident, world.reply(i, seq, now)], zmq.NOBLOCK)
        return True

    try:
        run_loop(proc.shared_tick(cfg.sim.world_hz), work, stats=stats)
    except BaseException as err:  # anything unforeseen: the summary says it, the traceback still follows
        state["stopped_by"] = state["fault"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        if signals.stop is not None:  # a SIGTERM during the last tick or the unwinding
            state["stopped_by"] = state["fault"] = signals.stop
        folder.close(world_summary(world, state, stats, state["stopped_by"], state["fault"]))
        sock.close(linger=0)
        ctx.term()
        proc.send_quietly(conn, done=True, fault=state["fault"], log_error=folder.error)
