"""One control tick's work, shared by the wall-clock runtime and the virtual-clock benchmark.

read observation → poll arrived chunks → scheduler (launches inference, rolls state forward, merges) →
command → [shield] → driver.write → record. Episode bookkeeping (sim only), seam and reaction metrics live
here too, so both clocks measure the same way.

Smoothness is measured twice, on the scheduler's command (before the shield: what scheduling did) and on
the command the driver applied (after the shield and clipping: what the actuator got), inside episodes:
per-tick step = ‖u_t − u_{t−1}‖ (rad), jerk = ‖Δ³u_t‖·rate³ (rad/s³), seam jump = the step on the first
tick of a newly switched-in chunk, normalised by the median step inside chunks. Whack task time counts a
missed target at its deadline (so missing more never looks faster), beside hits per minute.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import numpy as np

from rtctl.chunking.scheduler import ChunkScheduler, Request
from rtctl.drivers.base import EpisodicDriver
from rtctl.runtime.inference import InferenceClient

STARVED_EVENT_TICKS = 3  # shorter holds are the ordinary jitter of a chunk arriving a tick late
WHACK_DEADLINE_S = 2.5  # rtctl.sim.arm_env.WHACK_DEADLINE_S (not imported: this module stays MuJoCo-free)


class Smoothness:
    """Per-tick steps and jerks of one command stream, and its seam jumps (see the module docstring)."""

    def __init__(self, rate_hz: float) -> None:
        self.rate = rate_hz
        self.steps: list[float] = []
        self.jerks: list[float] = []
        self.seam_jumps: list[float] = []
        self.inside_steps: list[float] = []
        self._last: deque = deque(maxlen=4)
        self._prev_chunk = -1

    def add(self, u: np.ndarray, hold: bool, seam: bool, chunk: int) -> None:
        u = np.array(u, float)
        if self._last:
            step = float(np.linalg.norm(u - self._last[-1]))
            self.steps.append(step)
            if not hold:
                if seam and self._prev_chunk >= 0:
                    self.seam_jumps.append(step)
                elif chunk == self._prev_chunk and step > 1e-6:
                    self.inside_steps.append(step)
        self._last.append(u)
        if len(self._last) == 4:
            a = list(self._last)
            self.jerks.append(float(np.linalg.norm(a[3] - 3 * a[2] + 3 * a[1] - a[0])) * self.rate ** 3)
        self._prev_chunk = chunk if not hold else self._prev_chunk

    def end_episode(self) -> None:
        self._last.clear()
        self._prev_chunk = -1

    def summary(self, suffix: str) -> dict[str, Optional[float]]:
        p95 = (lambda a: float(np.percentile(a, 95)) if len(a) else None)
        med = float(np.median(self.inside_steps)) if self.inside_steps else float("nan")
        seam = float(np.percentile(self.seam_jumps, 95) / med) if self.seam_jumps and med > 0 else None
        return {f"seam_jump_p95{suffix}": seam, f"step_p95{suffix}": p95(self.steps),
                f"jerk_p95{suffix}": p95(self.jerks)}


@dataclass
class EpisodeStats:
    index: int
    ticks: int
    success: bool
    task_time_s: float
    reactions_s: list = field(default_factory=list)  # per target: appear → first action of a chunk that saw it
    reactions_motion_s: list = field(default_factory=list)  # cross-check: appear → gripper moving toward it
    hits: int = 0
    targets: int = 0


class ControlLoop:
    """Owns the per-tick data path for one driver, one scheduler (re-made per episode) and one client."""

    def __init__(self, driver: Any, make_scheduler: Callable[[], ChunkScheduler], client: InferenceClient,
                 rate_hz: float, episodes: Optional[int] = None, shield: Any = None,
                 record_rows: bool = True, motion_threshold: float = 0.05,
                 on_event: Optional[Callable[..., None]] = None) -> None:
        self.driver, self.make_scheduler, self.client = driver, make_scheduler, client
        self.episodic = isinstance(driver, EpisodicDriver)  # a sim with episodes (drivers.base), else one long run
        self.rate_hz = rate_hz
        self.max_episodes = episodes
        self.shield = shield
        self.record_rows = record_rows
        self.on_event = on_event
        self.motion_threshold = motion_threshold
        self.sched = make_scheduler()
        self.ep_tick = 0
        self.episodes: list[EpisodeStats] = []
        self.smooth_cmd = Smoothness(rate_hz)  # the scheduler's command, before the shield
        self.smooth_applied = Smoothness(rate_hz)  # what the driver applied
        self.seam_jumps = self.smooth_applied.seam_jumps  # (names kept for the benchmarks' cells)
        self.inside_steps = self.smooth_applied.inside_steps
        self.disturbance_log: list[dict] = []  # per disturbance: start tick, first tick of a chunk conditioned on it
        self.last_row: Optional[dict] = None
        self._ep_chunk_at: list[int] = []
        self._ep_gripper: list[np.ndarray] = []
        self._ep_gripper_vel: list[np.ndarray] = []
        self.counts_total: dict[str, int] = {}
        self.total_ticks = 0
        self._starved_from: Optional[tuple[int, Optional[int]]] = None  # (tick, start ns) of a starved streak

    # -- inference submission: attach what the conditioning observation saw (for reaction latency) --------
    def _submit(self, req: Request, policy_obs: dict) -> list:
        target = policy_obs.get("target")
        if target is not None:
            req.meta = {**req.meta, "target": np.asarray(target, float).copy()}
        return self.client.submit(req, policy_obs)

    def tick(self, k: int, t_start_ns: Optional[int] = None) -> bool:
        """One tick; ``t_start_ns`` (the tick's start, monotonic) lets a driver report command age at send."""
        obs = self.driver.read()
        arrivals = self.client.poll(self.ep_tick)
        out = self.sched.step(self.ep_tick, obs, arrivals, self._submit)
        cmd = out.command
        shield_info = None
        if self.shield is not None:
            cmd, shield_info = self.shield(obs, cmd, self.sched.last_applied)
        applied = self.driver.write(cmd, stamp_ns=t_start_ns)
        self.sched.applied(applied)
        self._track(out, applied)
        self._watch_disturbance(k, obs, out)
        self._watch_starved(k, out.starved, t_start_ns)
        self.total_ticks += 1
        if self.record_rows:
            self.last_row = {
                "tick": k, "episode": len(self.episodes), "ep_tick": self.ep_tick,
                "state": obs.get("state"), "target": obs.get("target"), "command": out.command,
                "applied": applied, "hold": out.hold, "starved": out.starved, "seam": out.seam,
                "chunk": out.chunk_id, "chunk_row": out.chunk_row, "queue_depth": out.queue_depth,
                "in_flight": out.in_flight, "delay_est": out.delay_est, "launched": out.launched is not None,
                "rejected": out.rejected, "disturbed": self.sched.disturbed,
            }
            if shield_info is not None:
                self.last_row["shield"] = shield_info
        self.ep_tick += 1
        if self.episodic and self.driver.episode_done:
            if self.sched.disturbed:  # the episode's scheduler (and its disturbance) ends here
                self._watch_disturbance(k, obs, replace(out, disturbance="end", hold=True))
            self._end_episode()
            if self.max_episodes is not None and len(self.episodes) >= self.max_episodes:
                return False
            self.driver.reset_episode()
            self.client.reset()
            if self.shield is not None:
                self.shield.reset()
            self._add_counts()
            self.sched = self.make_scheduler()
            self.ep_tick = 0
        return True

    def _info(self) -> dict:
        return dict(self.driver.last_info or {}) if self.episodic else {}

    # -- metrics ----------------------------------------------------------------------------------------
    def _track(self, out: Any, applied: np.ndarray) -> None:
        self._ep_chunk_at.append(out.chunk_id)
        info = self._info()
        if "gripper_pos" in info:
            self._ep_gripper.append(np.asarray(info["gripper_pos"], float))
            self._ep_gripper_vel.append(np.asarray(info.get("gripper_vel", np.zeros(3)), float))
        self.smooth_cmd.add(out.command, out.hold, out.seam, out.chunk_id)
        self.smooth_applied.add(applied, out.hold, out.seam, out.chunk_id)

    def _watch_disturbance(self, k: int, obs: dict, out: Any) -> None:
        """Log the disturbance rule's transitions, and for each disturbance the first tick whose command
        comes from a chunk conditioned on the measured (disturbed) state."""
        if out.disturbance == "start":
            err = self.sched.disturbance_error
            self.disturbance_log.append({"episode": len(self.episodes), "tick": k, "ep_tick": self.ep_tick,
                                         "first_reaction_tick": None, "end_tick": None})
            if self.on_event is not None:
                self.on_event("disturbance", state="start", tick=k, joint_error_rad=np.round(err, 4).tolist())
        elif out.disturbance == "end":
            if self.disturbance_log:
                self.disturbance_log[-1]["end_tick"] = k
            if self.on_event is not None:
                self.on_event("disturbance", state="end", tick=k)
        if self.disturbance_log and self.disturbance_log[-1]["first_reaction_tick"] is None and not out.hold:
            req = self.sched.requests.get(out.chunk_id)
            if req is not None and req.meta.get("disturbance"):
                self.disturbance_log[-1]["first_reaction_tick"] = k

    def _watch_starved(self, k: int, starved: bool, t_ns: Optional[int]) -> None:
        """A `starved` event when the arm held for want of a chunk for ≥ STARVED_EVENT_TICKS ticks in a row
        (a dead actor, an overloaded one); seconds from the ticks' start stamps when the loop has them."""
        if starved:
            if self._starved_from is None:
                self._starved_from = (k, t_ns)
            return
        if self._starved_from is None:
            return
        k0, t0 = self._starved_from
        self._starved_from = None
        if k - k0 >= STARVED_EVENT_TICKS and self.on_event is not None:
            s = (t_ns - t0) / 1e9 if t_ns is not None and t0 is not None else (k - k0) / self.rate_hz
            self.on_event("starved", tick=k0, ticks=k - k0, s=round(s, 4))

    def _end_episode(self) -> None:
        info = self._info()
        dt = 1.0 / self.rate_hz
        events = info.get("target_events", [])
        reactions, motions, hit_times = [], [], []
        for ev in events:
            a = int(ev["appear_step"])
            pos = np.asarray(ev["pos"], float)
            r = self._reaction_tick(a, pos)
            if r is not None:
                reactions.append((r - a) * dt)
            m = self._motion_tick(a, pos)
            if m is not None:
                motions.append((m - a) * dt)
            if self.on_event is not None:
                self.on_event("reaction", episode=len(self.episodes), target=int(ev.get("id", -1)),
                              appear_tick=a, first_action_tick=r, moving_tick=m, hit=bool(ev.get("hit")),
                              latency_s=None if r is None else (r - a) * dt)
            if ev.get("hit") and ev.get("end_step") is not None:
                hit_times.append((int(ev["end_step"]) - a) * dt)
            elif ev.get("end_step") is not None:  # expired: a miss counts at its deadline
                hit_times.append(WHACK_DEADLINE_S)
        success = bool(info.get("success", False))
        if self.episodic and self.driver.task == "whack":
            task_time = float(np.mean(hit_times)) if hit_times else float("nan")
        else:
            task_time = self.ep_tick * dt
        self.episodes.append(EpisodeStats(len(self.episodes), self.ep_tick, success, task_time,
                                          reactions, motions, sum(bool(e.get("hit")) for e in events),
                                          len(events)))
        self._ep_chunk_at, self._ep_gripper, self._ep_gripper_vel = [], [], []
        self.smooth_cmd.end_episode()
        self.smooth_applied.end_episode()

    def flush_reactions(self) -> None:
        """At the end of a run: report the reactions of the episode still in progress (events only; an
        unfinished episode does not enter the success statistics)."""
        if self.on_event is None or (self.episodic and self.driver.episode_done):
            return  # a finished episode already reported its reactions
        events = self._info().get("target_events", [])
        dt = 1.0 / self.rate_hz
        for ev in events:
            a = int(ev["appear_step"])
            pos = np.asarray(ev["pos"], float)
            r, m = self._reaction_tick(a, pos), self._motion_tick(a, pos)
            self.on_event("reaction", episode=len(self.episodes), target=int(ev.get("id", -1)), appear_tick=a,
                          first_action_tick=r, moving_tick=m, hit=bool(ev.get("hit")), partial_episode=True,
                          latency_s=None if r is None else (r - a) * dt)

    def _reaction_tick(self, appear: int, pos: np.ndarray) -> Optional[int]:
        """First executed tick ≥ appear whose chunk was conditioned on an observation showing ``pos``."""
        for t in range(appear, len(self._ep_chunk_at)):
            cid = self._ep_chunk_at[t]
            req = self.sched.requests.get(cid)
            if req is None:
                continue
            tg = req.meta.get("target")
            if tg is not None and tg[3] > 0.5 and np.allclose(tg[:3], pos, atol=1e-6):
                return t
        return None

    def _motion_tick(self, appear: int, pos: np.ndarray) -> Optional[int]:
        """Cross-check: first tick ≥ appear where the gripper moves toward ``pos`` faster than threshold."""
        for t in range(appear, len(self._ep_gripper)):
            to = pos - self._ep_gripper[t]
            n = np.linalg.norm(to)
            if n > 1e-9 and float(self._ep_gripper_vel[t] @ to) / n > self.motion_threshold:
                return t
        return None

    def smoothness(self) -> dict[str, Optional[float]]:
        """Seams, steps and jerks before (``_cmd``) and after (``_applied``; ``seam_jump_p95`` without a
        suffix keeps its old meaning, after the shield) the shield."""
        out = {**self.smooth_cmd.summary("_cmd"), **self.smooth_applied.summary("_applied")}
        out["seam_jump_p95"] = out["seam_jump_p95_applied"]
        return out

    def hits_per_min(self) -> Optional[float]:
        minutes = sum(e.ticks for e in self.episodes) / self.rate_hz / 60.0
        hits = sum(e.hits for e in self.episodes)
        return hits / minutes if minutes > 0 and any(e.targets for e in self.episodes) else None

    def _add_counts(self) -> None:
        for key, val in self.sched.counts.items():
            self.counts_total[key] = self.counts_total.get(key, 0) + val

    def counts(self) -> dict[str, int]:
        total = dict(self.counts_total)
        for key, val in self.sched.counts.items():
            total[key] = total.get(key, 0) + val
        return total
