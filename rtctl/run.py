"""`rtctl run CONFIG`: deploy a chunking policy on a driver under the fixed-rate tick; leave a run folder."""
from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np
from pydantic import Field

from rtctl.chunking.delay import DelayEstimator
from rtctl.chunking.inference import InlineClient
from rtctl.chunking.merge import make_merge
from rtctl.chunking.scheduler import ChunkScheduler
from rtctl.config import StrictModel, dump_config, load_config
from rtctl.control import ControlLoop
from rtctl.policy_actor import ActorConfig
from rtctl.policy_factory import PolicyConfig
from rtctl.report.runfolder import RunFolder, default_run_dir, peak_rss_mb
from rtctl.shielding import ShieldSection, make_shield
from rtctl.tick import TickConfig, TickStats, choose_cpu, run_loop


class DriverConfig(StrictModel):
    type: Literal["sim_arm"] = "sim_arm"
    task: Literal["reach", "whack"] = "reach"
    image: bool = False
    episode_s: Optional[float] = Field(None, gt=0.0, le=3600.0)
    fail_read_at_tick: Optional[int] = Field(None, ge=0)  # fault injection, for tests and drills
    fail_write_at_tick: Optional[int] = Field(None, ge=0)


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


class RunConfig(StrictModel):
    seed: int = 0
    duration_s: float = Field(20.0, gt=0.0, le=86400.0)
    episodes: Optional[int] = Field(None, ge=1, le=100000)  # stop after this many (sim), else duration
    tick: TickConfig = TickConfig()
    driver: DriverConfig = DriverConfig()
    policy: PolicyConfig = PolicyConfig()
    actor: ActorConfig = ActorConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    shield: ShieldSection = ShieldSection()
    plots: bool = True


def make_driver(cfg: RunConfig) -> Any:
    from rtctl.drivers.sim_arm import SimArmDriver

    d = cfg.driver
    return SimArmDriver(task=d.task, rate_hz=cfg.tick.rate_hz, seed=cfg.seed, image=d.image,
                        episode_s=d.episode_s, fail_read_at_tick=d.fail_read_at_tick,
                        fail_write_at_tick=d.fail_write_at_tick)


def scheduler_factory(cfg: SchedulerConfig, horizon: int, low: np.ndarray, high: np.ndarray):
    merge = make_merge(cfg.merge, blend_ticks=cfg.blend_ticks)
    # One estimator for the whole run: the delay belongs to the inference path, not to an episode.
    delay = DelayEstimator(cfg.delay_window, cfg.delay_percentile, cfg.delay_warmup, cfg.delay_ticks)

    def make() -> ChunkScheduler:
        return ChunkScheduler(cfg.mode, horizon, cfg.exec_steps, low, high, q=cfg.q, merge=merge,
                              delay=delay, max_in_flight=cfg.max_in_flight)
    return make


def summarize(loop: ControlLoop, stats: Any, wall_s: float, extra: dict) -> dict:
    eps = loop.episodes
    jumps, steps = np.asarray(loop.seam_jumps), np.asarray(loop.inside_steps)
    med_step = float(np.median(steps)) if steps.size else float("nan")
    whack = getattr(loop.driver, "task", "") == "whack"
    reactions = [r for e in eps for r in e.reactions_s] if whack else []
    lat = getattr(loop.client, "latencies_s", [])
    out = {
        **stats.summary(),
        "wall_s": wall_s,
        "episodes": len(eps),
        "success_rate": float(np.mean([e.success for e in eps])) if eps else float("nan"),
        "task_time_s": float(np.nanmean([e.task_time_s for e in eps])) if eps else float("nan"),
        "seam_jump_p95": float(np.percentile(jumps, 95) / med_step) if jumps.size and med_step > 0 else None,
        "reaction_latency_s_p50": float(np.median(reactions)) if reactions else None,
        "reaction_latency_s_p95": float(np.percentile(reactions, 95)) if reactions else None,
        "inference_latency_ms_p50": float(np.median(lat) * 1e3) if lat else None,
        "inference_latency_ms_p95": float(np.percentile(lat, 95) * 1e3) if lat else None,
        "delay_steps_measured": loop.sched.delay.value,
        "counts": loop.counts(),
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }
    return out


