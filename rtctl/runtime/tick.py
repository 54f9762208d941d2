"""The fixed-rate control tick.

Ticks run on an absolute monotonic schedule (scheduled start k = t0 + k·period, never "now + period", so
errors do not accumulate): sleep until a short spin window before the scheduled start, then spin on the
clock. Definitions used everywhere in rtctl:

* period error = |actual tick start − scheduled tick start|
* deadline miss = a tick whose work ends after the next tick's scheduled start

A late tick starts at once (its lateness is its period error); when a tick overruns by more than a whole
period, the slots it covered are skipped (counted), so the loop never bursts to catch up.

p99 measures, each kept because `rtctl bench tick` measured it (docs/runtime.md): pin the tick thread to one core
and move the process's other threads off it,
pause the cyclic garbage collector inside the loop (objects made before the loop are frozen, so the pause
costs no growth from them), shorten `sys.setswitchinterval` so a helper thread (log writer, Ray's client
threads) hands the GIL back quickly. Inference never runs in this process: it lives in a Ray actor.
"""
from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Optional, Sequence, Union

import numpy as np
from pydantic import Field

from rtctl.config import StrictModel


class TickConfig(StrictModel):
    rate_hz: float = Field(30.0, ge=30.0, le=500.0)
    spin_us: float = Field(300.0, ge=0.0, le=5000.0)  # busy-wait window before each scheduled start
    pin_cpu: Union[int, Literal["auto", "off"]] = "auto"  # auto = the last CPU this process may use
    gc_pause: bool = True
    switch_interval_us: Optional[float] = Field(500.0, ge=50.0, le=10000.0)  # None keeps Python's 5 ms


@dataclass
class TickTiming:
    """Per-tick timing the loop hands to the work function and records (ns, monotonic)."""

    index: int
    scheduled_ns: int
    start_ns: int
    period_ns: int

    @property
    def next_scheduled_ns(self) -> int:
        return self.scheduled_ns + self.period_ns


@dataclass
class TickStats:
    """What a loop did; arrays are per tick in microseconds."""

    rate_hz: float
    period_err_us: list[float] = field(default_factory=list)
    work_us: list[float] = field(default_factory=list)
    misses: int = 0
    skipped_slots: int = 0
    pinned_cpu: Optional[int] = None

    def summary(self) -> dict:
        err = np.asarray(self.period_err_us) / 1000.0
        work = np.asarray(self.work_us) / 1000.0
        pct = (lambda a, q: float(np.percentile(a, q)) if a.size else float("nan"))
        return {
            "rate_hz": self.rate_hz,
            "ticks": int(err.size),
            "period_err_p50_ms": pct(err, 50),
            "period_err_p99_ms": pct(err, 99),
            "period_err_max_ms": float(err.max()) if err.size else float("nan"),
            "work_p50_ms": pct(work, 50),
            "work_p99_ms": pct(work, 99),
            "deadline_misses": self.misses,
            "skipped_slots": self.skipped_slots,
            "pinned_cpu": self.pinned_cpu,
        }


def choose_cpu(pin: Union[int, str]) -> Optional[int]:
    if pin == "off" or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if pin == "auto":
        return allowed[-1] if len(allowed) > 1 else None
    return int(pin) if int(pin) in allowed else None


@contextlib.contextmanager
def realtime_measures(cfg: TickConfig, share: Sequence[int] = ()) -> Iterator[Optional[int]]:
    """Apply pinning / GC pause / switch interval to the calling thread; undo all on exit. Threads in
    ``share`` (a driver's bus I/O thread) keep every allowed CPU, the tick's included: they write to the bus
    a few ms after each tick starts, while the tick sleeps, so its core is idle exactly then; pushed off it,
    they shared one core with the policy actor (measured on the emulated SO-101, p99 |bus interval −
    period| at the emulator 3.36 → 1.84–2.79 ms)."""
    cpu = choose_cpu(cfg.pin_cpu)
    moved: list[int] = []
    old_affinity = os.sched_getaffinity(0) if cpu is not None else None
    old_switch = sys.getswitchinterval()
    gc_was_enabled = gc.isenabled()
    try:
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})  # pid 0 = the calling thread on Linux
                moved = _move_other_threads(old_affinity - {cpu})
                for tid in share:
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(tid, old_affinity)
            except OSError:
                cpu = None
        if cfg.switch_interval_us is not None:
            sys.setswitchinterval(cfg.switch_interval_us * 1e-6)
        if cfg.gc_pause:
            gc.collect()
            gc.freeze()
            gc.disable()
        yield cpu
    finally:
        if cfg.gc_pause:
            gc.unfreeze()
            if gc_was_enabled:
                gc.enable()
        sys.setswitchinterval(old_switch)
        if old_affinity is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, old_affinity)
            _move_other_threads(old_affinity, only=moved)


