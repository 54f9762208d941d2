"""Config sections every trainer shares (the multi-task trainer and MAPPO): rollout workers and logging.
A trainer whose defaults differ subclasses the section and says so."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field

from rtctl.config import StrictModel


class RolloutConfig(StrictModel):
    """Where rollout workers run — one placement vocabulary for every Ray user in rtctl (the policy actor's
    section has the same `address` / `resource`): `backend: local` runs one worker in this process."""

    backend: Literal["ray", "local"] = "ray"
    workers: int = Field(2, ge=1, le=1024)
    num_cpus: Optional[int] = Field(None, ge=1, le=1024)  # ray.init(num_cpus=...) for a locally started Ray
    address: Optional[str] = None  # join this Ray cluster ("host:port"; RAY_ADDRESS when unset); None: a local one
    resource: Optional[str] = None  # custom Ray resource each worker needs (checked to exist before any starts)
    cpus_per_worker: Optional[float] = Field(None, gt=0.0, le=64.0)  # fractional allowed; None: fit the cluster


# Placement is not the identity of a training run: a run resumes on another cluster, or locally
PLACEMENT_KEYS = ("rollout.backend", "rollout.address", "rollout.resource", "rollout.num_cpus",
                  "rollout.cpus_per_worker")


def start_workers(cfg: RolloutConfig, worker_cls: type, args: list[tuple],
                  local_cpus: Optional[int] = None) -> tuple[Any, list, bool]:
    """Ray up (joined or local), then one actor per ``args`` entry with this section's placement.
    Returns (ray, workers, whether this call connected Ray: then the caller shuts it down). A wrong address or an absent resource: one line.
    A local cluster gets ``num_cpus`` CPUs, else ``local_cpus`` (None: every CPU of this machine)."""
    import ray

    from rtctl.config import ConfigError
    from rtctl.runtime.ray_start import init_ray

    started = init_ray(cfg.address, num_cpus=cfg.num_cpus or local_cpus) != "reused"  # ours to shut down
    have = ray.cluster_resources()
    if cfg.resource and cfg.resource not in have:
        raise ConfigError(f"rollout.resource {cfg.resource!r} is offered by no node of the cluster (it has: "
                          f"{', '.join(sorted(k for k in have if not k.startswith('node:')))})")
    # fractional CPUs when asking for more workers than the cluster has, so no worker waits forever
    cpus = cfg.cpus_per_worker or min(1.0, float(have.get("CPU", 1.0)) / cfg.workers)
    opts: dict[str, Any] = {"num_cpus": cpus, "scheduling_strategy": "SPREAD"}
    if cfg.resource:
        opts["resources"] = {cfg.resource: 0.001}
    remote = ray.remote(**opts)(worker_cls)
    return ray, [remote.remote(*a) for a in args], started


class LogConfig(StrictModel):
    tensorboard: bool = True
    progress: bool = True
    checkpoint_every: int = Field(50, ge=1)  # iterations
