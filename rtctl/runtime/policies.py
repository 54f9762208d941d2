"""Build a `Policy` from its config section (inside the tick's process or inside a Ray actor)."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydantic import Field, field_validator

from rtctl.config import ConfigError, StrictModel
from rtctl.policies.base import ActionChunk, chunk_for, meta_path, read_checkpoint_meta


class PolicyConfig(StrictModel):
    type: str = "expert"  # a registered policy type (register_policy): expert, bc, mlp, lerobot, or yours
    # bc: the .pt made by `rtctl train bc`; mlp: a policy.pt from `rtctl train multitask` / `rtctl export`;
    # lerobot: a LeRobot checkpoint folder (config.json + weights + processors), e.g. .../pretrained_model
    checkpoint: Optional[str] = None
    train_config: Optional[str] = None  # bc: if no checkpoint is given, train (once, cached) from this config
    horizon: int = Field(50, ge=1, le=1000)
    # run a checkpoint at a tick rate other than the one it was trained at (see check_checkpoint)
    allow_rate_mismatch: bool = False
    v_max: float = Field(1.5, gt=0.0, le=10.0)  # expert: fastest joint speed, rad/s
    # Emulate a large VLA on a CPU box (Ray actor only): shorthand for actor.extra_latency {kind: constant, ms: X},
    # the emulated inference time per request (rtctl.runtime.actor_latency); setting both is a config error.
    extra_latency_ms: float = Field(0.0, ge=0.0, le=60000.0)
    task: str = ""  # lerobot: the language prompt (SmolVLA)
    device: str = "cpu"  # lerobot: torch device of the policy

    @field_validator("type")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"unknown policy type {v!r} (known: {', '.join(sorted(POLICIES))})")
        return v


class ExpertChunkPolicy:
    """The sim's scripted expert as a `Policy` (sim/ may not import policies/, so it is wrapped here)."""

    action_dim = 6

    def __init__(self, horizon: int, rate_hz: float, v_max: float) -> None:
        from rtctl.sim.arm_expert import ExpertPolicy

        self._expert = ExpertPolicy(horizon, rate_hz, v_max)
        self.chunk_size = horizon

    def reset(self) -> None:
        self._expert.reset()

    def predict_chunk(self, obs: Any) -> ActionChunk:
        return chunk_for(obs, self._expert.chunk(obs))


def resolve_checkpoint(cfg: PolicyConfig, resolver: Optional[Callable[[PolicyConfig], PolicyConfig]]) -> PolicyConfig:
    """The config with ``policy.checkpoint`` set when it names a ``train_config`` instead. Training is the
    trainers' business, not the runtime's: the app (`rtctl run` / `rtctl deploy`) hands in
    `rtctl.train.checkpoints.resolve_checkpoint`, which trains on first use (seeded, cached under artifacts/)."""
    if cfg.checkpoint is not None or cfg.train_config is None:
        return cfg
    if resolver is None:
        raise ConfigError(f"policy.train_config {cfg.train_config}: this caller cannot train; name a "
                          "policy.checkpoint, or run it with `rtctl run` / `rtctl deploy`")
    return resolver(cfg)


# policy.type → the checkpoint kinds (`checkpoint_meta(kind, ...)` of each trainer) it can load
CHECKPOINT_KINDS = {"bc": ("bc",), "mlp": ("mlp",), "lerobot": ("lerobot_act", "lerobot")}


def check_checkpoint(cfg: PolicyConfig, rate_hz: float, action_dim: Optional[int] = None) -> dict[str, Any]:
    """Refuse a checkpoint this run would misuse, before any weights load; return its metadata
    (`rtctl.policies.base.read_checkpoint_meta`: JSON only, no torch, for every checkpoint rtctl writes).

    Rules, each a one-line `ConfigError` naming the checkpoint file and the fix:

    * rate: the checkpoint's ``rate_hz`` must equal the run's tick rate. A chunk's rows are commands for
      consecutive ticks at the rate it was trained at, so a 30 Hz policy run at 50 Hz moves 50/30 = 1.7×
      faster than it learned to. With ``policy.allow_rate_mismatch: true`` the run proceeds (with a warning):
      the chunk is replayed row by row at the run's rate, i.e. its motion is time-scaled by run/trained rate.
    * no rate recorded (a checkpoint made before rtctl recorded it, or not by rtctl, e.g. a LeRobot folder from
      the hub): refused, saying how to add the metadata file; with allow_rate_mismatch it runs, with a
      warning. Checkpoints made from ``policy.train_config`` are upgraded by the artifact cache instead.
    * horizon: ``policy.horizon`` must not exceed the checkpoint's chunk (the scheduler would plan rows the
      chunk does not have); a shorter one runs the first ``policy.horizon`` rows of each chunk.
    * kind: a checkpoint whose metadata names the trainer that made it must be one ``policy.type`` loads
      (`CHECKPOINT_KINDS`); action size: its ``action_dim`` must equal the driver's (``action_dim``, when the
      caller knows it), else every chunk would be rejected at the first tick.
    """
    if cfg.type == "expert" or cfg.checkpoint is None:
        return {}
    ckpt = cfg.checkpoint
    try:
        meta = read_checkpoint_meta(ckpt)
    except (OSError, ValueError) as err:
        raise ConfigError(f"policy.checkpoint: {err}") from None
    trained = meta.get("rate_hz")
    if trained is None:
        msg = (f"policy.checkpoint {ckpt} records no control rate (made before rtctl recorded it, or not by rtctl): "
               f"retrain it, or write {meta_path(ckpt)} as {{\"rate_hz\": <Hz it was trained at>, \"horizon\": "
               f"<actions per chunk>, \"action_units\": \"rad\"}}, or set policy.allow_rate_mismatch: true "
               f"to run it unchecked at {rate_hz:g} Hz")
        if not cfg.allow_rate_mismatch:
            raise ConfigError(msg)
        warnings.warn(f"{msg} (it is set: running unchecked)", RuntimeWarning, stacklevel=2)
    elif not math.isclose(float(trained), rate_hz, rel_tol=1e-6):
        factor = rate_hz / float(trained)
        msg = (f"policy.checkpoint {ckpt} was trained at {float(trained):g} Hz but the run ticks at {rate_hz:g} Hz "
               f"(its chunks would play {factor:.2f}× {'faster' if factor > 1 else 'slower'}): retrain it at "
               f"{rate_hz:g} Hz or set policy.allow_rate_mismatch: true")
        if not cfg.allow_rate_mismatch:
            raise ConfigError(msg)
        warnings.warn(f"{msg} (it is set: the chunk is replayed at {rate_hz:g} Hz)", RuntimeWarning, stacklevel=2)
    kind, kinds = meta.get("kind"), CHECKPOINT_KINDS.get(cfg.type, ())
    if kind is not None and kinds and kind not in kinds:
        raise ConfigError(f"policy.checkpoint {ckpt} is a {kind!r} checkpoint, which policy.type {cfg.type!r} does not "
                          f"load: set policy.type to the one that made it, or name a {cfg.type} checkpoint")
    dim = meta.get("action_dim")
    if dim is not None and action_dim is not None and int(dim) != int(action_dim):
        raise ConfigError(f"policy.checkpoint {ckpt} outputs {int(dim)} actions per row but the driver takes "
                          f"{int(action_dim)}: name a checkpoint trained for this robot")
    horizon = meta.get("horizon")
    if horizon is not None and cfg.horizon > int(horizon):
        raise ConfigError(f"policy.horizon: {cfg.horizon} is longer than the {int(horizon)}-action chunk "
                          f"policy.checkpoint {ckpt} was trained for: set policy.horizon <= {int(horizon)} or "
                          f"retrain it with horizon {cfg.horizon}")
    return meta


