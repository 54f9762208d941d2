"""One car's process in a trial: driver, behaviour policy, CBF shield and V2V node on one control tick.

Per control tick (rates.control_hz, default 50 Hz): read the driver (never waits), take what the V2V node
received, build the neighbour table (V2V neighbours with age-widened margins, sensed cars, map obstacles),
pick a behaviour every 1/policy_hz, filter the behaviour's reference command through the shield, write it,
and broadcast the own state every 1/v2v_hz. A latched e-stop (any peer's, the operator's included) replaces
the command by the shield's fallback (full braking in lane) for the rest of the run. A DriverError ends the
loop with the car braking. Everything lands in <run>/cars/<id>/ (log.jsonl, events.jsonl, summary.json).

Evidence (rtctl.report.runfolder): rows and events reach the disk every 0.25 s; summary.json is a partial
summary (same keys, cheap figures, ``stopped_by: "running (partial summary)"``) from the first tick on and every
5 s, replaced by the final one at the end. SIGTERM to this process is a clean stop; SIGINT is ignored (the
launcher relays Ctrl-C as an e-stop). A log write error (full disk, EIO) stops the car like a driver fault.
Every way out of the loop brakes and writes the final summary, whose ``stopped_by`` says which one it was:
"end of trial", "stopped by the launcher (...)", "terminated (SIGTERM)", or the fault line (``fault``: a driver
fault, the log error naming the folder, or the SIGTERM).
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from rtctl.drivers.base import DriverError
from rtctl.report.runfolder import RunFolder, peak_rss_mb
from rtctl.safety.behaviours import DEFAULT_BEHAVIOURS, behaviour_references
from rtctl.safety.vehicle import VehicleShield, VehicleShieldConfig
from rtctl.safety.vehicle_model import Road, VehicleParams
from rtctl.sim.vehicles.dynamics import steer_on_road
from rtctl.sim.vehicles.scenarios import OBSTACLE
from rtctl.runtime.tick import TickStats, run_loop
from rtctl.vehicles.trial import glue, proc
from rtctl.vehicles.trial.config import TrialConfig
from rtctl.vehicles.trial.policy import EMERGENCY_STOP, PolicyInput, load_policy
from rtctl.vehicles.trial.world import load_scenario
from rtctl.v2v.config import V2VConfig
from rtctl.v2v.node import V2VNode


def _sim_car(cfg: TrialConfig, car, world_endpoint: str | None, limits: dict):
    from rtctl.drivers.car_sim import CarSimDriver

    return CarSimDriver(world_endpoint, car.id, rate_hz=cfg.rates.control_hz, **limits)


def _vesc_car(cfg: TrialConfig, car, world_endpoint: str | None, limits: dict):
    from rtctl.drivers.pose import make_pose_source
    from rtctl.drivers.vesc.calibration import Calibration
    from rtctl.drivers.vesc.driver import VescDriver

    cal = Calibration.load(car.calibration) if car.calibration else Calibration()
    pose = None if car.pose.kind == "odometry" else make_pose_source(car.pose.kind, car.pose.endpoint,
                                                                     car.pose.body or car.id)
    return VescDriver(car.port, cal, pose, rate_hz=cfg.rates.control_hz, **limits)


CAR_DRIVERS = {"sim": _sim_car, "hardware": _vesc_car}  # trial mode → the car's driver


def make_driver(cfg: TrialConfig, car, world_endpoint: str | None, params: VehicleParams):
    limits = dict(accel_limits=(-params.brake_max, params.accel_max), steer_max=params.steer_max)
    return CAR_DRIVERS[cfg.mode](cfg, car, world_endpoint, limits)


class Car:
    def __init__(self, cfg: TrialConfig, car_id: str, keys_dir: str | None, out_dir: Path) -> None:
        self.cfg = cfg
        self.car = next(c for c in cfg.cars if c.id == car_id)
        self.id = car_id
        self.scn = load_scenario(cfg)
        track = self.scn.track
        self.track = track
        self.params = VehicleParams()
        self.road = Road(n_lanes=track.n_lanes, lane_width=track.lane_width)
        sh = cfg.shield
        self.shield = VehicleShield(self.params, self.road, VehicleShieldConfig(
            dt=1.0 / cfg.rates.control_hz, gamma=sh.gamma, headway=sh.headway, standstill_gap=sh.standstill_gap,
            max_state_age_s=sh.max_state_age_s))
        self.policy = load_policy(cfg.policy.type, cfg.policy.checkpoint)
        self.ids = [c.id for c in cfg.cars]
        index = self.index = self.ids.index(car_id)
        self.multi_path = track.kind == "cross"  # the intersection: crossing-traffic rows as well
        self.policy_input = PolicyInput(self.policy, self.shield, track, float(self.scn.goal_s[index]))
        self.target_speed = self.car.target_speed or cfg.policy.target_speed
        self.obstacles = self.scn.cars[self.scn.kind == OBSTACLE][:, :2]
        v = cfg.v2v
        bind = self.car.v2v_bind or f"tcp://{v.host}:*"
        self.node = V2VNode(V2VConfig(id=car_id, bind=bind, keys_dir=keys_dir, hwm=v.hwm, limits=v.limits,
                                      clock=v.clock, injection=v.injection))
        self.folder = RunFolder(out_dir, cfg.model_dump_json())
        self.policy_every = int(round(cfg.rates.control_hz / cfg.rates.policy_hz))
        self.v2v_every = int(round(cfg.rates.control_hz / cfg.rates.v2v_hz))
        self.log_every = max(1, int(round(cfg.rates.control_hz / cfg.log_hz)))
        self.behaviour = 1
        self.drive_lane: int | None = None  # the latched lane (as in training: rtctl.sim.vehicles.vec_env)
        self.accel = 0.0
        self.ages: dict[str, list[float]] = defaultdict(list)
        self.age_max: dict[str, float] = defaultdict(float)  # running: a partial summary never scans the lists
        self.margin_max: dict[str, float] = defaultdict(float)
        self.counts = {"ticks": 0, "interventions": 0, "fallbacks": 0, "estop_ticks": 0, "collided_ticks": 0}
        self.fault: str | None = None
        self.stopped_by = "never started"
        self.t_start_ns: int | None = None  # the trial's common start (the log rows' t = 0)
        self.local_estop: str | None = None  # from the launcher's pipe (its signal or key), bus or not
        self.estop_at: float | None = None
        self.distance = 0.0
        self.last_tick_s: float | None = None  # the last tick's start, s since the trial's start (the rows' clock)
        self.s0: float | None = None

    def table(self, obs, s: float, now_ns: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(neighbour rows, crossing rows or None) from V2V, the sensors and the map."""
        if self.multi_path:
            age = max(now_ns - obs["t_ns"], 0) / 1e9
            return glue.path_tables(self.scn, self.index, s, self.node.snapshot(now_ns), self.ids,
                                    obs.get("perceived", np.zeros((0, 4))), obs.get("perceived_idx", ()), age,
                                    self.cfg.shield.stale_margin_mps)
        wrap = self.track.wrap
        parts = [glue.neighbour_rows(self.node.snapshot(now_ns), self.road, s, wrap, self.cfg.shield.stale_margin_mps),
                 glue.obstacle_rows(self.obstacles, s, wrap)]
        if "perceived" in obs:
            parts.append(glue.sensed_rows(obs["perceived"], max(now_ns - obs["t_ns"], 0) / 1e9))
        return np.concatenate(parts), None

    def tick(self, k: int, t_start_ns: int) -> bool:
        now = time.monotonic_ns()
        self.last_tick_s = round((now - t_start_ns) / 1e9, 4)
        obs = self.driver.read()
        s, y, psi, v = (float(x) for x in obs["state"])
        if self.s0 is None:
            self.s0 = s
        self.node.poll(0)
        nb, cx = self.table(obs, s, now)
        if k % self.policy_every == 0:
            lane = int(self.road.lane_of(y))
            if self.drive_lane is None:
                self.drive_lane = lane
            pin = self.policy_input(obs["state"], self.accel, nb, k, cx, self.drive_lane)
            self.behaviour = int(self.policy.predict_chunk(pin).actions[0, 0])
            target = self.drive_lane + int(DEFAULT_BEHAVIOURS[self.behaviour].lane_offset)
            mask = pin.get("action_mask")
            if 0 <= target < self.road.n_lanes and (mask is None or bool(mask[self.behaviour])):
                self.drive_lane = target
            for n in self.node.snapshot(now):
                self.ages[n.id].append(n.age_s)
                self.age_max[n.id] = max(self.age_max[n.id], n.age_s)
        estop = self.node.estop is not None or self.local_estop is not None
        state_age = max(now - obs["t_ns"], 0) / 1e9
        if estop:
            if self.estop_at is None:
                self.estop_at = (now - t_start_ns) / 1e9
                e = self.node.estop
                by, why = (e.id, e.reason) if e else ("launcher", self.local_estop)
                self.folder.event("estop", t=self.estop_at, by=by, reason=why)
            a, d = self.shield.fallback_command(y, psi, v)
            u, info = np.array([float(a), float(d)]), None
            self.behaviour = EMERGENCY_STOP
        else:
            u_ref, target, _ = behaviour_references(self.shield, obs["state"][None],
                                                    (DEFAULT_BEHAVIOURS[self.behaviour],), self.target_speed,
                                                    neighbours=nb[None] if len(nb) else None,
                                                    lanes=None if self.drive_lane is None else [self.drive_lane])
            u, info = self.shield.filter(obs["state"], u_ref[0, 0], {"neighbours": nb, "crossing": cx,
                                                                     "target_lane": int(target[0, 0]),
                                                                     "state_age_s": state_age})
        steer = steer_on_road(u[1], self.track.kappa_at(s, y), self.params)
        applied = self.driver.write(np.array([u[0], float(steer)]))
        self.accel = float(applied[0])
        if k % self.v2v_every == 0:
            pose, vel, acc = glue.state_message(obs["state"], self.accel)
            # the measurement time in the bus clock (realtime between hosts): now there, less the state's age
            t_meas = self.node.now_ns() - (time.monotonic_ns() - obs["t_ns"])
            self.node.publish_state(pose, vel, acc, self._intent(y), self.cfg.v2v.error_bound_m, t_meas)
        self._count(info, estop, obs, nb)
        if k % self.log_every == 0:
            self.folder.log({"t": round((now - t_start_ns) / 1e9, 4), "s": s, "y": y, "psi": psi, "v": v,
                             "accel": self.accel, "steer": float(applied[1]), "behaviour": self.behaviour,
                             "intervened": bool(info.intervened) if info else True,
                             "status": info.status if info else "estop", "h_min": info.h_min if info else None,
                             "reason": info.reason if info else "estop", "state_age_s": state_age,
                             "ages": {n.id: round(n.age_s, 4) for n in self.node.snapshot(now)}})
        self.distance = s - self.s0
        return True

    def _intent(self, y: float) -> int:
        """The behaviour announced over V2V: a latched lane change in progress announces its direction
        (receivers read the target lane from it), whatever behaviour carries it on."""
        lane = int(self.road.lane_of(y))
        if self.drive_lane is None or self.drive_lane == lane or self.behaviour == EMERGENCY_STOP:
            return self.behaviour
        return glue.CHANGE_LEFT if self.drive_lane > lane else glue.CHANGE_RIGHT

    def _count(self, info, estop, obs, nb) -> None:
        c = self.counts
        c["ticks"] += 1
        c["estop_ticks"] += estop
        c["collided_ticks"] += bool(obs.get("collided", False))
        if info is not None:
            c["interventions"] += bool(info.intervened)
            c["fallbacks"] += info.status == "fallback"
        snap = self.node.snapshot()
        rows = [self.ids.index(n.id) if n.id in self.ids else None for n in snap] if self.multi_path else range(len(snap))
        for j, n in zip(rows, snap):  # V2V rows: in snapshot order, or by car index on a multi-path map
            if j is not None:
                self.margin_max[n.id] = max(self.margin_max[n.id], float(nb[j][7]))

    def summary(self, stats: TickStats | None, partial: bool = False) -> dict:
        """The car's summary.json; ``partial``: the same keys at a cost the tick can pay every 5 s (counts and
        running maxima; the percentiles are None until the final summary)."""
        pct = (lambda a, q: float(np.percentile(a, q)) if len(a) and not partial else None)
        ages = {peer: {"n": len(a), "p50": pct(a, 50), "p99": pct(a, 99), "max": self.age_max[peer]}
                for peer, a in self.ages.items()}
        ticks = max(self.counts["ticks"], 1)
        if stats is None:
            tick = None
        elif partial:
            tick = {"ticks": len(stats.work_us), "deadline_misses": stats.misses, "skipped_slots": stats.skipped_slots}
        else:
            tick = stats.summary()
        return {"id": self.id, "pid": os.getpid(), "stopped_by": "running (partial summary)" if partial else
                self.stopped_by, **self.counts,
                "intervention_rate": self.counts["interventions"] / ticks, "fault": self.fault,
                "estop_at_s": self.estop_at, "last_tick_s": self.last_tick_s, "distance_m": self.distance, "target_speed": self.target_speed,
                "message_age_s": ages, "age_margin_max_m": dict(self.margin_max),
                "shield": self.shield.counts.as_dict(), "v2v": self.node.stats(),
                "v2v_drops_by_peer": {f"{p}:{r}": n for (p, r), n in self.node.drops_by_peer.items()},
                "tick": tick, "peak_rss_mb": peak_rss_mb()}


