"""The MARL driving policy: a shared masked actor over discrete behaviours, and its `Policy` wrapper.

`rtctl train marl` exports ``policy.pt``: a ``torch.save`` dict of tensors and plain values (loadable with
``weights_only=True``): ``format``, ``obs_dim``, ``n_actions``, ``hidden``, ``behaviours`` (names, in
index order), ``obs_config`` (the `rtctl.sim.vehicles.observe.ObsConfig` fields it was trained with),
``scenario``, ``method`` and ``actor`` (state dict).

A trial's car process builds the observation with `rtctl.sim.vehicles.observe.observe` (the same function the
trainer used) and calls ``predict_chunk({"observation": obs, "action_mask": mask, "tick": k})``; the chunk
is one row holding the behaviour index (greedy: the most likely allowed behaviour).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .base import ActionChunk, Observation, chunk_for
from .mlp import mlp

EXPORT_FORMAT = "rtctl.marl_actor/1"
NEG = -1e9  # logit of a masked behaviour


class MaskedActor(nn.Module):
    """Observation → behaviour logits; behaviours the mask forbids get NEG (never sampled)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, list(hidden)
        self.net = mlp(obs_dim, hidden, n_actions)

    def logits(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(obs).masked_fill(~mask, NEG)

    def dist(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.logits(obs, mask))


def export_actor(path: str | Path, actor: MaskedActor, behaviours: Sequence[str], obs_config: dict,
                 scenario: str, method: str) -> Path:
    path = Path(path)
    torch.save({"format": EXPORT_FORMAT, "obs_dim": actor.obs_dim, "n_actions": actor.n_actions,
                "hidden": list(actor.hidden), "behaviours": list(behaviours), "obs_config": dict(obs_config),
                "scenario": scenario, "method": method,
                "actor": {k: v.detach().clone() for k, v in actor.state_dict().items()}}, path)
    return path


class MarlActorPolicy:
    """`Policy` over an exported MARL actor: one behaviour index per chunk."""

    chunk_size = 1
    action_dim = 1

    def __init__(self, path: str | Path) -> None:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{path}: not an rtctl MARL actor export (format {EXPORT_FORMAT!r})")
        self.meta = {k: v for k, v in blob.items() if k != "actor"}
        self.actor = MaskedActor(blob["obs_dim"], blob["n_actions"], blob["hidden"])
        self.actor.load_state_dict(blob["actor"])
        self.actor.eval()
        self.behaviours = tuple(blob["behaviours"])

    def reset(self) -> None:
        pass

    def act(self, observation, action_mask) -> int:
        o = np.asarray(observation, dtype=np.float32)
        m = np.asarray(action_mask, dtype=bool)
        if o.shape != (self.actor.obs_dim,) or m.shape != (self.actor.n_actions,):
            raise ValueError(f"observation must be ({self.actor.obs_dim},) and action_mask "
                             f"({self.actor.n_actions},), got {o.shape} and {m.shape}")
        if not np.isfinite(o).all():
            raise ValueError("observation has non-finite values")
        with torch.no_grad():
            return int(self.actor.logits(torch.from_numpy(o), torch.from_numpy(m)).argmax())

    def predict_chunk(self, obs: Observation) -> ActionChunk:
        return chunk_for(obs, np.array([[self.act(obs["observation"], obs["action_mask"])]], dtype=float))
