"""Delay and drop injection: one model, used in the vectorised sim for training and on the real bus for trials.

`DelayInjector` draws per-message delays (seconds) and drops from the configured model. Two consumers hold the
in-flight messages: `StepDelayLine` (pure numpy, indexed by control step, no sockets: the training sim) and
`TimedDelayQueue` (wall clock: a receiver holds each accepted message until its delay has passed). Both keep,
per receiver and sender, the newest message that has arrived, like the real neighbour table.
"""
from __future__ import annotations

import heapq
import itertools
import math
from typing import Any

import numpy as np

from rtctl.v2v.config import InjectionConfig

MAX_REDRAWS = 32


class DelayInjector:
    def __init__(self, cfg: InjectionConfig, seed: int | None = None) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed if seed is None else seed)

    @property
    def max_delay_s(self) -> float:
        c = self.cfg
        return {"none": 0.0, "fixed": c.steps * c.dt_s, "uniform": c.hi_steps * c.dt_s,
                "truncated_gaussian": c.hi_s}[c.kind]

    def delays_s(self, shape: tuple[int, ...] | int) -> np.ndarray:
        c = self.cfg
        if c.kind == "none":
            return np.zeros(shape)
        if c.kind == "fixed":
            return np.full(shape, c.steps * c.dt_s)
        if c.kind == "uniform":
            return self.rng.integers(c.lo_steps, c.hi_steps + 1, size=shape) * c.dt_s
        d = self.rng.normal(c.mean_s, c.std_s, size=shape)
        for _ in range(MAX_REDRAWS):  # truncation by redraw keeps the shape of the Gaussian inside [lo, hi]
            out = (d < c.lo_s) | (d > c.hi_s)
            if not out.any():
                break
            d[out] = self.rng.normal(c.mean_s, c.std_s, size=int(out.sum()))
        return np.clip(d, c.lo_s, c.hi_s)

    def drops(self, shape: tuple[int, ...] | int) -> np.ndarray:
        if self.cfg.drop_p == 0.0:
            return np.zeros(shape, dtype=bool)
        return self.rng.random(shape) < self.cfg.drop_p


class StepDelayLine:
    """Every agent broadcasts its state each step; receiver i sees sender j's newest arrived message.

    `step(t, states)` with states (batch, n, d) returns (received (batch, n, n, d), age_s (batch, n, n)):
    received[b, i, j] is j's state as i last heard it, measured age_s ago (inf and NaN before the first
    arrival). The diagonal is each agent's own current state, age 0. Steps must be called with t = 0, 1, 2...
    """

    def __init__(self, injector: DelayInjector, n_agents: int, state_dim: int, batch: int = 1) -> None:
        self.inj = injector
        self.n, self.d, self.batch = n_agents, state_dim, batch
        self.dt = injector.cfg.dt_s
        self.window = int(math.ceil(injector.max_delay_s / self.dt - 1e-9)) + 1  # steps a message can be in flight
        self.reset()

    def reset(self) -> None:
        b, n, w = self.batch, self.n, self.window
        self._states = np.zeros((w, b, n, self.d))
        self._arrive = np.full((w, b, n, n), np.inf)  # arrival, in steps, of the message sent in each slot
        self._sent = np.full(w, -1, dtype=np.int64)  # step each slot was sent at
        self._latest = np.full((b, n, n), -1, dtype=np.int64)  # send step of the newest arrived message
        self._held = np.full((b, n, n, self.d), np.nan)
        self._t = -1

    def step(self, t: int, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        states = np.asarray(states, dtype=float)
        if states.shape != (self.batch, self.n, self.d):
            raise ValueError(f"states shape {states.shape}, expected {(self.batch, self.n, self.d)}")
        if t != self._t + 1:
            raise ValueError(f"step {t} after step {self._t}: steps must be consecutive (call reset())")
        self._t = t
        slot = t % self.window
        self._states[slot] = states
        self._sent[slot] = t
        shape = (self.batch, self.n, self.n)  # [b, receiver, sender]
        arrive = t + self.inj.delays_s(shape) / self.dt
        arrive[self.inj.drops(shape)] = np.inf
        self._arrive[slot] = arrive

        arrived = self._arrive <= t + 1e-9  # (w, b, i, j)
        newest = np.where(arrived, self._sent[:, None, None, None], -1).max(axis=0)
        fresh = newest > self._latest
        if fresh.any():
            bi, ii, jj = np.nonzero(fresh)
            src = newest[bi, ii, jj] % self.window
            self._held[bi, ii, jj] = self._states[src, bi, jj]
            self._latest[fresh] = newest[fresh]
        received = self._held.copy()
        age = np.where(self._latest >= 0, (t - self._latest) * self.dt, np.inf)
        own = np.arange(self.n)
        received[:, own, own] = states
        age[:, own, own] = 0.0
        return received, age


class TimedDelayQueue:
    """Wall-clock holding of messages: `push` at receipt, `due` returns those whose delay has passed, in order."""

    def __init__(self, injector: DelayInjector) -> None:
        self.inj = injector
        self._heap: list[tuple[int, int, Any]] = []
        self._count = itertools.count()
        self.dropped = 0

    def push(self, item: Any, now_ns: int) -> bool:
        """False if the injector dropped it."""
        if self.inj.drops(1)[0]:
            self.dropped += 1
            return False
        release = now_ns + int(self.inj.delays_s(1)[0] * 1e9)
        heapq.heappush(self._heap, (release, next(self._count), item))
        return True

    def due(self, now_ns: int) -> list[Any]:
        out = []
        while self._heap and self._heap[0][0] <= now_ns:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)