def car_main(cfg_json: str, car_id: str, keys_dir: str | None, out_dir: str, world_endpoint: str | None,
             conn) -> None:
    signals = proc.ChildSignals().install()  # first: a SIGTERM from here on is a clean stop
    cfg = TrialConfig.model_validate_json(cfg_json)
    car = Car(cfg, car_id, keys_dir, Path(out_dir))
    stats: TickStats | None = None
    try:
        start = _start(car, cfg, conn, signals, world_endpoint)
        if start is not None:
            stats = TickStats(rate_hz=cfg.rates.control_hz)
            run_loop(proc.shared_tick(cfg.rates.control_hz), _work(car, cfg, conn, signals, start, stats),
                     stats=stats)
    except DriverError as err:
        car.fault = car.stopped_by = str(err)
        car.folder.event("driver_fault", error=str(err))
    except BaseException as err:  # anything unforeseen: the summary says it, the traceback still follows
        car.fault = car.stopped_by = f"{type(err).__name__}: {err}"
        raise
    finally:
        if signals.stop is not None:
            car.fault = car.fault or signals.stop
            car.stopped_by = signals.stop
        driver = getattr(car, "driver", None)
        if driver is not None:
            try:
                driver.write(np.array([-car.params.brake_max, 0.0]))  # the world / VESC timeout brakes too
                now = time.monotonic_ns()
                car.folder.event("brake", reason=car.stopped_by, accel=-car.params.brake_max, t_ns=now,
                                 t=None if car.t_start_ns is None else round((now - car.t_start_ns) / 1e9, 4))
            except (DriverError, ValueError):
                pass
            driver.disconnect()
        summary = car.summary(stats)
        car.folder.close(summary)
        car.node.close()
        proc.send_quietly(conn, done=True, fault=car.fault, log_error=car.folder.error)


