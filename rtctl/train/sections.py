"""Config sections every trainer shares (the multi-task trainer and MAPPO): rollout workers and logging.
A trainer whose defaults differ subclasses the section and says so."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from rtctl.config import StrictModel


class RolloutConfig(StrictModel):
    backend: Literal["ray", "local"] = "ray"
    workers: int = Field(2, ge=1, le=1024)
    num_cpus: Optional[int] = Field(None, ge=1, le=1024)  # ray.init(num_cpus=...) for a locally started Ray


class LogConfig(StrictModel):
    tensorboard: bool = True
    progress: bool = True
    checkpoint_every: int = Field(50, ge=1)  # iterations
