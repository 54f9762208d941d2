"""Bus-level command timing: when each command left for the hardware and how old it was then.

Figures about commands are measured where they leave for the hardware (the driver's write to the bus), from
`time.monotonic_ns()` stamps, never from tick counts. Per command a driver knows three moments: ``stamp`` (the
start of the control tick it belongs to), ``post`` (when the tick handed it to `write()`) and ``write`` (when its
bytes were written to the bus). Definitions:

* interval = time between consecutive bus writes of a command; its error = |interval − period|
* age = write − stamp (tick start → bytes written)
* replaced = posted but overwritten by a newer command before it was sent (latest-value hand-off: a stale
  command is never queued)

Storage (a run may last hours): `BusStats` keeps preallocated ring buffers of the last ``window`` writes
(percentiles are over that window; 2¹⁶ writes = 36 min at 30 Hz, ~2 MB) and whole-run counters (posted, sent,
replaced, intervals over 1.5 periods, largest interval and age), so memory never grows.
"""
from __future__ import annotations

import threading
from typing import Optional

import numpy as np

KEYS = ("posted", "sent", "replaced", "interval_ms_p50", "interval_ms_p99", "interval_ms_max",
        "interval_err_ms_p99", "intervals_over_1p5_periods", "age_ms_p50", "age_ms_p99", "age_ms_max")


def _pct(a: np.ndarray, q: float) -> Optional[float]:
    return float(np.percentile(a, q)) if a.size else None


def interval_summary(t_ns: np.ndarray, period_s: float) -> dict:
    """The interval keys of `KEYS` for a sorted series of write (or receipt) times in ns."""
    t = np.asarray(t_ns, dtype=np.int64)
    iv = np.diff(t) / 1e6 if t.size > 1 else np.zeros(0)
    period_ms = period_s * 1e3
    return {"interval_ms_p50": _pct(iv, 50), "interval_ms_p99": _pct(iv, 99),
            "interval_ms_max": float(iv.max()) if iv.size else None,
            "interval_err_ms_p99": _pct(np.abs(iv - period_ms), 99),
            "intervals_over_1p5_periods": int(np.count_nonzero(iv > 1.5 * period_ms))}


def load_times(path: str) -> np.ndarray:
    """The ``t_ns`` of every line of an emulator's JSON-lines bus log (`rtctl.drivers.emulators.jsonl_log`);
    a torn last line (the emulator was killed mid-write) is skipped."""
    import json

    out = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
                if "fault" not in rec:  # injected faults are logged in the same file (`JsonlLog.fault`)
                    out.append(int(rec["t_ns"]))
            except (ValueError, KeyError):
                continue
    return np.asarray(out, dtype=np.int64)


def log_summary(path: str, period_s: float) -> dict:
    """``{"received": n, **interval_summary}`` of an emulator's bus log: the emulator-side truth."""
    t = np.sort(load_times(path))
    return {"received": int(t.size), **interval_summary(t, period_s)}