def _start(car: Car, cfg: TrialConfig, conn, signals: proc.ChildSignals, world_endpoint: str | None) -> dict | None:
    """Connect, report ready, wait for the common start; the start message, or None after a SIGTERM."""
    if cfg.mode == "sim" and world_endpoint is None:  # started beside the world: its address comes later
        msg = proc.recv(conn, cfg.startup_timeout_s, signals)
        if signals.stop is not None:
            return None
        if msg is None or "world" not in msg:
            raise RuntimeError("the launcher never sent the sim world's address")
        world_endpoint = msg["world"]
    car.driver = make_driver(cfg, car.car, world_endpoint, car.params)
    car.driver.connect()
    proc.send(conn, ready=car.car.v2v_endpoint or car.node.endpoint, pid=os.getpid())
    start = proc.recv(conn, cfg.startup_timeout_s, signals)
    if signals.stop is not None:
        return None
    if start is None or "stop" in start:
        raise RuntimeError("the launcher never started the trial")
    car.t_start_ns = start["t_start_ns"]
    for peer, endpoint in start["peers"].items():
        if peer != car.id:
            car.node.add_peer(peer, endpoint)
    while time.monotonic_ns() < start["t_start_ns"]:
        if signals.stop is not None:
            return None
        car.node.poll(5)  # subscriptions settle before the first tick
    return start


