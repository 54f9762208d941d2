"""Which policy actor serves the tick: the active one, an optional warm standby, and what each failure cost.

Ray restarts a dead actor (`max_restarts`), but a restart is a new worker process that imports torch and
loads the policy again: 13–14 s measured on this 2-core box for a BC policy, all of it a hold for the
arm. A warm standby (`actor.standby: 1`) is a second actor with the same policy, warmed up before the loop
starts; it takes over the moment the active one is known dead, and the dead one, once Ray brought it back,
becomes the standby.

Rules:
* An actor is *down* from the first failed request (RayActorError / ActorUnavailableError), failed ping,
  or — on this host — the moment its worker process is gone, to the first answer from a new worker (its
  pid changed); one failure is one `policy_actor_failed` event however many requests were in flight, and
  one return is one restart (`restarts` counts those, not failed requests). Each request and ping
  remembers the worker it was sent to: an error that comes back from a worker already replaced is old news.
* Why look at the process: Ray fails a request sent to a killed worker only after its own death check
  (1.6–2 s measured after a kill -9, the arm holding all that time); a worker on this host whose process
  is gone is dead, which `check_local` sees within a tick. An actor on another node keeps Ray's detection.
* On a failure of the active actor an up standby takes over at once (`policy_actor_takeover`); requests
  already sent to the dead one fail and the scheduler launches again, now to the new active one.
* Actors that do not serve (the standby, a down active) are pinged every ``ping_every_s`` without
  blocking: that is how a dead standby is found and how a restart is seen when no request is in flight.
  A standby that came back is warmed with one prediction on the last observation.
* The serving actor down for ``unavailable_timeout_s`` (30 s) with no standby up — its node is lost and
  no node with its resource came back — is `policy_actor_lost`: `PolicyLost` stops the run safely
  (exit 6, one line). Ray places a restarted actor on any node that has the resource.
* `policy_actor_recovered` is the first answered request after a failure of the active actor, with the
  seconds since that failure: the policy side of the arm's hold (the arm holds only once its plan runs
  out; `starved` events in the run's log say how long it did).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from rtctl.runtime.procfs import alive


class PolicyLost(RuntimeError):
    """The policy actor stayed unavailable past actor.unavailable_timeout_s: the run stops (the arm holds)."""


@dataclass
class ActorSlot:
    handle: Any
    pid: Optional[int]
    role: str  # "active" / "standby": the role it had when it last changed state (for events)
    up: bool = True
    failed_ns: Optional[int] = None
    ping_ref: Any = None
    ping_pid: Optional[int] = None  # the worker the pending ping was sent to
    next_ping_ns: int = 0


class ActorPool:
    def __init__(self, ray: Any, handles: list, infos: list[dict], on_event: Callable[..., None],
                 same_host: bool = False, ping_every_s: float = 0.2, unavailable_timeout_s: float = 30.0) -> None:
        self.ray = ray
        self.same_host = same_host
        self.unavailable_ns = int(unavailable_timeout_s * 1e9)
        self.slots = [ActorSlot(h, i.get("pid"), "active" if k == 0 else "standby")
                      for k, (h, i) in enumerate(zip(handles, infos))]
        self.active = 0
        self.on_event = on_event
        self.ping_every_ns = int(ping_every_s * 1e9)
        self.failures = 0
        self.restarts = 0
        self.takeovers = 0
        self.recovered_s: list[float] = []
        self._recovering_ns: Optional[int] = None
        self.last_obs: Optional[dict] = None

    @property
    def serving(self) -> ActorSlot:
        return self.slots[self.active]

    def failed(self, slot: ActorSlot, err: BaseException, now_ns: int, pid: Optional[int] = None) -> None:
        """A request or ping of ``slot``, sent to worker ``pid``, failed: mark it down once, and hand over to an
        up standby. A failure of a worker the slot no longer runs (an error that came back after the
        restarted one answered) is not a new failure."""
        if not slot.up or (pid is not None and pid != slot.pid):
            return
        slot.up, slot.failed_ns = False, now_ns
        self.failures += 1
        is_active = slot is self.serving
        slot.role = "active" if is_active else "standby"
        self.on_event("policy_actor_failed", pid=slot.pid, role=slot.role, t_ns=now_ns, error=type(err).__name__,
                      detail=str(err).splitlines()[0][:200] if str(err) else "")
        if not is_active:
            return
        self._recovering_ns = self._recovering_ns or now_ns
        for k, other in enumerate(self.slots):
            if other is not slot and other.up:
                self.active = k
                other.role, slot.role = "active", "standby"
                self.takeovers += 1
                self.on_event("policy_actor_takeover", pid=other.pid, failed_pid=slot.pid,
                              after_s=round((time.monotonic_ns() - now_ns) / 1e9, 4))
                return

    def check_local(self, now_ns: int) -> None:
        """The serving actor's worker process, when it runs on this host: gone means dead."""
        slot = self.serving
        if self.same_host and slot.up and slot.pid is not None and not alive(slot.pid):
            self.failed(slot, ProcessLookupError(f"worker process {slot.pid} is gone"), now_ns)

    def answered(self, slot: ActorSlot, pid: Optional[int], now_ns: int, node_id: Optional[str] = None) -> None:
        """``slot`` answered a request or a ping from worker ``pid``."""
        if pid is not None and pid != slot.pid:  # a new worker: Ray restarted it
            old, slot.pid = slot.pid, pid
            if not slot.up or slot.failed_ns is not None:
                self.restarts += 1
                down_s = (now_ns - slot.failed_ns) / 1e9 if slot.failed_ns is not None else None
                self.on_event("policy_actor_restarted", pid=pid, old_pid=old, role=slot.role, t_ns=now_ns,
                              node_id=node_id, down_s=None if down_s is None else round(down_s, 4))
                if slot is not self.serving and self.last_obs is not None:
                    slot.handle.predict.remote(self.last_obs)  # warm it: the first call pays lazy init
        slot.up, slot.failed_ns = True, None

    def request_answered(self, now_ns: int) -> None:
        if self._recovering_ns is not None:
            s = (now_ns - self._recovering_ns) / 1e9
            self.recovered_s.append(s)
            self.on_event("policy_actor_recovered", pid=self.serving.pid, since_failure_s=round(s, 4),
                          via="standby" if self.takeovers else "restart")
            self._recovering_ns = None

    def watch(self, now_ns: int) -> None:
        """Ping the actors that do not serve (and a down active one), without blocking."""
        for slot in self.slots:
            if slot is self.serving and slot.up:
                continue
            if slot.ping_ref is None:
                if now_ns >= slot.next_ping_ns:
                    slot.ping_ref, slot.ping_pid = slot.handle.ping.remote(), slot.pid
                    slot.next_ping_ns = now_ns + self.ping_every_ns
                continue
            ready, _ = self.ray.wait([slot.ping_ref], timeout=0)
            if not ready:
                continue
            ref, slot.ping_ref = slot.ping_ref, None
            try:
                info = self.ray.get(ref, timeout=0)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.ActorUnavailableError) as err:
                self.failed(slot, err, now_ns, slot.ping_pid)
                continue
            self.answered(slot, info.get("pid"), now_ns, info.get("node_id"))
            if slot.up and not self.serving.up:  # the active one is still down: this one serves now
                self.active = self.slots.index(slot)

    def check_lost(self, now_ns: int) -> None:
        """No actor has served for ``unavailable_timeout_s`` since the serving one failed (its node is gone and
        none with the resource came back): `policy_actor_lost`, and `PolicyLost` stops the run safely."""
        slot = self.serving
        if slot.up or slot.failed_ns is None or now_ns - slot.failed_ns < self.unavailable_ns:
            return
        down_s = (now_ns - slot.failed_ns) / 1e9
        self.on_event("policy_actor_lost", pid=slot.pid, t_ns=now_ns, down_s=round(down_s, 3))
        raise PolicyLost(f"policy actor lost: no answer for {down_s:.1f} s since it failed (worker {slot.pid}; "
                         f"actor.unavailable_timeout_s {self.unavailable_ns / 1e9:g} s) — its node is gone or "
                         "nothing can host it")

    def summary(self) -> dict:
        return {"standby": len(self.slots) - 1, "failures": self.failures, "restarts": self.restarts,
                "takeovers": self.takeovers, "recovered_s": [round(s, 4) for s in self.recovered_s]}