def run(config_path: str | Path, out: Optional[str | Path] = None, duration_s: Optional[float] = None,
        overrides: Optional[dict] = None, progress: bool = True) -> Path:
    """Validate the config, then run; the run folder exists only once the config is known good."""
    ov = dict(overrides or {})
    if duration_s is not None:
        ov["duration_s"] = duration_s
    cfg = load_config(config_path, RunConfig, ov)
    from rtctl.policy_factory import resolve_checkpoint

    cfg.policy = resolve_checkpoint(cfg.policy)
    out_dir = Path(out) if out else default_run_dir("run")
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
    folder = RunFolder(out_dir, dump_config(cfg))
    if on_folder is not None:
        on_folder(folder)
    client = None
    stop = threading.Event()
    stopped_by: dict[str, str] = {}
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum, frame):  # Ctrl-C: finish this tick, then stop cleanly
            stop.set()
            stopped_by["reason"] = "interrupted (SIGINT)"
        old_handler = signal.signal(signal.SIGINT, on_sigint)
    t_start = time.monotonic()
    stats = None
    loop = None
    try:
        if cfg.actor.enabled:
            from rtctl.policy_actor import RayActorClient
            import ray

            if not ray.is_initialized():
                # "local" always starts this run's own cluster (never joins one left by someone else)
                ray.init(address=cfg.actor.address or "local", include_dashboard=False, log_to_driver=False,
                         **({} if cfg.actor.address else {"num_cpus": 2}))
            client = RayActorClient(cfg.policy, rate, cfg.actor, cfg.scheduler.max_in_flight,
                                    avoid_cpu=choose_cpu(cfg.tick.pin_cpu), on_event=folder.event)
            folder.event("policy_actor_started", **client.info)
        else:
            from rtctl.policy_factory import make_policy

            client = InlineClient(make_policy(cfg.policy, rate), delay_ticks=0)
        driver.connect()
        if cfg.actor.enabled:
            client.warm_up(driver.read())
        loop = ControlLoop(driver, scheduler_factory(cfg.scheduler, cfg.policy.horizon, driver.spec.action_low,
                                                      driver.spec.action_high), client, rate, cfg.episodes,
                           shield=shield, on_event=folder.event if task == "whack" else None)
        n_ticks = int(math.ceil(cfg.duration_s * rate))
        stats = TickStats(rate)
        bar = _progress(n_ticks, progress)
        t0_ns = time.monotonic_ns()

        def work(timing) -> bool:
            return (not stop.is_set()) and loop.tick(timing.index)

        def done(timing, end_ns, missed) -> None:
            row = loop.last_row
            if row is not None:
                row.update(t_sched_ms=(timing.scheduled_ns - t0_ns) / 1e6, t_start_ms=(timing.start_ns - t0_ns) / 1e6,
                           t_end_ms=(end_ns - t0_ns) / 1e6, period_err_us=abs(timing.start_ns - timing.scheduled_ns) / 1e3,
                           work_us=(end_ns - timing.start_ns) / 1e3, miss=missed)
                folder.log(row)
            if bar is not None and timing.index % max(1, int(rate)) == 0:
                bar.n = timing.index
                bar.refresh()

        stats = run_loop(cfg.tick, work, max_ticks=n_ticks, on_tick_done=done, stats=stats)
        if bar is not None:
            bar.close()
    except BaseException as err:  # driver fault, Ctrl-C during set-up, anything: stop safely and say so
        stopped_by["reason"] = f"{type(err).__name__}: {err}"
        folder.event("stopped", reason=stopped_by["reason"])
        raise
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        _safe_stop(driver, folder)
        if client is not None:
            client.close()
        summary = {"stopped_by": stopped_by.get("reason", "completed")}
        if loop is not None:
            loop.flush_reactions()
            summary = summarize(loop, stats or TickStats(rate), time.monotonic() - t_start,
                                {"stopped_by": stopped_by.get("reason", "completed"),
                                 "restarts": getattr(client, "restarts", 0),
                                 "mode": cfg.scheduler.mode, "task": task,
                                 "shield": shield.counts() if shield is not None else None,
                                 **(extra_summary() if extra_summary is not None else {})})
        folder.close(summary)
        if cfg.plots and loop is not None:
            from rtctl.report.plots import plot_run

            plot_run(out_dir)
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
