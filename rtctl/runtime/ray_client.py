"""A Ray actor that hosts any `Policy`, and the client the tick uses to reach it without blocking.

The tick submits an observation (`actor.predict.remote`, ~0.1–0.3 ms) and polls with
`ray.wait(timeout=0)`; it never calls a blocking `ray.get` on a result that is not ready. The policy is
built inside the actor from its config, so the model's memory (and torch itself) lives in the actor's
process, not the tick's. Placement on another node (a GPU server) is by a custom resource named in the
config. A dead actor is restarted by Ray (`max_restarts`); its in-flight requests come back as failures,
the scheduler holds, and the run log says so; with a warm standby (`actor.standby: 1`) the standby takes
over at once (`rtctl.runtime.actor_pool`: which actor serves, failure and restart accounting).

Latency (`RayActorClient.latency_summary`): each result carries the actor's own `time.monotonic_ns`
stamps (received, model start, model end, done), so the model time and the wait inside the actor are
durations on one clock wherever the actor runs. The round trip (submit → actor done) compares the tick's
clock with the actor's, which is valid only on the same node (one kernel monotonic clock); on another
node it falls back to submit → the poll that found the result. "Available" is always submit → that poll:
what the scheduler sees, quantized to the tick.

The model runs one request at a time (a policy object is not assumed thread-safe); requests in flight
overlap only in the injected latency (`rtctl.runtime.actor_latency`), which runs after the model.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from pydantic import Field

from rtctl.runtime.actor_latency import ExtraLatencyConfig, resolve_extra_latency
from rtctl.runtime.actor_pool import ActorPool, ActorSlot
from rtctl.chunking.scheduler import Arrival, Request
from rtctl.config import ConfigError, StrictModel


class ActorConfig(StrictModel):
    enabled: bool = False
    resource: Optional[str] = None  # custom Ray resource the actor needs, e.g. "gpu_server"
    address: Optional[str] = None  # join this Ray cluster; None starts a local one for the run
    num_cpus: float = Field(1.0, ge=0.0, le=64.0)
    torch_threads: int = Field(1, ge=1, le=64)
    max_restarts: int = Field(3, ge=0, le=1000)
    # Ray connected and the actor answering within this, or the run does not start (one line, exit 2)
    start_timeout_s: float = Field(30.0, gt=0.0, le=3600.0)
    # the serving actor down this long (its node lost, no standby up) → `policy_actor_lost`, the run stops safely
    unavailable_timeout_s: float = Field(30.0, gt=0.0, le=86400.0)
    # warm standby actors (0 or 1): one takes over at once when the active actor dies (rtctl.runtime.actor_pool)
    standby: int = Field(0, ge=0, le=1)
    # emulated inference time per request (rtctl.runtime.actor_latency); policy.extra_latency_ms X is its constant form
    extra_latency: ExtraLatencyConfig = ExtraLatencyConfig()


def _set_torch_threads(n: int) -> None:
    """Only if the policy brought torch in: importing it for a policy that does not use it (the scripted
    expert) adds 1–2 s to the actor's start."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _actor_class():
    import ray

    @ray.remote
    class PolicyActor:
        def __init__(self, policy_cfg: dict, rate_hz: float, torch_threads: int, avoid_cpu: Optional[int],
                     latency_cfg: Optional[dict] = None) -> None:
            t0 = time.monotonic_ns()
            from rtctl.runtime.actor_latency import ExtraLatencyConfig, LatencyInjector
            from rtctl.runtime.policies import PolicyConfig, make_policy

            t_imports = time.monotonic_ns()
            if avoid_cpu is not None and hasattr(os, "sched_getaffinity"):
                others = sorted(os.sched_getaffinity(0) - {avoid_cpu})
                if others:
                    os.sched_setaffinity(0, others)  # keep inference off the tick's core
            # Ray starts workers at niceness 15: any busy process on the box would then starve inference.
            # Back to the caller's priority where we may (root / CAP_SYS_NICE); else it stays and is reported.
            try:
                os.setpriority(os.PRIO_PROCESS, 0, 0)
            except (OSError, AttributeError):
                pass
            self.niceness = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None
            self.policy = make_policy(PolicyConfig(**policy_cfg), rate_hz)
            _set_torch_threads(torch_threads)
            self.injector = LatencyInjector(ExtraLatencyConfig(**(latency_cfg or {})))
            self.model_lock = threading.Lock()
            t_loaded = time.monotonic_ns()
            self.init_s = {"imports": (t_imports - t0) / 1e9, "policy_load": (t_loaded - t_imports) / 1e9}

        def predict(self, obs: dict) -> dict:
            """{"actions": float array, "t_ns": int64 [received, model start, model end, done],
            "injected_ms": the sleep after the model} — plain numpy, no pickled objects."""
            t_recv = time.monotonic_ns()
            with self.model_lock:
                t_start = time.monotonic_ns()
                actions = np.asarray(self.policy.predict_chunk(obs).actions, float)
                t_end = time.monotonic_ns()
                target_ms = self.injector.draw_ms(t_start)
            rest_s = target_ms / 1e3 - (t_end - t_start) / 1e9
            if rest_s > 0:
                time.sleep(rest_s)
            t_done = time.monotonic_ns()
            return {"actions": actions, "t_ns": np.array([t_recv, t_start, t_end, t_done], np.int64),
                    "injected_ms": (t_done - t_end) / 1e6 if rest_s > 0 else 0.0, "pid": os.getpid()}

        def ping(self) -> dict:
            import ray as _ray

            return {"pid": os.getpid(), "node_id": _ray.get_runtime_context().get_node_id(),
                    "niceness": self.niceness, "init_s": self.init_s}

    return PolicyActor


