"""Online estimate of the inference delay Δ in ticks (windowed high percentile, warm-up excluded)."""
from __future__ import annotations

import math
from collections import deque
from typing import Optional


class DelayEstimator:
    """Δ̂ = ceil(p-th percentile of the last `window` measured delays), ignoring the first `warmup`.

    The first requests pay for lazy initialisation (model load, torch warm-up, Ray worker start); LeRobot's
    RTC running-max never forgets them (PR #4223), which over-delays every later chunk. A window also lets Δ̂
    come back down when the load goes away. ``override`` pins Δ̂ (a configured delay is an override).
    """

    def __init__(self, window: int = 20, percentile: float = 95.0, warmup: int = 2,
                 override: Optional[int] = None, initial: int = 1) -> None:
        self.samples: deque[int] = deque(maxlen=window)
        self.percentile = percentile
        self.warmup = warmup
        self.override = override
        self.initial = initial
        self.seen = 0

    def record(self, delay_ticks: int) -> None:
        self.seen += 1
        if self.seen <= self.warmup:
            return
        self.samples.append(int(delay_ticks))

    @property
    def value(self) -> int:
        if self.override is not None:
            return self.override
        if not self.samples:
            return self.initial
        s = sorted(self.samples)
        rank = max(0, math.ceil(self.percentile / 100.0 * len(s)) - 1)
        return max(0, s[rank])
