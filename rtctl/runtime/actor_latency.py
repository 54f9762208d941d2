"""Injected inference latency of the policy actor, on the wall clock: constant, normal (clipped) or drifting.

Rules:
* A draw is the *emulated inference time* of one request, in ms: the actor runs the model, then sleeps until
  model time + sleep reaches the draw. A model slower than the draw gets no sleep (never a negative one).
  The actor reports the model time and the injected sleep separately.
* Parameterised like `rtctl.runtime.inference.jittered_delay` (its virtual-clock counterpart, in ticks):
  a mean, a Gaussian std, and a clip to [min, max]; ``drift`` moves the mean linearly with the seconds
  since the actor's first request (a restarted actor starts its drift again).
* Draws come from ``numpy.random.default_rng(seed)`` in request order: same seed, same sequence.
* ``policy.extra_latency_ms: X`` is shorthand for ``actor.extra_latency: {kind: constant, ms: X}``;
  setting both is a config error. `resolve_extra_latency` is the one place that decides.
"""
from __future__ import annotations

import threading
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from rtctl.config import ConfigError, StrictModel

MAX_MS = 60000.0


class ExtraLatencyConfig(StrictModel):
    kind: Literal["constant", "normal", "drift"] = "constant"
    ms: float = Field(0.0, ge=0.0, le=MAX_MS)  # constant: the value; normal: the mean; drift: the mean at the start
    std_ms: float = Field(0.0, ge=0.0, le=MAX_MS)  # normal, drift: Gaussian spread around the mean
    min_ms: float = Field(0.0, ge=0.0, le=MAX_MS)  # every draw is clipped to [min_ms, max_ms]
    max_ms: float = Field(MAX_MS, ge=0.0, le=MAX_MS)
    drift_ms_per_s: float = Field(0.0, ge=-1000.0, le=1000.0)  # drift: mean change per second since the first request
    seed: int = Field(0, ge=0)

    @field_validator("std_ms")
    @classmethod
    def _std_needs_a_distribution(cls, v: float, info: ValidationInfo) -> float:
        kind = info.data.get("kind")
        if v > 0 and kind == "constant":
            raise ValueError("std_ms is used only with kind 'normal' or 'drift' (kind is 'constant')")
        return v

    @field_validator("max_ms")
    @classmethod
    def _max_not_below_min(cls, v: float, info: ValidationInfo) -> float:
        lo = info.data.get("min_ms")
        if lo is not None and v < lo:
            raise ValueError(f"max_ms ({v}) is below min_ms ({lo})")
        return v

    @field_validator("drift_ms_per_s")
    @classmethod
    def _drift_needs_kind_drift(cls, v: float, info: ValidationInfo) -> float:
        kind = info.data.get("kind")
        if v != 0 and kind is not None and kind != "drift":
            raise ValueError(f"drift_ms_per_s is used only with kind 'drift' (kind is {kind!r})")
        return v


def sample_extra_latency_ms(cfg: ExtraLatencyConfig, rng: np.random.Generator, elapsed_s: float = 0.0) -> float:
    """One draw of the emulated inference time (ms), ``elapsed_s`` after the actor's first request."""
    mean = cfg.ms + (cfg.drift_ms_per_s * elapsed_s if cfg.kind == "drift" else 0.0)
    value = rng.normal(mean, cfg.std_ms) if cfg.kind != "constant" else mean
    return float(np.clip(value, cfg.min_ms, cfg.max_ms))


def resolve_extra_latency(policy_cfg: Any, actor_cfg: Any) -> ExtraLatencyConfig:
    """The run's injected latency: ``actor.extra_latency``, or ``policy.extra_latency_ms`` as a constant."""
    own: ExtraLatencyConfig = actor_cfg.extra_latency
    alias = float(getattr(policy_cfg, "extra_latency_ms", 0.0) or 0.0)
    if alias <= 0:
        return own
    if own != ExtraLatencyConfig():
        raise ConfigError("config error: keys 'policy.extra_latency_ms' and 'actor.extra_latency' are both set; keep "
                          "one (policy.extra_latency_ms: X means actor.extra_latency: {kind: constant, ms: X})")
    return ExtraLatencyConfig(kind="constant", ms=alias)


class LatencyInjector:
    """Draws per request inside the actor; thread-safe (a threaded actor serves several requests at once)."""

    def __init__(self, cfg: ExtraLatencyConfig) -> None:
        self.cfg = cfg
        self.off = cfg == ExtraLatencyConfig()
        self._rng = np.random.default_rng(cfg.seed)
        self._first_ns: Optional[int] = None
        self._lock = threading.Lock()

    def draw_ms(self, now_ns: int) -> float:
        if self.off:
            return 0.0
        with self._lock:
            if self._first_ns is None:
                self._first_ns = now_ns
            return sample_extra_latency_ms(self.cfg, self._rng, (now_ns - self._first_ns) / 1e9)
