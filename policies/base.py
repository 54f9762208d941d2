"""The `Policy` protocol: what every policy rtctl runs looks like.

A policy maps one observation to an *action chunk*: H future commands (absolute joint targets in radians for
the arm, behaviour/actuator commands for vehicles). Shaped after LeRobot's `PreTrainedPolicy`
(`reset()`, `predict_action_chunk(batch) -> (B, H, A)`), minus the batch axis and the torch types, so a
LeRobot policy wraps in a few lines: the adapter builds LeRobot's batch dict
(`observation.state`, `observation.images.<cam>`, `task`) from rtctl's observation dict, runs LeRobot's own
pre-processor → `predict_action_chunk` → post-processor (normalisation lives in those processors, not in the
policy), and returns the unnormalised chunk here. Units are converted by the driver, never by the policy:
LeRobot SO-101 checkpoints expect calibrated −100..100 joint units, so their adapter maps radians at its edge.

What the lerobot 0.4.4 spike showed (a scratch venv, not kept): `predict_action_chunk(batch, **kw)` returns
the *normalised* chunk as a (B, H, A) tensor; the post-processor unnormalises (B, A) rows, so the adapter
applies it to the chunk reshaped to (B·H, A). The pre-processor takes un-batched tensors keyed
``observation.state`` / ``observation.environment_state`` / ``observation.images.<cam>`` and adds the batch
axis itself; a state-only ACT runs with ``observation.environment_state`` carrying the target (no image).

Observations are plain dicts of named numpy arrays (see `rtctl.drivers.base` for the keys the arm uses) plus
two scalars the runtime adds: ``t_ns`` (monotonic stamp of the measurement) and ``tick`` (the control tick the
chunk is meant to start at). Under rollforward the runtime replaces ``state`` by the state the robot will
have at that tick, so a policy never needs to know which scheduling mode it runs under.

Checkpoints carry metadata (control rate, horizon, action units and names): `read_checkpoint_meta` reads it
without torch or the weights, `write_checkpoint_meta` writes it (see "checkpoint metadata" below).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

Observation = Mapping[str, Any]


@dataclass(frozen=True)
class ActionChunk:
    """H × action_dim commands; row 0 is meant for tick ``start_tick``."""

    actions: np.ndarray
    start_tick: int

    def __post_init__(self) -> None:
        a = np.asarray(self.actions)
        if a.ndim != 2:
            raise ValueError(f"ActionChunk.actions must be (H, action_dim), got shape {a.shape}")

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])


@runtime_checkable
class Policy(Protocol):
    """A chunking policy. Stateless between chunks unless `reset()` says otherwise."""

    chunk_size: int  # H
    action_dim: int

    def reset(self) -> None:
        """Forget any internal state (queues, RNG draws tied to an episode)."""

    def predict_chunk(self, obs: Observation) -> ActionChunk:
        """Return the next chunk conditioned on ``obs``; ``start_tick`` = ``obs["tick"]``."""


def chunk_for(obs: Observation, actions: np.ndarray) -> ActionChunk:
    """Stamp ``actions`` with the tick the observation was conditioned for."""
    return ActionChunk(np.asarray(actions, dtype=np.float64), int(obs.get("tick", -1)))


# -- checkpoint metadata ------------------------------------------------------------------------------------
# Every checkpoint rtctl writes records what it was trained for, so that a run at another rate is refused
# (`rtctl.runtime.policies.check_checkpoint`) instead of silently playing its chunks faster or slower:
#
# * ``rate_hz``: the control rate its chunk rows are spaced at (None: not known, or not a control policy);
# * ``horizon``: actions per chunk;
# * ``action_units``: what one action value is ("rad": absolute joint targets; None: not known);
# * ``action_dim`` and ``action_names`` (one per action column, where known);
# * ``kind`` (bc | lerobot_act | mlp), ``format`` (META_FORMAT), plus trainer extras (seed, max_delay, ...).
#
# Where it lives: a file checkpoint (``policy.pt``) embeds it (``blob["meta"]``) and repeats it in a JSON
# sidecar ``policy.pt.meta.json`` that carries the file's sha256; a LeRobot folder gets ``rtctl_meta.json``
# (LeRobot ignores extra files, so its config.json and loaders stay untouched). The sidecars exist so that
# the metadata is read with neither torch nor the weights: the tick's process validates a checkpoint before
# Ray starts, and importing torch alone costs it ~500 MB.

META_FORMAT = "rtctl.checkpoint_meta/1"
META_SUFFIX = ".meta.json"  # appended to a file checkpoint's name
FOLDER_META = "rtctl_meta.json"  # inside a LeRobot checkpoint folder


def checkpoint_meta(kind: str, rate_hz: Optional[float], horizon: int, action_units: Optional[str],
                    action_dim: int, action_names: Optional[Sequence[str]] = None, **extra: Any) -> dict[str, Any]:
    """The metadata dict a trainer writes (plain JSON types only)."""
    if action_names is not None and len(action_names) != action_dim:
        raise ValueError(f"checkpoint_meta: {len(action_names)} action names for action_dim {action_dim}")
    return {"format": META_FORMAT, "kind": kind, "rate_hz": None if rate_hz is None else float(rate_hz),
            "horizon": int(horizon), "action_units": action_units, "action_dim": int(action_dim),
            "action_names": None if action_names is None else [str(n) for n in action_names], **extra}


def meta_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's metadata file is (or would be written)."""
    p = Path(checkpoint)
    return p / FOLDER_META if p.is_dir() else p.with_name(p.name + META_SUFFIX)


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_checkpoint_meta(checkpoint: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``meta`` next to (a file) or into (a folder) an existing checkpoint, atomically; a file's sidecar
    records its sha256, so a sidecar left beside a replaced file is ignored rather than believed."""
    p = Path(checkpoint)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    data = dict(meta)
    if p.is_file():
        data["checkpoint_sha256"] = file_sha256(p)
    out = meta_path(p)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=_plain) + "\n")
    os.replace(tmp, out)  # two processes upgrading the same cached checkpoint write the same text
    return out


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """A checkpoint's metadata without loading its weights (no ``rate_hz`` in it for a checkpoint made before
    rtctl recorded it). What the model itself fixes (a LeRobot folder's chunk size from config.json, a .pt's
    architecture) is filled in and wins over the file. Reads JSON only, unless a .pt has no trusted sidecar:
    then the .pt's embedded copy is read with ``torch.load(mmap=True, weights_only=True)`` (tensors are
    mapped, not read)."""
    p = Path(path)
    if p.is_dir():
        side = p / FOLDER_META
        return {**(_read_json(side) if side.is_file() else {}), **_lerobot_config_meta(p)}
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    side = meta_path(p)
    if side.is_file():
        meta = _read_json(side)
        want = meta.pop("checkpoint_sha256", None)  # absent in a hand-written sidecar: trusted as written
        if want is None or want == file_sha256(p):
            return meta
    return _embedded_meta(p)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"checkpoint metadata {path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"checkpoint metadata {path}: must be a JSON object, got {type(data).__name__}")
    return data


def _plain(x: Any) -> Any:
    if hasattr(x, "tolist"):  # numpy scalars and arrays
        return x.tolist()
    raise TypeError(f"checkpoint metadata: {type(x).__name__} is not JSON-serialisable")


def _lerobot_config_meta(folder: Path) -> dict[str, Any]:
    """Chunk size and action width from a LeRobot folder's config.json (as `LeRobotPolicy` reads them)."""
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        return {}
    cfg = _read_json(cfg_file)
    out: dict[str, Any] = {}
    steps = cfg.get("n_action_steps") if cfg.get("type") == "diffusion" else cfg.get("chunk_size")
    if steps is not None:
        out["horizon"] = int(steps)
    shape = (cfg.get("output_features") or {}).get("action", {}).get("shape")
    if shape:
        out["action_dim"] = int(shape[0])
    return out


def _embedded_meta(path: Path) -> dict[str, Any]:
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ValueError(f"checkpoint {path}: not a torch checkpoint rtctl can read ({err})") from None
    if not isinstance(blob, dict):
        return {}
    meta = dict(blob.get("meta") or {})
    if "arch" in blob:  # rtctl train bc
        meta.update(horizon=int(blob["arch"]["horizon"]), action_dim=int(blob["arch"]["action_dim"]))
    elif "actor" in blob and "action" in blob:  # an MLP actor export: one action per chunk
        meta.update(horizon=1, action_dim=len(blob["action"]["low"]))
    return meta
