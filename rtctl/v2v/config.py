"""Typed settings of one car's V2V link: who it is, where its peers are, what it accepts.

A trial config nests `V2VConfig` under its own key; `rtctl.config.load_config` turns mistakes into errors that
name the key. The receive limits (`Limits`) are read on every message, so they are plain attributes.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rtctl.config import StrictModel

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")  # used with fullmatch: "$" would let "car0\n" in
ENDPOINT_PREFIXES = ("tcp://", "ipc://", "inproc://")


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be 1-32 characters from A-Z a-z 0-9 _ -")
    return value


def check_endpoint(value: str) -> str:
    if not value.startswith(ENDPOINT_PREFIXES):
        raise ValueError(f"endpoint {value!r} must start with one of {', '.join(ENDPOINT_PREFIXES)}")
    return value


class Limits(StrictModel):
    """What a receiver accepts; anything outside is dropped and counted (see docs/v2v_schema.md)."""

    max_message_bytes: int = Field(1024, ge=128, le=65536)
    max_age_s: float = Field(0.5, gt=0.0, le=60.0)
    max_future_s: float = Field(0.05, ge=0.0, le=10.0)  # t_meas ahead of our clock by more than this: bad clock
    max_abs_position_m: float = Field(1.0e4, gt=0.0, le=1.0e7)
    max_speed_mps: float = Field(100.0, gt=0.0, le=1.0e3)
    max_accel_mps2: float = Field(100.0, gt=0.0, le=1.0e3)
    max_error_bound_m: float = Field(100.0, gt=0.0, le=1.0e4)
    max_intent: int = Field(63, ge=0, le=255)


class ClockConfig(StrictModel):
    """How sender stamps become local time.

    `same_host`: all cars share one monotonic clock (sim trials, tests). `config`: offsets are known (chrony or
    PTP keep the hosts' realtime clocks together, so offsets are usually 0). `estimate`: NTP-style ping/pong over
    the bus, min-RTT filter; a peer's messages are dropped as `unsynced` until its first pong.
    """

    source: Literal["monotonic", "realtime"] = "monotonic"
    offsets: Literal["same_host", "config", "estimate"] = "same_host"
    offset_ns: dict[str, int] = Field(default_factory=dict)  # local - peer, for offsets: config
    ping_interval_s: float = Field(1.0, gt=0.0, le=60.0)
    window: int = Field(8, ge=1, le=256)  # pong samples kept per peer for the min-RTT filter

    @model_validator(mode="after")
    def _source_fits(self) -> "ClockConfig":
        if self.offsets == "same_host" and self.source != "monotonic":
            raise ValueError("clock.offsets 'same_host' needs clock.source 'monotonic'")
        if self.offsets != "config" and self.offset_ns:
            raise ValueError("clock.offset_ns is only read when clock.offsets is 'config'")
        return self


class InjectionConfig(StrictModel):
    """Delay and drop injection (the same model in the vectorised sim and on the real bus).

    kind `fixed`: every message `steps` control steps late. `uniform`: an integer number of steps drawn from
    [lo_steps, hi_steps]. `truncated_gaussian`: mean_s ± std_s, redrawn until inside [lo_s, hi_s].
    """

    kind: Literal["none", "fixed", "uniform", "truncated_gaussian"] = "none"
    dt_s: float = Field(0.1, gt=0.0, le=10.0)  # one control step
    steps: int = Field(0, ge=0, le=1000)
    lo_steps: int = Field(0, ge=0, le=1000)
    hi_steps: int = Field(0, ge=0, le=1000)
    mean_s: float = Field(0.12, ge=0.0, le=60.0)
    std_s: float = Field(0.04, ge=0.0, le=60.0)
    lo_s: float = Field(0.05, ge=0.0, le=60.0)
    hi_s: float = Field(0.2, ge=0.0, le=60.0)
    drop_p: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _ranges(self) -> "InjectionConfig":
        if self.lo_steps > self.hi_steps:
            raise ValueError(f"injection.lo_steps {self.lo_steps} > injection.hi_steps {self.hi_steps}")
        if self.lo_s > self.hi_s:
            raise ValueError(f"injection.lo_s {self.lo_s} > injection.hi_s {self.hi_s}")
        return self


class V2VConfig(StrictModel):
    """One car's link. `peers` maps every other sender (cars, the operator's e-stop) to its PUB endpoint."""

    id: str
    bind: str = "tcp://127.0.0.1:*"
    peers: dict[str, str] = Field(default_factory=dict)
    keys_dir: str | None = None  # from `rtctl keys`; None = no CURVE (loopback tests, sim only)
    hwm: int = Field(100, ge=1, le=100000)
    limits: Limits = Field(default_factory=Limits)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    injection: InjectionConfig = Field(default_factory=InjectionConfig)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_id(v)

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        return check_endpoint(v)

    @field_validator("peers")
    @classmethod
    def _peers(cls, v: dict[str, str]) -> dict[str, str]:
        for peer, endpoint in v.items():
            check_id(peer, "peer id")
            check_endpoint(endpoint)
        return v

    @model_validator(mode="after")
    def _not_own_peer(self) -> "V2VConfig":
        if self.id in self.peers:
            raise ValueError(f"peers lists this car's own id {self.id!r}")
        return self
