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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

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
