"""Online estimate of the inference delay Δ in ticks (high percentile over a time window, warm-up excluded)."""
from __future__ import annotations

import math
from collections import deque
from typing import Optional


class DelayEstimator:
    """Δ̂ = ceil(p-th percentile of the delays measured in the last ``window_s`` seconds of ticks).

    * Time window, not a sample count: a launch happens once per chunk in async_rollforward (every ~25
      ticks), so 20 samples spanned ~17 s and one 0.8 s actor stall held Δ̂ at 24 ticks for 137 ticks. A
      sample older than ``window_s`` is forgotten, except that the newest one is always kept (a window with
      no launch in it says nothing new). ``max_samples`` bounds the memory.
    * Warm-up: the first ``warmup`` delays pay for lazy initialisation (model load, torch warm-up, Ray worker
      start) and are excluded; LeRobot's RTC running-max never forgets them (PR #4223), which over-delays every
      later chunk. Until a real sample exists Δ̂ is ``initial`` (set it from a measured warm-up round trip,
      `set_initial`) or, if larger, the latest warm-up delay: start late rather than starve.
    * ``override`` pins Δ̂ (a configured delay is an override).

    The estimator keeps its own tick counter (`advance()` once per control tick, across episodes), so the
    window means wall time in ticks even though each episode's scheduler restarts at tick 0.
    """

    def __init__(self, window: int = 20, percentile: float = 95.0, warmup: int = 2,
                 override: Optional[int] = None, initial: int = 1, window_s: Optional[float] = 2.0,
                 rate_hz: float = 30.0) -> None:
        self.samples: deque[tuple[int, int]] = deque(maxlen=window)  # (tick measured, delay ticks)
        self.percentile = percentile
        self.warmup = warmup
        self.override = override
        self.initial = initial
        self.window_ticks = None if window_s is None else max(1, int(round(window_s * rate_hz)))
        self.now = 0
        self.seen = 0
        self.last_warmup: Optional[int] = None

    def set_initial(self, ticks: int) -> None:
        self.initial = max(0, int(ticks))

    def advance(self, ticks: int = 1) -> None:
        self.now += ticks

    def record(self, delay_ticks: int) -> None:
        self.seen += 1
        if self.seen <= self.warmup:
            self.last_warmup = int(delay_ticks)
            return
        self.samples.append((self.now, int(delay_ticks)))
        self._expire()

    def _expire(self) -> None:
        if self.window_ticks is None:
            return
        while len(self.samples) > 1 and self.now - self.samples[0][0] > self.window_ticks:
            self.samples.popleft()

    @property
    def value(self) -> int:
        if self.override is not None:
            return self.override
        self._expire()
        if not self.samples:
            return max(self.initial, self.last_warmup or 0)
        s = sorted(d for _, d in self.samples)
        rank = max(0, math.ceil(self.percentile / 100.0 * len(s)) - 1)
        return max(0, s[rank])
