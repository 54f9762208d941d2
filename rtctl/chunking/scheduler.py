"""The chunk scheduler: turns a stream of action chunks into one command per tick.

It is a pure state machine over integer ticks — no clocks, no threads, no Ray — so the virtual-clock
benchmark and the wall-clock runtime share it exactly. Each tick the caller hands it the observation and
whatever inference results arrived; it returns the command for this tick and, at most, one new inference
request (observation to condition on + the tick its row 0 is meant for).

Modes (H = horizon, K = actions executed per chunk, q = action quantization, E = K // q ticks, Δ̂ = delay):

* ``sync``               infer, hold until the chunk arrives, run E ticks of it, infer again.
* ``async``              naive async (LeRobot): at E − Δ̂ ticks into a chunk infer on the *current* state;
                         on arrival drop the rows whose ticks already went by, switch.
* ``async_rollforward``  VLASH: at E − Δ̂ ticks infer on the state the arm will have at the switch tick —
                         the last command committed before it — and switch exactly there; if the chunk is
                         late the arm holds that command, which is the state the chunk was conditioned on.
* ``replan_rollforward`` beyond VLASH: launch continuously (up to N in flight, spaced Δ̂/N ticks), each
                         request rolled forward Δ̂ ticks and aligned to its execution tick on arrival.

Rebase at the switch (both rollforward modes): a request is conditioned on the plan committed when it
launched, but requests still in flight may commit rows before it starts (replan: N chains that would
otherwise lock in phase and turn a motion into a staircase, 0 0 0 .17 rad per tick), and the shield may
have changed what was sent. So when a chunk switches in, it is translated by (command actually sent on
the tick before its first row − the state its first row was computed from: the conditioning state, or
the chunk's own row before the first kept one when rows were dropped); the offset fades out linearly
over the chunk, so row 0 continues the sent command and the last row is where the policy aimed. When
nothing changed in between the offset is 0 (async_rollforward with one request in flight, no shield).

Disturbance rule (``disturbance_bound`` per joint, off when None): the arm was pushed or blocked when the
measured state lies further than the bound, on any joint, outside the range of the last 3 sent commands
(a servo is somewhere along its recent commanded path, within its tracking error, which is far below the
bound; the range, not the last command alone, because after a commanded jump the servo is still on its
way: measured with naive async's seams, comparing with the last command alone fired 8–10 times a minute). Then the next request is conditioned on the measured state and launched
at once (past the in-flight cap by one), its row 0 runs on arrival and it is not rebased (it is meant to
start where the arm is); while disturbed every request is conditioned on the measured state. The rule
ends when every joint has stayed within half the bound for ``recover_ticks`` ticks in a row (a hand that
still holds the arm pulls it out of bounds again as soon as the plan moves on, which would otherwise
start and end the rule every few ticks); ``TickOutput.disturbance`` says "start"/"end", and
``disturbance_error`` keeps the per-joint error that started it.

Drop rule for a result arriving at tick a for start tick s < a: drop as many rows as ticks in [s, a) on
which the arm actually advanced along the plan (holds don't count), so each row still lands on the tick it
was computed for. A tick with no planned row holds the last applied command: never a jump to a guess.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping, Optional

import numpy as np

from rtctl.chunking.delay import DelayEstimator
from rtctl.chunking.merge import Merge, hard_switch

Mode = Literal["sync", "async", "async_rollforward", "replan_rollforward"]
MODES: tuple[str, ...] = ("sync", "async", "async_rollforward", "replan_rollforward")


@dataclass
class Request:
    id: int
    launch_tick: int
    start_tick: Optional[int]  # None: row 0 executes on arrival (sync, bootstrap, plan already exhausted)
    cond_state: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Arrival:
    request_id: int
    actions: Optional[np.ndarray]  # None = the inference failed (actor died, exception)


@dataclass
class TickOutput:
    command: np.ndarray
    hold: bool
    starved: bool  # holding because the next chunk is late
    seam: bool  # first tick of a newly switched-in chunk
    chunk_id: int
    chunk_row: int
    queue_depth: int  # planned ticks from this one on
    in_flight: int
    delay_est: int
    launched: Optional[Request] = None
    rejected: int = 0
    disturbance: Optional[str] = None  # "start" / "end" on the tick the disturbance rule changes state


def quantize(actions: np.ndarray, q: int, kind: str) -> np.ndarray:
    """Action quantization (VLASH): send every q-th absolute target, or the sum of q deltas."""
    if q == 1:
        return actions
    n = (len(actions) // q) * q
    if kind == "delta":
        return actions[:n].reshape(-1, q, actions.shape[1]).sum(axis=1)
    return actions[q - 1:n:q]


class ChunkScheduler:
    def __init__(
        self,
        mode: Mode,
        horizon: int,
        exec_steps: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
        q: int = 1,
        merge: Merge = hard_switch,
        delay: Optional[DelayEstimator] = None,
        max_in_flight: int = 2,
        action_kind: Literal["absolute", "delta"] = "absolute",
        limit_tolerance: float = 1e-3,
        state_key: str = "state",
        disturbance_bound: Optional[np.ndarray] = None,
        recover_ticks: int = 10,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown scheduler mode '{mode}' (known: {', '.join(MODES)})")
        if not 1 <= exec_steps <= horizon:
            raise ValueError(f"exec_steps must be in 1..horizon ({horizon}), got {exec_steps}")
        if exec_steps // q < 1:
            raise ValueError(f"exec_steps ({exec_steps}) // q ({q}) must be ≥ 1")
        self.mode = mode
        self.H, self.K, self.q = horizon, exec_steps, q
        self.E = exec_steps // q
        self.full = horizon // q
        self.low = np.asarray(action_low, float)
        self.high = np.asarray(action_high, float)
        self.tol = limit_tolerance
        self.merge = merge
        self.delay = delay or DelayEstimator()
        self.max_in_flight = max_in_flight if mode == "replan_rollforward" else 1
        self.kind = action_kind
        self.state_key = state_key
        self.disturbance_bound = None if disturbance_bound is None else np.asarray(disturbance_bound, float)
        self.disturbed = False
        self.recover_ticks = recover_ticks
        self._calm = 0  # consecutive ticks within half the bound while disturbed
        self._recent: deque = deque(maxlen=3)  # the last sent commands (disturbance rule)
        self.disturbance_error: Optional[np.ndarray] = None
        # plan: commands for ticks plan_start .. plan_start + len(plan) - 1
        self.plan_start = 0
        self.plan = np.zeros((0, len(self.low)))
        self.plan_chunk = np.zeros(0, dtype=np.int64)
        self.plan_row = np.zeros(0, dtype=np.int64)
        self.last_applied: Optional[np.ndarray] = None
        self.in_flight: dict[int, Request] = {}
        # (switch tick, request, rows, first row, the state the first row was computed from)
        self.pending: list[tuple[int, Request, np.ndarray, int, np.ndarray]] = []
        self.requests: dict[int, Request] = {}
        self.active_chunk = -1
        self.active_launch = -1
        self.chunk_started_tick = 0
        self.successor_launched = False
        self.last_launch_tick = -(10**9)
        self.advanced: dict[int, bool] = {}
        self.next_id = 0
        self.counts = {"chunks": 0, "rejected_chunks": 0, "failed_inferences": 0, "hold_ticks": 0,
                       "starved_ticks": 0, "stale_results": 0, "disturbances": 0, "disturbed_ticks": 0}

    # ----------------------------------------------------------------------------------------------
    def _rows_from(self, tick: int) -> int:
        return max(0, self.plan_start + len(self.plan) - tick)

    def _planned(self, tick: int) -> Optional[np.ndarray]:
        i = tick - self.plan_start
        return self.plan[i] if 0 <= i < len(self.plan) else None

    def _valid(self, actions: Any) -> Optional[str]:
        a = np.asarray(actions)
        if a.ndim != 2 or a.shape[1] != len(self.low) or a.shape[0] < self.K:
            return f"shape {a.shape}, expected (≥{self.K}, {len(self.low)})"
        if not np.all(np.isfinite(a)):
            return "non-finite values"
        if self.kind == "absolute" and (np.any(a < self.low - self.tol) or np.any(a > self.high + self.tol)):
            return "values outside the action limits"
        return None

    def _rollforward(self, tick: int, start: int, obs_state: np.ndarray) -> np.ndarray:
        """State at tick ``start``, computed from the commands actually applied: the last applied command
        plus the plan's remaining motion up to ``start`` (absolute targets), or the current state plus the
        committed deltas (delta actions). When the shield changed nothing, this is the plan's command at
        ``start − 1`` (VLASH); when it did, the plan is rebased on what the arm was really sent."""
        if self.kind == "absolute":
            planned = self._planned(start - 1)
            if planned is None:
                return (self.last_applied if self.last_applied is not None else obs_state).copy()
            before = self._planned(tick - 1)
            if self.last_applied is not None and before is not None:
                return planned + (self.last_applied - before)
            return planned.copy()
        i0 = max(0, start - 1 - self.plan_start)
        return obs_state + self.plan[: i0 + 1].sum(axis=0) if len(self.plan) else obs_state.copy()

    def _make_request(self, tick: int, obs: Mapping[str, Any]) -> tuple[Request, dict]:
        remaining = self._rows_from(tick)
        state = np.asarray(obs[self.state_key], float)
        if self.disturbed:
            start, cond = None, state
        elif self.mode == "sync" or remaining == 0:
            # Row 0 runs on arrival; the arm holds meanwhile, so the rollforward modes condition on the
            # held command and the others on the measured state.
            start = None
            held = self.mode.endswith("rollforward") and self.last_applied is not None
            cond = self.last_applied.copy() if held else state
        elif self.mode == "async":
            start, cond = tick, state
        elif self.mode == "async_rollforward":
            start = tick + remaining
            cond = self._rollforward(tick, start, state)
        else:  # replan_rollforward
            start = tick + min(self.delay.value, remaining)
            cond = self._rollforward(tick, start, state)
        req = Request(self.next_id, tick, start, cond, {"disturbance": True} if self.disturbed else {})
        self.next_id += 1
        policy_obs = dict(obs)
        policy_obs[self.state_key] = cond
        policy_obs["tick"] = start if start is not None else tick
        return req, policy_obs

    def _should_launch(self, tick: int) -> bool:
        if self.disturbed:  # one measured-state request at a time, past the cap by one
            return not any(r.meta.get("disturbance") for r in self.in_flight.values())
        if len(self.in_flight) >= self.max_in_flight:
            return False
        if self.pending and self.mode != "replan_rollforward":
            return False
        remaining = self._rows_from(tick)
        if remaining == 0:
            return not self.in_flight
        if self.mode == "sync":
            return False
        if self.mode in ("async", "async_rollforward"):
            left_in_window = self.E - (tick - self.chunk_started_tick)
            return not self.successor_launched and left_in_window <= self.delay.value
        spacing = max(1, math.ceil(self.delay.value / self.max_in_flight))
        return tick - self.last_launch_tick >= spacing

    def _accept(self, tick: int, arrival: Arrival) -> int:
        req = self.in_flight.pop(arrival.request_id, None)
        if req is None:
            return 0
        if arrival.actions is None:  # not a delay measurement: a dead actor's failures come late or at once
            self.counts["failed_inferences"] += 1
            self.successor_launched = False
            return 0
        self.delay.record(tick - req.launch_tick)
        why = self._valid(arrival.actions)
        if why is not None:
            self.counts["rejected_chunks"] += 1
            self.successor_launched = False
            req.meta = {**req.meta, "rejected": why}
            return 1
        if req.launch_tick < self.active_launch:
            self.counts["stale_results"] += 1
            return 0
        rows = quantize(np.asarray(arrival.actions, float), self.q, self.kind)
        window = self.E if self.mode in ("sync", "async_rollforward") else self.full
        if req.start_tick is None or req.start_tick >= tick:
            drop, switch = 0, (tick if req.start_tick is None else req.start_tick)
        else:
            drop = sum(1 for t in range(req.start_tick, tick) if self.advanced.get(t, False))
            switch = tick
        ref = req.cond_state if drop == 0 or drop > len(rows) else rows[drop - 1]
        rows = rows[drop:window]
        if len(rows) == 0:
            self.counts["stale_results"] += 1
            return 0
        self.pending.append((switch, req, rows, drop, ref))
        self.pending.sort(key=lambda p: p[0])
        return 0

    def _rebase(self, req: Request, rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Translate a rollforward chunk onto the command actually sent before it (module docstring)."""
        if (not self.mode.endswith("rollforward") or self.kind != "absolute" or self.last_applied is None
                or req.meta.get("disturbance")):
            return rows
        offset = self.last_applied - np.asarray(ref, float)
        if not np.any(offset):
            return rows
        fade = 1.0 - np.arange(len(rows))[:, None] / len(rows)
        return np.clip(rows + fade * offset, self.low, self.high)

    def _watch_disturbance(self, state: np.ndarray) -> Optional[str]:
        if self.disturbance_bound is None or self.last_applied is None:
            return None
        recent = np.array(self._recent)
        err = np.maximum(0.0, np.maximum(recent.min(axis=0) - state, state - recent.max(axis=0)))
        if not self.disturbed:
            if np.any(err > self.disturbance_bound):
                self.disturbed, self._calm, self.disturbance_error = True, 0, err
                self.counts["disturbances"] += 1
                return "start"
            return None
        self._calm = self._calm + 1 if np.all(err <= 0.5 * self.disturbance_bound) else 0
        if self._calm >= self.recover_ticks:
            self.disturbed = False
            return "end"
        return None

    def _switch(self, tick: int) -> bool:
        switched = False
        while self.pending and self.pending[0][0] <= tick:
            _, req, rows, first, ref = self.pending.pop(0)
            if req.launch_tick < self.active_launch:
                self.counts["stale_results"] += 1
                continue
            rows = self._rebase(req, rows, ref)
            i0 = max(0, tick - self.plan_start)
            old = self.plan[i0:i0 + len(rows)]
            hold = self.plan[-1] if len(self.plan) else (self.last_applied if self.last_applied is not None
                                                         else rows[0])
            if len(old) < len(rows):
                old = np.vstack([old, np.repeat(hold[None], len(rows) - len(old), axis=0)])
            # Rows before this tick are history: the plan restarts here.
            self.plan = np.asarray(self.merge(old, rows), float)
            self.plan_start = tick
            self.plan_chunk = np.full(len(rows), req.id)
            self.plan_row = np.arange(first, first + len(rows))
            self.active_chunk, self.active_launch = req.id, req.launch_tick
            self.chunk_started_tick = tick
            self.successor_launched = False
            self.counts["chunks"] += 1
            switched = True
        return switched

    # ----------------------------------------------------------------------------------------------
    def step(self, tick: int, obs: Mapping[str, Any], arrivals: Iterable[Arrival] = (),
             submit: Optional[Callable[[Request, dict], list[Arrival]]] = None) -> TickOutput:
        """The command for ``tick``.

        Order inside a tick: accept arrived chunks and switch those due; if an inference should start now,
        build its (rolled-forward) observation and call ``submit(request, policy_obs)``, which returns any
        results already available (an in-process policy with zero delay); then pick the command. So Δ = 0
        really costs no tick, and a result that lands mid-tick is used on the next one.
        """
        self.delay.advance()
        rejected = sum(self._accept(tick, a) for a in arrivals)
        disturbance = self._watch_disturbance(np.asarray(obs[self.state_key], float))
        if self.disturbed:
            self.counts["disturbed_ticks"] += 1
        seam = self._switch(tick)
        launched = None
        if submit is not None and self._should_launch(tick):
            launched, policy_obs = self._make_request(tick, obs)
            self.in_flight[launched.id] = launched
            self.requests[launched.id] = launched
            self.last_launch_tick = tick
            self.successor_launched = True
            rejected += sum(self._accept(tick, a) for a in submit(launched, policy_obs))
            seam = self._switch(tick) or seam
        cmd = self._planned(tick)
        hold = cmd is None
        if hold:
            state = np.asarray(obs[self.state_key], float)
            cmd = self.last_applied if self.last_applied is not None else state
            self.counts["hold_ticks"] += 1
        starved = hold and self.counts["chunks"] > 0 and (bool(self.in_flight) or bool(self.pending))
        if starved:
            self.counts["starved_ticks"] += 1
        self.advanced[tick] = not hold
        self.advanced.pop(tick - 4 * self.full - 64, None)
        i = tick - self.plan_start
        chunk_id = int(self.plan_chunk[i]) if not hold else -1
        chunk_row = int(self.plan_row[i]) if not hold else -1
        return TickOutput(np.array(cmd, float), hold, starved, seam and not hold, chunk_id, chunk_row,
                          self._rows_from(tick), len(self.in_flight), self.delay.value, launched, rejected,
                          disturbance)

    def applied(self, command: np.ndarray) -> None:
        """Tell the scheduler what was actually sent (after the shield and the driver's clipping)."""
        self.last_applied = np.array(command, float)
        self._recent.append(self.last_applied)

    def drop_in_flight(self) -> list[int]:
        """The policy actor died: forget its requests (their results will never come)."""
        ids = list(self.in_flight)
        self.in_flight.clear()
        self.successor_launched = False
        return ids