class BusStats:
    """Counters and ring buffers for one driver's command path. `post()` is called by the tick thread,
    `take()` and `wrote()` by the I/O thread, `summary()` by anyone (it copies under the lock)."""

    def __init__(self, period_s: float, window: int = 1 << 16) -> None:
        self.period_ns = int(round(period_s * 1e9))
        self.window = int(window)
        self._lock = threading.Lock()
        self._write = np.zeros(self.window, np.int64)  # bus write time of every write
        self._interval = np.zeros(self.window, np.int64)  # ns since the previous write (slot 0 of a run: unused)
        self._stamp = np.zeros(self.window, np.int64)  # per write: the tick start of the command written
        self._post = np.zeros(self.window, np.int64)
        self._new = np.zeros(self.window, bool)  # the first write of this command (not a re-send)
        self.writes = 0  # every command write on the bus (a driver that re-sends counts each)
        self.posted = self.sent = self.replaced = 0
        self._last_write: Optional[int] = None
        self._taken_version = 0
        self._over = 0
        self._max_interval = 0
        self._max_age = 0

    def post(self) -> None:
        self.posted += 1  # only the tick thread writes this counter

    def take(self, version: int) -> None:
        """The I/O thread took `LatestValue` version ``version`` to send: the versions it skipped were
        replaced by a newer command before they could be sent."""
        if version > self._taken_version:
            with self._lock:
                self.replaced += max(0, version - self._taken_version - 1)
                self._taken_version = version

    def wrote(self, write_ns: int, stamp_ns: int, post_ns: int, new: bool = True) -> None:
        """A command's bytes were written at ``write_ns``; ``new`` is False for a re-send of the same command."""
        with self._lock:
            i = self.writes % self.window
            interval = write_ns - self._last_write if self._last_write is not None else 0
            self._write[i], self._interval[i], self._stamp[i], self._post[i], self._new[i] = (
                write_ns, interval, stamp_ns, post_ns, new)
            if self._last_write is not None:
                self._max_interval = max(self._max_interval, interval)
                self._over += interval * 2 > 3 * self.period_ns
            self._last_write = write_ns
            self.writes += 1
            if new:
                self.sent += 1
                self._max_age = max(self._max_age, write_ns - stamp_ns)

    def timeline(self) -> dict[str, np.ndarray]:
        """The last ``window`` writes in order: write, stamp, post (ns) and new (bool); for analysis."""
        with self._lock:
            order = np.arange(max(0, self.writes - self.window), self.writes) % self.window
            return {"write_ns": self._write[order].copy(), "stamp_ns": self._stamp[order].copy(),
                    "post_ns": self._post[order].copy(), "new": self._new[order].copy()}

    def summary(self) -> dict:
        """Exactly `KEYS`: counts and extremes over the whole run, percentiles over the window (ms)."""
        with self._lock:
            order = np.arange(max(0, self.writes - self.window), self.writes) % self.window
            first = 1 if self.writes <= self.window else 0  # the first write of a run has no interval
            iv = self._interval[order[first:]] / 1e6
            sel = order[self._new[order]]  # first writes of commands (not re-sends)
            age = (self._write[sel] - self._stamp[sel]) / 1e6
            counts = (self.posted, self.sent, self.replaced, self._over, self._max_interval, self._max_age)
        posted, sent, replaced, over, max_iv, max_age = counts
        period_ms = self.period_ns / 1e6
        return {"posted": posted, "sent": sent, "replaced": replaced,
                "interval_ms_p50": _pct(iv, 50), "interval_ms_p99": _pct(iv, 99),
                "interval_ms_max": max_iv / 1e6 if iv.size else None,
                "interval_err_ms_p99": _pct(np.abs(iv - period_ms), 99),
                "intervals_over_1p5_periods": over,
                "age_ms_p50": _pct(age, 50), "age_ms_p99": _pct(age, 99),
                "age_ms_max": max_age / 1e6 if sent else None}


class SendSchedule:
    """When an I/O thread writes a command: at a fixed delay after its tick's *scheduled* start, not when the
    tick happens to post it, so the bus interval does not inherit the tick's start jitter and the variance of
    its work before `write()` (both measured at the emulator: the larger part of the bus jitter).

    The tick's grid is recovered from the stamps (a tick never starts before its scheduled time, so the
    earliest phase seen over the last ``grid_window`` stamps is the grid's); the delay is
    ``p99(post − scheduled)`` over the last ``delay_window`` commands + ``margin_s``, kept within
    [``margin_s``, ``max_delay_frac``·period], or a fixed ``delay_s``. A command posted after its release
    time goes at once; a command is never held past stamp + delay (≤ half a period by default).
    """

    def __init__(self, period_s: float, delay_s: Optional[float] = None, margin_s: float = 0.001,
                 max_delay_frac: float = 0.5, grid_window: int = 64, delay_window: int = 512) -> None:
        self.period_ns = int(round(period_s * 1e9))
        self.fixed_ns = None if delay_s is None else int(delay_s * 1e9)
        self.margin_ns = int(margin_s * 1e9)
        self.max_ns = int(max_delay_frac * self.period_ns)
        self._ref: Optional[int] = None
        self._phase = np.zeros(grid_window, np.int64)  # per stamp: its phase relative to the first stamp
        self._late = np.zeros(delay_window, np.int64)  # per command: post − estimated scheduled start
        self._n = 0
        self.delay_ns = self.fixed_ns if self.fixed_ns is not None else self.margin_ns

    def release_ns(self, stamp_ns: int, post_ns: int) -> int:
        """The time to write the command of the tick that started at ``stamp_ns`` and posted at ``post_ns``."""
        p = self.period_ns
        if self._ref is None:
            self._ref = stamp_ns
        phase = (stamp_ns - self._ref + p // 2) % p - p // 2  # in [−p/2, p/2)
        if self._n and phase < self._phase[:min(self._n, self._phase.size)].min() - p // 4:
            phase += p  # a tick never starts early: this one was more than half a period late
        self._phase[self._n % self._phase.size] = phase
        grid = self._phase[:min(self._n + 1, self._phase.size)].min()
        scheduled = stamp_ns - (phase - grid)
        self._late[self._n % self._late.size] = post_ns - scheduled
        self._n += 1
        if self.fixed_ns is None:
            late = self._late[:min(self._n, self._late.size)]
            self.delay_ns = int(min(self.max_ns, max(self.margin_ns, np.percentile(late, 99) + self.margin_ns)))
        return max(post_ns, scheduled + self.delay_ns)