def _work(car: Car, cfg: TrialConfig, conn, signals: proc.ChildSignals, start: dict, stats: TickStats):
    """The tick's work: stop checks first (SIGTERM, the log, the launcher, the end time), then the car's tick."""
    t_start, end = start["t_start_ns"], {"t": start["t_end_ns"]}
    partial_every = max(1, int(5 * cfg.rates.control_hz))  # summary.json current to within 5 s
    disk_full_at = cfg.faults.disk_full.get(car.id)

    def work(timing) -> bool:
        nonlocal disk_full_at
        if signals.stop is not None:
            return False
        if car.folder.error is not None:  # the evidence cannot be written: stop (the finally brakes)
            car.fault = car.stopped_by = car.folder.error
            return False
        if timing.index % car.policy_every == 0 and conn.poll():
            msg = proc.recv(conn)
            if "stop" in msg:
                car.stopped_by = f"stopped by the launcher ({msg['stop']})"
                return False
            end["t"] = msg.get("t_end_ns", end["t"])  # an e-stop shortens the run
            car.local_estop = car.local_estop or msg.get("estop")
        now = time.monotonic_ns()
        if now >= end["t"]:
            car.stopped_by = "end of trial"
            return False
        if disk_full_at is not None and now >= t_start + disk_full_at * 1e9:
            proc.fill_disk(car.folder.path)  # injected: the next drain fails with ENOSPC
            disk_full_at = None
        if timing.index % partial_every == 0:
            car.folder.write_partial(car.summary(stats, partial=True))
        return car.tick(timing.index, t_start)

    return work