@dataclass
class RequestTiming:
    """One answered request: the tick's stamps (submit, available) and the actor's (received … done)."""

    submit_ns: int
    available_ns: int  # the poll that found the result ready
    recv_ns: int
    model_start_ns: int
    model_end_ns: int
    done_ns: int
    injected_ms: float
    same_host: bool  # the actor's clock is the tick's clock

    @property
    def model_ms(self) -> float:
        return (self.model_end_ns - self.model_start_ns) / 1e6

    @property
    def queue_ms(self) -> float:  # received → model start: waiting behind another request's model run
        return (self.model_start_ns - self.recv_ns) / 1e6

    @property
    def available_ms(self) -> float:
        return (self.available_ns - self.submit_ns) / 1e6

    @property
    def round_trip_ms(self) -> float:
        if self.same_host and self.submit_ns <= self.done_ns <= self.available_ns:
            return (self.done_ns - self.submit_ns) / 1e6
        return self.available_ms


def summarize_timings(timings: list[RequestTiming]) -> dict:
    """The `latency_summary` keys (ms; None without answered requests)."""
    def pct(values: list[float], q: float) -> Optional[float]:
        return float(np.percentile(values, q)) if values else None

    model = [t.model_ms for t in timings]
    trip = [t.round_trip_ms for t in timings]
    avail = [t.available_ms for t in timings]
    injected = [t.injected_ms for t in timings]
    same = [t.same_host for t in timings]
    return {
        "inference_model_ms_p50": pct(model, 50), "inference_model_ms_p95": pct(model, 95),
        "inference_round_trip_ms_p50": pct(trip, 50), "inference_round_trip_ms_p95": pct(trip, 95),
        "inference_available_ms_p50": pct(avail, 50), "inference_available_ms_p95": pct(avail, 95),
        "inference_queue_ms_p95": pct([t.queue_ms for t in timings], 95),
        "inference_injected_ms_p50": pct(injected, 50), "inference_injected_ms_p95": pct(injected, 95),
        # "host": round trip ends at the actor's done stamp; "poll": actor on another node, ends at the poll
        "inference_round_trip_clock": None if not same else ("host" if all(same) else "poll"),
        "inference_requests": len(timings),
    }


def check_resource(ray: Any, resource: str) -> None:
    """A custom resource no node offers would leave the actor pending forever: refuse it before anything is
    created, naming what the cluster has."""
    have = ray.cluster_resources()
    if resource not in have:
        known = sorted(k for k in have if not k.startswith("node:") and k not in ("memory", "object_store_memory"))
        raise ConfigError(f"actor.resource {resource!r} is offered by no node of the cluster (it has: "
                          f"{', '.join(known)}); start a node with --resources '{{\"{resource}\": 1}}' or fix the name")


