"""Typed trial config (`rtctl trial CONFIG`): the cars, their rates, policy, shield, V2V link and faults.

`mode: sim` runs a sim-world process that serves every car's driver over ZeroMQ; `mode: hardware` gives each
car its VESC port, calibration and pose source (see configs/trial_cars.yaml). Every car process gets the
same resolved config plus its own id.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from rtctl.config import StrictModel
from rtctl.v2v.config import ClockConfig, InjectionConfig, Limits, check_endpoint, check_id


class Rates(StrictModel):
    control_hz: float = Field(50.0, ge=30.0, le=200.0)  # shield + low-level control (the tick)
    policy_hz: float = Field(10.0, ge=1.0, le=50.0)  # behaviour choice; a divisor of control_hz
    v2v_hz: float = Field(10.0, ge=5.0, le=50.0)  # own-state broadcasts; a divisor of control_hz

    @model_validator(mode="after")
    def _divides(self) -> "Rates":
        for name in ("policy_hz", "v2v_hz"):
            n = self.control_hz / getattr(self, name)
            if abs(n - round(n)) > 1e-6:
                raise ValueError(f"rates.{name} ({getattr(self, name)}) must divide rates.control_hz "
                                 f"({self.control_hz}) a whole number of times")
        return self


class CarPolicyConfig(StrictModel):
    """`keep_lane`: scripted (keep lane at the car's target speed), until a trained actor exists.
    `marl`: the exported MAPPO actor (rtctl.policies.marl_actor) loaded from `checkpoint`.
    The key is ``type``, as in a run config's policy section; ``kind`` (its older name) is accepted."""

    type: Literal["keep_lane", "marl"] = "keep_lane"
    checkpoint: Optional[str] = None
    target_speed: float = Field(1.5, gt=0.0, le=3.0)  # m/s, unless a car sets its own

    @model_validator(mode="before")
    @classmethod
    def _kind_is_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" in data:
            data = dict(data)
            if "type" in data:
                raise ValueError("policy: give 'type' (or its older name 'kind'), not both")
            data["type"] = data.pop("kind")
        return data

    @model_validator(mode="after")
    def _checkpoint(self) -> "CarPolicyConfig":
        if self.type == "marl" and not self.checkpoint:
            raise ValueError("policy.checkpoint is required for policy.type 'marl'")
        return self


class ShieldSettings(StrictModel):
    headway: float = Field(0.3, ge=0.0, le=5.0)  # ε₁ s
    standstill_gap: float = Field(0.15, ge=0.0, le=5.0)  # m
    gamma: float = Field(0.5, gt=0.0, le=1.0)
    stale_margin_mps: float = Field(0.3, ge=0.0, le=5.0)  # position margin growth per second of message age
    max_state_age_s: float = Field(0.3, gt=0.0, le=5.0)  # own state older than this: brake


class PoseConfig(StrictModel):
    kind: Literal["zmq", "udp", "odometry"] = "zmq"
    endpoint: str = "tcp://127.0.0.1:5600"  # zmq: the mocap bridge's PUB; udp: host:port to listen on
    body: Optional[str] = None  # mocap body name; default the car id


class CarConfig(StrictModel):
    id: str
    target_speed: Optional[float] = Field(None, gt=0.0, le=3.0)
    v2v_bind: Optional[str] = None  # default tcp://<v2v.host>:* (sim) ; hardware: tcp://0.0.0.0:5550
    v2v_endpoint: Optional[str] = None  # where peers reach this car (hardware: tcp://10.0.0.11:5550)
    # hardware mode
    port: Optional[str] = None  # VESC serial port, e.g. /dev/ttyACM0
    calibration: Optional[str] = None  # configs/calibration/car_0.yaml
    pose: PoseConfig = Field(default_factory=PoseConfig)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if v == "op":
            raise ValueError("car id 'op' is the operator's e-stop sender")
        if v == "world":
            raise ValueError("car id 'world' names the sim world's process (faults.term, faults.disk_full)")
        return check_id(v, "car id")


class V2VSettings(StrictModel):
    curve: bool = True  # CURVE keys; made into <run>/keys (as `rtctl keys` does) unless keys_dir is given
    keys_dir: Optional[str] = None
    host: str = "127.0.0.1"  # where sim-mode cars bind (loopback)
    hwm: int = Field(100, ge=1, le=100000)
    limits: Limits = Field(default_factory=Limits)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    injection: InjectionConfig = Field(default_factory=InjectionConfig)
    error_bound_m: float = Field(0.02, ge=0.0, le=10.0)  # sent with each state: the pose source's accuracy
    # the operator's e-stop sender (id "op"); hardware: a fixed address the cars can reach
    operator_bind: Optional[str] = None  # default tcp://<host>:*
    operator_endpoint: Optional[str] = None  # hardware: where cars reach it, e.g. tcp://10.0.0.1:5560


class SimSettings(StrictModel):
    scenario: str = "highway-low"  # rtctl.sim.vehicles scenarios: highway-*, oval-*, intersection
    seed: int = Field(0, ge=0)
    world_hz: float = Field(100.0, ge=30.0, le=500.0)
    command_timeout_s: float = Field(0.25, gt=0.0, le=5.0)  # like the VESC firmware: brake without commands
    perception_range_m: float = Field(8.0, ge=0.0, le=100.0)  # non-V2V cars within this range are sensed
    humans: bool = True  # scripted non-cooperative traffic of the scenario

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, v: str) -> str:
        from rtctl.sim.vehicles.scenarios import ALIASES, SCENARIOS

        if ALIASES.get(v, v) not in SCENARIOS:
            raise ValueError(f"trial scenario {v!r}: choose from {', '.join(SCENARIOS + tuple(ALIASES))}")
        return v


