"""`rtctl run CONFIG`: deploy a chunking policy on a driver under the fixed-rate tick; leave a run folder."""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import numpy as np
from pydantic import Field

from rtctl.chunking.delay import DelayEstimator
from rtctl.runtime.inference import InlineClient
from rtctl.chunking.merge import make_merge
from rtctl.chunking.scheduler import ChunkScheduler
from rtctl.config import ConfigError, StrictModel, dump_config, load_config
from rtctl.runtime.loop import ControlLoop
from rtctl.runtime.ray_client import ActorConfig
from rtctl.runtime.policies import PolicyConfig
from rtctl.report.runfolder import (RunFolder, RunLogError, Terminated, check_out_dir, default_run_dir,
                                    peak_rss_mb)
from rtctl.runtime.drivers import make_driver, register_driver, run_config_model
from rtctl.runtime.shield import ShieldStepConfig, make_shield
from rtctl.runtime.tick import TickConfig, TickStats, run_loop


class PushConfig(StrictModel):
    """A disturbance drill: the joint is pushed ``offset_rad`` from where it is and held ``duration_s``."""

    joint: str = "shoulder_pan"
    offset_rad: float = Field(0.61, ge=-3.2, le=3.2)  # 35°
    start_s: float = Field(3.0, ge=0.0, le=86400.0)  # since the driver connected
    duration_s: float = Field(1.5, gt=0.0, le=3600.0)


class DriverConfig(StrictModel):
    type: Literal["sim_arm"] = "sim_arm"
    task: Literal["reach", "whack"] = "reach"
    image: bool = False
    episode_s: Optional[float] = Field(None, gt=0.0, le=3600.0)
    fail_read_at_tick: Optional[int] = Field(None, ge=0)  # fault injection, for tests and drills
    fail_write_at_tick: Optional[int] = Field(None, ge=0)
    push: list[PushConfig] = Field(default_factory=list)


class DisturbanceConfig(StrictModel):
    """The scheduler's disturbance rule (rtctl.chunking.scheduler): measured joints further than the bound
    from the last sent command → condition on the measured state at once."""

    enabled: bool = True
    # Per joint, rad. None: ``factor`` × the SO-101 servo tracking error measured at shield.max_joint_speed
    # (rtctl.safety.SO101_TRACKING), or at its fastest measured limit (2.5 rad/s) with the shield off, since
    # then nothing caps the commanded speed (measured: 2 × the 1 rad/s table fired 4.5 times a minute on an
    # unshielded whack run, 0 with the 2.5 rad/s table). A real or other arm: measure and give it here.
    bound_rad: Optional[list[Annotated[float, Field(gt=0.0, le=3.2)]]] = None
    factor: float = Field(2.0, ge=1.0, le=20.0)
    recover_s: float = Field(0.33, ge=0.0, le=60.0)  # back within half the bound this long: rule ends


class SchedulerConfig(StrictModel):
    mode: Literal["sync", "async", "async_rollforward", "replan_rollforward"] = "sync"
    exec_steps: int = Field(25, ge=1, le=1000)  # K
    q: int = Field(1, ge=1, le=8)  # action quantization
    merge: Literal["hard", "blend"] = "hard"
    blend_ticks: int = Field(5, ge=1, le=100)
    delay_ticks: Optional[int] = Field(None, ge=0, le=1000)  # override the measured Δ
    delay_window: int = Field(20, ge=1, le=1000)
    delay_percentile: float = Field(95.0, ge=50.0, le=100.0)
    delay_warmup: int = Field(2, ge=0, le=100)
    max_in_flight: int = Field(2, ge=1, le=16)  # replan_rollforward
    delay_window_s: float = Field(2.0, gt=0.0, le=600.0)  # Δ̂ forgets delays older than this
    disturbance: DisturbanceConfig = DisturbanceConfig()


class RunConfig(StrictModel):
    seed: int = 0
    duration_s: float = Field(20.0, gt=0.0, le=86400.0)
    episodes: Optional[int] = Field(None, ge=1, le=100000)  # stop after this many (sim), else duration
    tick: TickConfig = TickConfig()
    driver: DriverConfig = DriverConfig()
    policy: PolicyConfig = PolicyConfig()
    actor: ActorConfig = ActorConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    shield: ShieldStepConfig = ShieldStepConfig()
    plots: bool = True


