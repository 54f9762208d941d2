"""Start Ray and the policy actor off the critical path, and time every phase of a run's start.

A cold `ray.init` (GCS, dashboard head, raylet and its agents: ~2.5–7 s on a busy 2-core box) and the
actor's start (a worker process, rtctl's imports, the policy load) are the longest part of a run's start.
`ActorStart` runs them in a background thread, so they overlap the caller's own start (building and
connecting the driver; for a LeRobot robot the `lerobot` import alone is ~5 s). `prestart(cfg)` begins it as
early as the config is known; `execute()` takes it over with `actor_start_for(cfg)`, or starts one itself.

Rules:
* Ray's head processes die with the *thread* that started them (Ray sets PR_SET_PDEATHSIG, which is per
  thread on Linux), so the thread that ran `ray.init` stays parked for the life of the process, as the main
  thread would.
* `ray.init` in a thread cannot install Ray's SIGTERM handler (`sys.exit` in the main thread); `ActorStart`
  installs the same one from the caller's main thread, so a SIGTERM still unwinds into the run's safe stop.
* A cluster the run started itself is watched by `rtctl.runtime.ray_reaper`, which ends its processes if the run
  dies without shutting it down (SIGKILL: Ray's agents outlived it by more than a minute).
* A run that joins a cluster (`actor.address`) only connects; one that finds Ray already initialized in
  this process (tests, benchmarks) reuses it.
* `StartupClock` holds named `time.monotonic_ns` instants from the process's own start (/proc) on; its
  `summary()` is the run's ``startup_s``.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional

_PARK = threading.Event()  # never set: the thread that started Ray's processes waits on it forever
_REAPERS: list = []  # rtctl.runtime.ray_reaper processes: their pipe must stay open (referenced) while we live


def process_start_ns() -> Optional[int]:
    """When this process started, on the `time.monotonic_ns` clock (Linux /proc; 10 ms resolution)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time since boot
        # /proc counts from boot including suspend (CLOCK_BOOTTIME); monotonic excludes suspend
        offset_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        return int(start_s * 1e9) - offset_ns
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class StartupClock:
    """Named instants of a run's start; the first mark of a name wins (thread-safe: dict writes)."""

    def __init__(self) -> None:
        self.t_ns: dict[str, int] = {}
        t0 = process_start_ns()
        if t0 is not None:
            self.t_ns["process_start"] = t0
        self.ray = "unknown"  # started | joined | reused

    def mark(self, name: str, t_ns: Optional[int] = None) -> None:
        self.t_ns.setdefault(name, time.monotonic_ns() if t_ns is None else t_ns)

    def span(self, a: str, b: str) -> Optional[float]:
        if a in self.t_ns and b in self.t_ns:
            return round((self.t_ns[b] - self.t_ns[a]) / 1e9, 4)
        return None

    def summary(self, actor_init_s: Optional[dict] = None) -> dict:
        """Phases in seconds. ``ray_init`` and ``actor_create`` run in the background while the caller
        builds and connects its driver, so phases overlap; ``wait_for_actor`` is what the caller waited.
        ``ready``: process start → actor warm (the loop starts next); ``first_command``: process start →
        the first command (when the run marked it)."""
        return {
            "ray": self.ray,
            "before_actor_start": self.span("process_start", "actor_start"),
            "ray_init": self.span("actor_start", "ray_ready"),
            "actor_create": self.span("ray_ready", "actor_ready"),
            "actor_imports": (actor_init_s or {}).get("imports"),
            "policy_load": (actor_init_s or {}).get("policy_load"),
            "driver_connect": self.span("driver_connect", "driver_connected"),
            "wait_for_actor": self.span("driver_connected", "joined"),
            "warm_up": self.span("joined", "warm"),
            "ready": self.span("process_start", "warm"),
            "first_command": self.span("process_start", "first_command"),
        }


def cluster_address(address: Optional[str]) -> Optional[str]:
    """The cluster to join: ``address``, else ``RAY_ADDRESS`` (honoured, as Ray's own tools do), else None."""
    return address or os.environ.get("RAY_ADDRESS") or None


def init_ray(address: Optional[str], num_cpus: Optional[int] = 2) -> str:
    """Connect this process to Ray (the policy actor's run, a trainer's workers): "reused" (already up),
    "joined" (``cluster_address(address)``, probed first) or "started" (a local cluster of its own with
    ``num_cpus``, None = every CPU; "local" never joins one left by someone else)."""
    import ray

    if ray.is_initialized():
        return "reused"
    # No usage-stats reporting from a robot's runtime (offline, and one process less to start).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = cluster_address(address)
    if address:
        probe_head(address)
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        return "joined"
    ray.init(address="local", include_dashboard=False, log_to_driver=False, num_cpus=num_cpus)
    return "started"