class RayActorClient:
    def __init__(self, policy_cfg: Any, rate_hz: float, actor_cfg: ActorConfig, max_concurrency: int = 1,
                 avoid_cpu: Optional[int] = None, on_event: Optional[Callable[..., None]] = None) -> None:
        import ray

        self.ray = ray
        self.on_event = on_event or (lambda kind, **kw: None)
        latency = resolve_extra_latency(policy_cfg, actor_cfg)
        opts: dict[str, Any] = {"num_cpus": actor_cfg.num_cpus, "max_restarts": actor_cfg.max_restarts,
                                "max_task_retries": 0, "max_concurrency": max(1, max_concurrency)}
        if actor_cfg.resource:
            check_resource(ray, actor_cfg.resource)
            opts["resources"] = {actor_cfg.resource: 0.001}
        cls = _actor_class().options(**opts)
        args = (policy_cfg.model_dump(), rate_hz, actor_cfg.torch_threads, avoid_cpu, latency.model_dump())
        handles = [cls.remote(*args) for _ in range(1 + actor_cfg.standby)]  # they start side by side
        self.refs: dict[Any, tuple[int, int, ActorSlot, Optional[int]]] = {}  # ref → (request id, submit ns, slot, worker pid)
        self.latencies_s: list[float] = []  # submit → the poll that found the result ready (every answer)
        self.timings: list[RequestTiming] = []  # answered requests with the actor's stamps
        self.startup: Any = None  # a rtctl.runtime.ray_start.StartupClock when started by rtctl.runtime.ray_start
        try:  # wait for the actors once, before the loop — not forever
            infos = ray.get([h.ping.remote() for h in handles], timeout=actor_cfg.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            for h in handles:
                ray.kill(h, no_restart=True)
            where = f" on a node with resource {actor_cfg.resource!r}" if actor_cfg.resource else ""
            raise ConfigError(f"actor: the policy actor did not start{where} within {actor_cfg.start_timeout_s:g} s "
                              f"(actor.start_timeout_s; free CPUs in the cluster: "
                              f"{ray.available_resources().get('CPU', 0):g})") from None
        self.info = infos[0]
        # Same node → same kernel monotonic clock, so the actor's stamps compare with ours (and its pid is ours
        # to look at: rtctl.runtime.actor_pool.ActorPool.check_local).
        self.same_host = self.info["node_id"] == ray.get_runtime_context().get_node_id()
        self.pool = ActorPool(ray, handles, infos, lambda kind, **kw: self.on_event(kind, **kw), self.same_host,
                              unavailable_timeout_s=actor_cfg.unavailable_timeout_s)

    @property
    def actor(self) -> Any:
        """The actor that serves requests now."""
        return self.pool.serving.handle

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def warm_up(self, obs: dict, n: int = 2) -> list[float]:
        """``n`` blocking predictions before the loop (the first ones pay for lazy initialisation); returns
        their round trips in seconds, the last of which seeds the scheduler's Δ̂."""
        out = []
        self.pool.last_obs = obs
        for _ in range(n):
            t0 = time.monotonic_ns()
            refs = [s.handle.predict.remote(obs) for s in self.pool.slots]  # the standby warms alongside
            self.ray.get(refs[0])
            out.append((time.monotonic_ns() - t0) / 1e9)
            self.ray.get(refs[1:])
        return out

    def submit(self, req: Request, obs: dict) -> list[Arrival]:
        slot = self.pool.serving
        self.refs[slot.handle.predict.remote(obs)] = (req.id, time.monotonic_ns(), slot, slot.pid)
        self.pool.last_obs = obs
        return []

    def poll(self, tick: int) -> list[Arrival]:
        now = time.monotonic_ns()
        self.pool.check_local(now)
        self.pool.check_lost(now)
        if len(self.pool.slots) > 1 or not self.pool.serving.up:
            self.pool.watch(now)
        out = []
        for ref, (rid, t_sub, slot, _) in list(self.refs.items()):
            if slot.failed_ns is not None and t_sub < slot.failed_ns:  # sent before its actor died: lost
                del self.refs[ref]
                out.append(Arrival(rid, None))
        if not self.refs:
            return out
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        now = time.monotonic_ns()  # after the wait: "available" never precedes the actor's done stamp
        for ref in ready:
            rid, t_sub, slot, pid = self.refs.pop(ref)
            self.latencies_s.append((now - t_sub) / 1e9)
            try:
                res = self.ray.get(ref, timeout=0)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.ActorUnavailableError) as err:
                self.pool.failed(slot, err, now, pid)
                out.append(Arrival(rid, None))
                continue
            except self.ray.exceptions.RayError as err:
                self.on_event("inference_error", request=rid, error=type(err).__name__,
                              detail=str(err).splitlines()[0][:200])
                out.append(Arrival(rid, None))
                continue
            self.pool.answered(slot, res.get("pid"), now)
            self.pool.request_answered(now)
            recv, start, end, done = (int(x) for x in res["t_ns"])
            self.timings.append(RequestTiming(t_sub, now, recv, start, end, done, float(res["injected_ms"]),
                                              self.same_host))
            out.append(Arrival(rid, res["actions"]))
        return out

    def latency_summary(self) -> dict:
        """Per-request inference latency of this run (ms): model time in the actor, wait in the actor,
        round trip, available (tick-quantized), injected sleep, and the number of answered requests."""
        return summarize_timings(self.timings)

    def startup_s(self) -> dict:
        """Start-up phases in seconds (`rtctl.runtime.ray_start.StartupClock.summary`); {} if not started by it."""
        return self.startup.summary(self.info.get("init_s")) if self.startup is not None else {}

    def reset(self) -> None:
        self.refs.clear()  # results of a finished episode are not wanted; the actor finishes them idly

    def kill(self, no_restart: bool = False) -> None:
        self.ray.kill(self.actor, no_restart=no_restart)

    def close(self) -> None:
        for slot in self.pool.slots:
            try:
                self.ray.kill(slot.handle, no_restart=True)
            except Exception:  # already gone
                pass