def _move_other_threads(cpus: set, only: Optional[list] = None) -> list[int]:
    """Give this process's other threads (log writer, Ray's client threads) the cores the tick does not
    use, so the tick thread has its core to itself. Returns the thread ids moved."""
    me = threading.get_native_id()
    moved = []
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")] if only is None else only
    except OSError:
        return moved
    for tid in tids:
        if tid == me or not cpus:
            continue
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)
            moved.append(tid)
    return moved


@dataclass(frozen=True)
class Clock:
    """Where the loop gets time: the real monotonic clock, or a test's fake one (the loop's rules are then
    checked deterministically, without depending on how busy the machine is)."""

    now_ns: Callable[[], int] = time.monotonic_ns
    sleep_s: Callable[[float], None] = time.sleep


REAL_CLOCK = Clock()


def wait_until(deadline_ns: int, spin_ns: int, clock: Clock = REAL_CLOCK) -> None:
    """Sleep to within ``spin_ns`` of the deadline, then spin. Sleep granularity on Linux is ~60 µs."""
    now = clock.now_ns()
    if deadline_ns - now > spin_ns:
        clock.sleep_s((deadline_ns - now - spin_ns) * 1e-9)
    while clock.now_ns() < deadline_ns:
        pass


def run_loop(
    cfg: TickConfig,
    work: Callable[[TickTiming], bool],
    max_ticks: Optional[int] = None,
    duration_s: Optional[float] = None,
    on_tick_done: Optional[Callable[[TickTiming, int, bool], None]] = None,
    stats: Optional[TickStats] = None,
    share_cpu_threads: Sequence[int] = (),
    clock: Clock = REAL_CLOCK,
) -> TickStats:
    """Call ``work(timing)`` at ``cfg.rate_hz`` until it returns False, ``max_ticks`` or ``duration_s``.

    ``on_tick_done(timing, end_ns, missed)`` lets the caller log the finished tick's timing.
    Exceptions from ``work`` propagate after the measures are undone (the caller stops the robot); pass
    ``stats`` to keep the timing of the ticks that did run.
    """
    period = int(round(1e9 / cfg.rate_hz))
    spin = int(cfg.spin_us * 1000)
    if max_ticks is None and duration_s is not None:
        max_ticks = int(round(duration_s * cfg.rate_hz))
    stats = stats if stats is not None else TickStats(rate_hz=cfg.rate_hz)
    with realtime_measures(cfg, share_cpu_threads) as cpu:
        stats.pinned_cpu = cpu
        t0 = clock.now_ns() + period
        slot = 0
        k = 0
        while max_ticks is None or k < max_ticks:
            scheduled = t0 + slot * period
            wait_until(scheduled, spin, clock)
            start = clock.now_ns()
            timing = TickTiming(k, scheduled, start, period)
            keep_going = work(timing)
            end = clock.now_ns()
            missed = end > scheduled + period
            stats.period_err_us.append(abs(start - scheduled) / 1000.0)
            stats.work_us.append((end - start) / 1000.0)
            if missed:
                stats.misses += 1
                late_slots = (end - scheduled) // period - 1
                if late_slots > 0:
                    stats.skipped_slots += int(late_slots)
                    slot += int(late_slots)
            if on_tick_done is not None:
                on_tick_done(timing, end, missed)
            slot += 1
            k += 1
            if keep_going is False:
                break
    return stats