def probe_head(address: Optional[str], timeout_s: float = 5.0) -> None:
    """A ``host:port`` nobody answers on: one line now, not `ray.init`'s 20 retry cycles (823 s measured).
    None (a local cluster), "auto" and ``ray://`` addresses are left to Ray."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    import socket

    from rtctl.config import ConfigError

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as err:
        raise ConfigError(f"actor.address {address!r}: no Ray head answers there "
                          f"({getattr(err, 'strerror', None) or err}); start one with `ray start --head --port "
                          f"{port}` or fix the address") from None


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(signum)  # what Ray's own handler does: unwind the main thread (the run's safe stop runs)


class _DropThreadWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SIGTERM handler is not set")


def _prepare_main_thread() -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log = logging.getLogger("ray._private.worker")
    if not any(isinstance(f, _DropThreadWarning) for f in log.filters):
        log.addFilter(_DropThreadWarning())  # we installed the handler Ray could not


class ActorStart:
    """Ray + the policy actor, started in a background thread; `result()` waits for the client.

    Errors of the start (a bad address, a policy that does not load) are raised by `result()` in the
    caller's thread; a config conflict (`resolve_extra_latency`) is raised at once. `close()` ends a start
    the run never used (the actor is closed when it arrives)."""

    def __init__(self, policy_cfg: Any, rate_hz: float, actor_cfg: Any, max_concurrency: int,
                 avoid_cpu: Optional[int], key: Any = None) -> None:
        from rtctl.runtime.actor_latency import resolve_extra_latency

        resolve_extra_latency(policy_cfg, actor_cfg)  # a config error here, not in the thread
        self.key = key
        self.clock = StartupClock()
        self.clock.mark("actor_start")
        self._args = (policy_cfg, rate_hz, actor_cfg, max_concurrency, avoid_cpu)
        self._client: Any = None
        self._error: Optional[BaseException] = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        _prepare_main_thread()
        self._thread = threading.Thread(target=self._run, name="rtctl-ray-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from rtctl.runtime.ray_client import RayActorClient

        how = None
        try:
            policy_cfg, rate_hz, actor_cfg, max_concurrency, avoid_cpu = self._args
            how = self.clock.ray = init_ray(actor_cfg.address)
            if how == "started":  # ends the cluster's processes if this process dies without shutting it down
                from rtctl.runtime import ray_reaper

                _REAPERS.append(ray_reaper.start(os.getpid()))
            self.clock.mark("ray_ready")
            client = RayActorClient(policy_cfg, rate_hz, actor_cfg, max_concurrency, avoid_cpu=avoid_cpu)
            self.clock.mark("actor_ready")
            client.startup = self.clock
            with self._lock:
                self._client = client
                if self._closed:
                    client.close()
        except BaseException as err:  # handed to the caller by result()
            self._error = err
        finally:
            self._done.set()
        if how == "started":
            _PARK.wait()

    def result(self, on_event: Optional[Callable[..., None]] = None) -> Any:
        """Wait for the started `RayActorClient`. Marks "driver_connected" (the caller calls this once its
        driver is connected) and "joined" (the client is here)."""
        self.clock.mark("driver_connected")
        limit = 2 * self._args[2].start_timeout_s  # connecting, then the actor's own start (each limited)
        if not self._done.wait(limit):
            from rtctl.config import ConfigError

            where = cluster_address(self._args[2].address) or "a local cluster"
            raise ConfigError(f"actor: Ray ({where}) and the policy actor not ready within {limit:g} s "
                              "(actor.start_timeout_s)")
        self.clock.mark("joined")
        if self._error is not None:
            raise self._error
        if on_event is not None:
            self._client.on_event = on_event
        return self._client

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client = self._client
        if client is not None:
            client.close()


_pending: Optional[ActorStart] = None


def _key(cfg: Any) -> tuple:
    return (cfg.policy.model_dump_json(), cfg.actor.model_dump_json(), cfg.tick.rate_hz,
            cfg.scheduler.max_in_flight + 1, str(cfg.tick.pin_cpu))


def _new_start(cfg: Any) -> ActorStart:
    from rtctl.runtime.tick import choose_cpu

    # + 1: the scheduler's disturbance rule may launch one request past its in-flight cap
    return ActorStart(cfg.policy, cfg.tick.rate_hz, cfg.actor, cfg.scheduler.max_in_flight + 1,
                      avoid_cpu=choose_cpu(cfg.tick.pin_cpu), key=_key(cfg))


def prestart(cfg: Any) -> None:
    """Begin Ray + the policy actor for a validated run config now (returns at once), so they start while
    the caller builds and connects its driver; `execute()` takes it over. No-op when actor.enabled is false.
    Call it after the policy's checkpoint is resolved (`resolve_checkpoint`): the actor loads that one."""
    global _pending
    if not cfg.actor.enabled:
        return
    if _pending is not None:
        if _pending.key == _key(cfg):
            return  # already starting for this config (a caller prestarted before `rtctl deploy` did)
        _pending.close()
    _pending = _new_start(cfg)


def cancel_prestart() -> None:
    """End a prestarted actor that no run took over (the caller failed before `execute()`)."""
    global _pending
    if _pending is not None:
        _pending.close()
        _pending = None


def actor_start_for(cfg: Any) -> ActorStart:
    """The pre-started start for this config (same policy, actor, rate, in-flight and pinning), else a new one."""
    global _pending
    start, _pending = _pending, None
    if start is not None and start.key == _key(cfg):
        return start
    if start is not None:
        start.close()
    return _new_start(cfg)