class Faults(StrictModel):
    """Faults injected at a time in seconds after the trial's start (tests, drills, `rtctl bench faults`)."""

    kill: dict[str, float] = Field(default_factory=dict)  # car id -> SIGKILL its process (sent by the launcher)
    term: dict[str, float] = Field(default_factory=dict)  # car id or "world" -> SIGTERM its process (launcher)
    disk_full: dict[str, float] = Field(default_factory=dict)  # car id or "world" -> its run folder's open
    # files point at /dev/full (ENOSPC on the next write; done by the process itself, rtctl.vehicles.trial.proc.fill_disk)
    estop_at_s: Optional[float] = Field(None, ge=0.0)  # operator e-stop at this time (tests, drills)


class TrialConfig(StrictModel):
    mode: Literal["sim", "hardware"] = "sim"
    duration_s: float = Field(10.0, gt=0.0, le=3600.0)
    cars: list[CarConfig]
    rates: Rates = Field(default_factory=Rates)
    policy: CarPolicyConfig = Field(default_factory=CarPolicyConfig)
    shield: ShieldSettings = Field(default_factory=ShieldSettings)
    v2v: V2VSettings = Field(default_factory=V2VSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    faults: Faults = Field(default_factory=Faults)
    startup_timeout_s: float = Field(60.0, gt=0.0, le=600.0)
    log_hz: float = Field(10.0, gt=0.0, le=200.0)
    plots: bool = True  # PNGs in <run>/plots (rtctl report-style redraws need only the logs)

    @model_validator(mode="after")
    def _cars(self) -> "TrialConfig":
        ids = [c.id for c in self.cars]
        if not 1 <= len(ids) <= 8:
            raise ValueError(f"cars: 1..8 cars, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"cars: ids repeat: {ids}")
        unknown = set(self.faults.kill) - set(ids)
        if unknown:
            raise ValueError(f"faults.kill names cars that are not in the trial: {sorted(unknown)}")
        procs = set(ids) | ({"world"} if self.mode == "sim" else set())
        for key in ("term", "disk_full"):
            unknown = set(getattr(self.faults, key)) - procs
            if unknown:
                raise ValueError(f"faults.{key} names processes that are not in the trial: {sorted(unknown)} "
                                 f"(the cars, or 'world' in sim mode)")
        for key in ("kill", "term", "disk_full"):
            if any(t < 0 for t in getattr(self.faults, key).values()):
                raise ValueError(f"faults.{key}: times are seconds after the start, >= 0")
        for c in self.cars:
            for ep in (c.v2v_bind, c.v2v_endpoint):
                if ep is not None:
                    check_endpoint(ep)
            if self.mode == "hardware" and not c.port:
                raise ValueError(f"car {c.id}: hardware mode needs cars[].port (the VESC serial port)")
            if self.mode == "hardware" and not c.v2v_endpoint and len(ids) > 1:
                raise ValueError(f"car {c.id}: hardware mode needs cars[].v2v_endpoint (where peers reach it)")
        return self