def _build_sim_arm(cfg: RunConfig) -> Any:
    from rtctl.drivers.sim_arm import Push, SimArmDriver
    from rtctl.sim.arm_env import JOINT_NAMES

    d = cfg.driver
    for p in d.push:
        if p.joint not in JOINT_NAMES:
            raise ConfigError(f"config error: key 'driver.push.joint' = {p.joint!r} is not a joint "
                              f"(known: {', '.join(JOINT_NAMES)})")
    pushes = [Push(JOINT_NAMES.index(p.joint), p.offset_rad, p.start_s, p.duration_s) for p in d.push]
    return SimArmDriver(task=d.task, rate_hz=cfg.tick.rate_hz, seed=cfg.seed, image=d.image,
                        episode_s=d.episode_s, fail_read_at_tick=d.fail_read_at_tick,
                        fail_write_at_tick=d.fail_write_at_tick, pushes=pushes)


register_driver("sim_arm", DriverConfig, _build_sim_arm)


def disturbance_bound(cfg: DisturbanceConfig, max_joint_speed: Optional[float], n_joints: int) -> Optional[np.ndarray]:
    """Per-joint bound of the disturbance rule (None: rule off); see `DisturbanceConfig`."""
    if not cfg.enabled:
        return None
    if cfg.bound_rad is not None:
        if len(cfg.bound_rad) != n_joints:
            raise ConfigError(f"config error: key 'scheduler.disturbance.bound_rad' needs {n_joints} values "
                              f"(one per joint), got {len(cfg.bound_rad)}")
        return np.asarray(cfg.bound_rad, float)
    from rtctl.safety.arm_config import SO101_TRACKING, so101_tracking

    try:
        speed = max(SO101_TRACKING) if max_joint_speed is None else max_joint_speed
        worst = np.asarray(so101_tracking(speed)[0], float)
    except ValueError as err:
        raise ConfigError(f"config error: key 'scheduler.disturbance': {err}; or give bound_rad") from None
    if len(worst) != n_joints:
        raise ConfigError(f"config error: key 'scheduler.disturbance.bound_rad' is needed for a {n_joints}-joint "
                          f"robot (the default is the SO-101's measured tracking error)")
    return cfg.factor * worst


def scheduler_factory(cfg: SchedulerConfig, horizon: int, low: np.ndarray, high: np.ndarray,
                      rate_hz: float = 30.0, bound: Optional[np.ndarray] = None, initial_delay: int = 1):
    """``initial_delay``: Δ̂ in ticks before any delay was measured (the warm-up round trip, not 1 tick)."""
    merge = make_merge(cfg.merge, blend_ticks=cfg.blend_ticks)
    # One estimator for the whole run: the delay belongs to the inference path, not to an episode.
    delay = DelayEstimator(cfg.delay_window, cfg.delay_percentile, cfg.delay_warmup, cfg.delay_ticks,
                           initial=initial_delay, window_s=cfg.delay_window_s, rate_hz=rate_hz)

    def make() -> ChunkScheduler:
        return ChunkScheduler(cfg.mode, horizon, cfg.exec_steps, low, high, q=cfg.q, merge=merge,
                              delay=delay, max_in_flight=cfg.max_in_flight, disturbance_bound=bound,
                              recover_ticks=max(1, math.ceil(cfg.disturbance.recover_s * rate_hz)))
    return make


def summarize(loop: ControlLoop, stats: Any, wall_s: float, extra: dict) -> dict:
    eps = loop.episodes
    whack = loop.episodic and loop.driver.task == "whack"
    reactions = [r for e in eps for r in e.reactions_s] if whack else []
    lat = getattr(loop.client, "latencies_s", [])
    out = {
        **stats.summary(),
        "wall_s": wall_s,
        "episodes": len(eps),
        "success_rate": float(np.mean([e.success for e in eps])) if eps else float("nan"),
        "task_time_s": float(np.nanmean([e.task_time_s for e in eps])) if eps else float("nan"),
        **loop.smoothness(),
        "hits_per_min": loop.hits_per_min(),
        "disturbances": disturbance_summary(loop),
        "reaction_latency_s_p50": float(np.median(reactions)) if reactions else None,
        "reaction_latency_s_p95": float(np.percentile(reactions, 95)) if reactions else None,
        "inference_latency_ms_p50": float(np.median(lat) * 1e3) if lat else None,
        "inference_latency_ms_p95": float(np.percentile(lat, 95) * 1e3) if lat else None,
        **(loop.client.latency_summary() if hasattr(loop.client, "latency_summary") else {}),
        **({"bus": loop.driver.bus_stats()} if hasattr(loop.driver, "bus_stats") else {}),
        "delay_steps_measured": loop.sched.delay.value,
        "counts": loop.counts(),
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }
    return out


