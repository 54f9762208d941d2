"""Inference clients: where chunks come from, behind one submit/poll interface the scheduler drives.

* `InlineClient` runs the policy in this process and releases each result after a simulated delay in
  ticks — the virtual clock (deterministic: same seed, same figures).
* `RayActorClient` (rtctl.runtime.ray_client) sends the observation to a Ray actor and polls without blocking —
  the wall clock.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Union, runtime_checkable

import numpy as np

from rtctl.chunking.scheduler import Arrival, Request

DelayModel = Union[int, Callable[[np.random.Generator], int]]


@runtime_checkable
class InferenceClient(Protocol):
    """Where the control loop gets chunks: ``submit`` a request (returns results already available, e.g. an
    inline policy with no delay), ``poll`` for results that arrived since (never waits), ``reset`` drops
    requests of a finished episode, ``close`` ends the policy's host. Failed requests come back as
    ``Arrival(id, None)``."""

    def submit(self, req: Request, obs: dict) -> list[Arrival]: ...

    def poll(self, tick: int) -> list[Arrival]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


class InlineClient:
    def __init__(self, policy: Any, delay_ticks: DelayModel = 0, seed: int = 0) -> None:
        self.policy = policy
        self.delay_ticks = delay_ticks
        self.rng = np.random.default_rng(seed)
        self.waiting: list[tuple[int, int, np.ndarray]] = []  # (ready tick, request id, actions)

    def _delay(self) -> int:
        d = self.delay_ticks(self.rng) if callable(self.delay_ticks) else self.delay_ticks
        return max(0, int(d))

    def submit(self, req: Request, obs: dict) -> list[Arrival]:
        actions = np.asarray(self.policy.predict_chunk(obs).actions, float)
        ready = req.launch_tick + self._delay()
        if ready <= req.launch_tick:
            return [Arrival(req.id, actions)]
        self.waiting.append((ready, req.id, actions))
        return []

    def poll(self, tick: int) -> list[Arrival]:
        due = [w for w in self.waiting if w[0] <= tick]
        if due:
            self.waiting = [w for w in self.waiting if w[0] > tick]
        return [Arrival(rid, a) for _, rid, a in sorted(due, key=lambda w: (w[0], w[1]))]

    def reset(self) -> None:
        self.waiting.clear()

    def close(self) -> None:
        pass


def fixed_delay(ticks: int) -> DelayModel:
    return ticks


def jittered_delay(mean_ticks: float, std_ticks: float, low: int, high: int) -> DelayModel:
    """Truncated-Gaussian delay in ticks, for latency that varies from chunk to chunk."""
    def draw(rng: np.random.Generator) -> int:
        return int(np.clip(round(rng.normal(mean_ticks, std_ticks)), low, high))
    return draw