def _check_loaded(cfg: PolicyConfig, meta: dict[str, Any], policy: Any) -> Any:
    """The model must agree with its metadata (a sidecar written by hand, or left over, may not)."""
    h = meta.get("horizon")
    if h is not None and int(h) != int(policy.chunk_size):
        raise ConfigError(f"policy.checkpoint {cfg.checkpoint}: its metadata ({meta_path(cfg.checkpoint)}) says "
                          f"horizon {h} but the model returns {policy.chunk_size}-action chunks: fix or delete that "
                          "file")
    if cfg.horizon > policy.chunk_size:
        raise ConfigError(f"policy.horizon: {cfg.horizon} is longer than the policy's chunk ({policy.chunk_size}) "
                          f"of policy.checkpoint {cfg.checkpoint}")
    return policy


@dataclass(frozen=True)
class PolicyEntry:
    build: Callable[[PolicyConfig, float], Any]  # (policy section, tick rate) → a `Policy` (policies/base.py)
    checkpoint: Optional[str] = None  # what policy.checkpoint must name; None: the type takes none


POLICIES: dict[str, PolicyEntry] = {}


def register_policy(type_name: str, build: Callable[[PolicyConfig, float], Any],
                    checkpoint: Optional[str] = None) -> None:
    """``policy.type: type_name`` builds with ``build(cfg.policy, rate_hz)``. Register in a module the policy
    actor's process imports too (the actor builds the policy from the config, in its own process)."""
    POLICIES[type_name] = PolicyEntry(build, checkpoint)


def make_policy(cfg: PolicyConfig, rate_hz: float) -> Any:
    """Build the policy a run config asks for at tick rate ``rate_hz``; a checkpoint is checked first
    (`check_checkpoint`: its trained rate and horizon against the run's) and against its model after loading."""
    meta = check_checkpoint(cfg, rate_hz)
    entry = POLICIES.get(cfg.type)
    if entry is None:
        raise ValueError(f"policy.type: unknown policy type {cfg.type!r} (known: {', '.join(sorted(POLICIES))})")
    if entry.checkpoint is None:
        return entry.build(cfg, rate_hz)
    if cfg.checkpoint is None:
        raise ValueError(f"policy.checkpoint: required for policy type {cfg.type!r} ({entry.checkpoint})")
    return _check_loaded(cfg, meta, entry.build(cfg, rate_hz))


def _bc(cfg: PolicyConfig, rate_hz: float) -> Any:
    from rtctl.policies.bc import BCPolicy

    return BCPolicy.load(cfg.checkpoint)


def _mlp(cfg: PolicyConfig, rate_hz: float) -> Any:
    from rtctl.policies.mlp import MLPPolicy

    return MLPPolicy.load(cfg.checkpoint)


def _lerobot(cfg: PolicyConfig, rate_hz: float) -> Any:
    from rtctl.policies.lerobot_adapter import LeRobotPolicy

    return LeRobotPolicy.load(cfg.checkpoint, device=cfg.device, task=cfg.task)


register_policy("expert", lambda cfg, rate_hz: ExpertChunkPolicy(cfg.horizon, rate_hz, cfg.v_max))
register_policy("bc", _bc, checkpoint="the .pt of `rtctl train bc`, or give policy.train_config")
register_policy("mlp", _mlp, checkpoint="a policy.pt from `rtctl train multitask` / `rtctl export`")
register_policy("lerobot", _lerobot, checkpoint="a LeRobot checkpoint folder, or give policy.train_config")