def disturbance_summary(loop: ControlLoop) -> dict:
    """Disturbance rule: how often it fired, and per disturbance the ticks from its detection to the first
    command of a chunk conditioned on the measured state (pushes are timed by the benchmark from the log)."""
    log = loop.disturbance_log
    minutes = loop.total_ticks / loop.rate_hz / 60.0
    react = [d["first_reaction_tick"] - d["tick"] for d in log if d["first_reaction_tick"] is not None]
    return {"events": len(log), "per_min": len(log) / minutes if minutes > 0 else None,
            "detect_to_reaction_ticks": react}


def run(config_path: str | Path, out: Optional[str | Path] = None, duration_s: Optional[float] = None,
        overrides: Optional[dict] = None, progress: bool = True,
        resolve_policy: Optional[Callable[[Any], Any]] = None) -> Path:
    """Validate the config, then run; the run folder exists only once the config is known good.
    ``resolve_policy`` makes a ``policy.train_config``'s checkpoint (the CLI passes the trainers' one)."""
    ov = dict(overrides or {})
    if duration_s is not None:
        ov["duration_s"] = duration_s
    cfg = load_config(config_path, run_config_model(RunConfig), ov)
    from rtctl.runtime.policies import resolve_checkpoint

    cfg.policy = resolve_checkpoint(cfg.policy, resolve_policy)
    from rtctl.runtime.actor_latency import resolve_extra_latency

    resolve_extra_latency(cfg.policy, cfg.actor)  # both forms set: one line, before any folder
    if cfg.actor.enabled:
        from rtctl.runtime.ray_start import cluster_address, probe_head

        probe_head(cluster_address(cfg.actor.address))  # a wrong address: one line now, before any folder
    out_dir = check_out_dir(out if out else default_run_dir("run"))  # before anything starts
    driver = make_driver(cfg)
    shield = make_shield(cfg.shield, cfg.driver.type, cfg.tick.rate_hz)
    return execute(cfg, driver, shield, out_dir, progress)


def execute(cfg: Any, driver: Any, shield: Any, out_dir: Path, progress: bool = True,
            on_folder: Optional[Callable[[RunFolder], None]] = None,
            extra_summary: Optional[Callable[[], dict]] = None) -> Path:
    """Run a validated config (a `RunConfig`, or any model with the same tick/policy/actor/scheduler/
    duration_s/episodes/plots sections) on a built driver and shield; leave the run folder at ``out_dir``.
    ``on_folder(folder)`` runs once the folder exists (hook driver events to it); ``extra_summary()`` adds
    keys to summary.json after the driver stopped."""
    rate = cfg.tick.rate_hz
    task = getattr(cfg.driver, "task", None)
    from rtctl.runtime.policies import check_checkpoint

    check_checkpoint(cfg.policy, rate, driver.spec.action_dim)  # here, not in the actor: one line before anything starts
    bound = disturbance_bound(cfg.scheduler.disturbance, cfg.shield.max_joint_speed if cfg.shield.enabled else None,
                              driver.spec.action_dim)
    folder = RunFolder(out_dir, dump_config(cfg))
    if hasattr(driver, "on_event"):
        driver.on_event = folder.event  # driver events (pushes, bus faults, watchdog) go to events.jsonl
    if on_folder is not None:
        on_folder(folder)
    client = None
    stop = threading.Event()
    loop_running = threading.Event()
    stopped_by: dict[str, str] = {}
    old_handlers: dict = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame):  # Ctrl-C or SIGTERM: finish this tick, then stop cleanly (exit 0)
            stop.set()
            stopped_by.setdefault("reason", "interrupted (SIGINT)" if signum == signal.SIGINT else
                                  "terminated (SIGTERM)")
            if not loop_running.is_set():  # still starting (waiting for Ray, the actor, the driver): unwind now
                raise KeyboardInterrupt if signum == signal.SIGINT else Terminated()
        old_handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    t_start = time.monotonic()
    stats = None
    loop = None
    try:
        if cfg.actor.enabled:
            from rtctl.runtime.ray_start import actor_start_for

            # An ActorStart until joined: Ray and the actor start in the background while the driver connects
            # (or since rtctl.runtime.ray_start.prestart); its close() ends a start the run never used.
            client = actor_start_for(cfg)
            client.clock.mark("driver_connect")
        else:
            from rtctl.runtime.policies import make_policy

            client = InlineClient(make_policy(cfg.policy, rate), delay_ticks=0)
        driver.connect()
        if cfg.actor.enabled:
            client = client.result(on_event=folder.event)  # the RayActorClient
            if old_handlers:  # Ray's core worker put its fatal-signal handler in front of ours for SIGTERM: it
                for sig in old_handlers:  # aborts the process (exit 134) 3 s after the signal, mid safe stop
                    signal.signal(sig, on_signal)
            warm = client.warm_up(driver.read())
            client.startup.mark("warm")
            folder.event("policy_actor_started", **client.info, startup_s=client.startup_s(), warm_up_s=warm)
        make_scheduler = scheduler_factory(cfg.scheduler, cfg.policy.horizon, driver.spec.action_low,
                                           driver.spec.action_high, rate, bound,
                                           initial_delay=math.ceil(warm[-1] * rate) if cfg.actor.enabled else 1)
        loop = ControlLoop(driver, make_scheduler, client, rate, cfg.episodes, shield=shield, on_event=folder.event)
        n_ticks = int(math.ceil(cfg.duration_s * rate))
        stats = TickStats(rate)
        bar = _progress(n_ticks, progress and sys.stderr.isatty())  # no bar in a log file
        t0_ns = time.monotonic_ns()
        folder.event("loop_started", t0_ns=t0_ns)  # anchors the rows' *_ms times on the host's monotonic clock

        partial_every = max(1, int(5 * rate))  # summary.json kept up to date at least every 5 s

        def work(timing) -> bool:
            if folder.error is not None:  # the evidence cannot be written: stop (the driver holds / brakes)
                raise RunLogError(folder.error)
            return (not stop.is_set()) and loop.tick(timing.index, timing.start_ns)

        def done(timing, end_ns, missed) -> None:
            if timing.index == 0 and getattr(client, "startup", None) is not None:
                client.startup.mark("first_command", end_ns)
            if timing.index % partial_every == 0:  # from the first tick on; cheap: counts only, no percentiles
                folder.write_partial({"stopped_by": "running (partial summary)", "ticks": timing.index + 1,
                                      "deadline_misses": stats.misses, "episodes": len(loop.episodes),
                                      "counts": loop.counts(), "wall_s": time.monotonic() - t_start})
            row = loop.last_row
            if row is not None:
                row.update(t_sched_ms=(timing.scheduled_ns - t0_ns) / 1e6, t_start_ms=(timing.start_ns - t0_ns) / 1e6,
                           t_end_ms=(end_ns - t0_ns) / 1e6, period_err_us=abs(timing.start_ns - timing.scheduled_ns) / 1e3,
                           work_us=(end_ns - timing.start_ns) / 1e3, miss=missed)
                folder.log(row)
            if bar is not None and timing.index % max(1, int(rate)) == 0:
                bar.n = timing.index
                bar.refresh()

        io_threads = driver.io_thread_ids() if hasattr(driver, "io_thread_ids") else []
        loop_running.set()
        stats = run_loop(cfg.tick, work, max_ticks=n_ticks, on_tick_done=done, stats=stats,
                         share_cpu_threads=io_threads)
        if bar is not None:
            bar.close()
    except BaseException as err:  # driver fault, Ctrl-C during set-up, anything: stop safely and say so
        stopped_by["reason"] = f"{type(err).__name__}: {err}"
        if not hasattr(err, "safe_state"):  # what the robot does now, in the words of its kind (CLI line)
            try:
                err.safe_state = getattr(driver, "safe_state", "the arm holds its last command")
            except AttributeError:  # exceptions without a __dict__
                pass
        raise
    finally:
        # when the loop ended, on the host's monotonic clock (the fault drills measure log loss against it)
        folder.event("stopped", reason=stopped_by.get("reason", "completed"), t_ns=time.monotonic_ns())
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        _safe_stop(driver, folder)
        if client is not None:
            client.close()
        summary = {"stopped_by": stopped_by.get("reason", "completed")}
        if loop is not None:
            loop.flush_reactions()
            summary = summarize(loop, stats or TickStats(rate), time.monotonic() - t_start,
                                {"stopped_by": stopped_by.get("reason", "completed"),
                                 "restarts": getattr(client, "restarts", 0),
                                 "actor": client.pool.summary() if hasattr(client, "pool") else None,
                                 "startup_s": client.startup_s() if hasattr(client, "startup_s") else None,
                                 "mode": cfg.scheduler.mode, "task": task,
                                 "shield": shield.counts() if shield is not None else None,
                                 **(extra_summary() if extra_summary is not None else {})})
        folder.close(summary)
        if cfg.plots and loop is not None:
            from rtctl.report.plots import plot_run

            plot_run(out_dir)
    if folder.error is not None:  # the run ended, but part of its evidence could not be written
        raise RunLogError(folder.error)
    return out_dir


def _safe_stop(driver: Any, folder: RunFolder) -> None:
    """Hold the last applied command (the driver keeps its last target) and disconnect."""
    try:
        driver.disconnect()
    except Exception as err:  # the device may already be gone; the log must still close
        folder.event("disconnect_failed", error=str(err))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="tick", desc="run", mininterval=1.0, leave=False)
