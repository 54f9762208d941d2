"""A chunking behaviour-cloning policy: (joint state, target) → H future absolute joint targets.

The network predicts each row as an offset from the conditioning state (residual form), normalised by
statistics saved with the weights, so the checkpoint is self-contained: `BCPolicy.load(path)`. The state it
is conditioned on is whatever the runtime passes as ``obs["state"]`` — the measured state in sync mode,
the rolled-forward command under rollforward. A policy trained with VLASH's offset augmentation
(`rtctl train bc` with ``offset.max_delay > 0``) has seen both kinds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rtctl.policies.base import ActionChunk, chunk_for


class ChunkMLP(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, horizon: int, hidden: int = 256, layers: int = 3) -> None:
        super().__init__()
        dims = [obs_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            blocks += [nn.Linear(a, b), nn.GELU()]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, horizon * action_dim)
        self.horizon, self.action_dim = horizon, action_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).view(-1, self.horizon, self.action_dim)


class BCPolicy:
    """`Policy` over a trained `ChunkMLP` checkpoint (CPU, one thread is plenty: ~0.2 ms a chunk)."""

    def __init__(self, net: ChunkMLP, stats: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.net = net.eval()
        self.stats = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in stats.items()}
        self.meta = meta
        self.chunk_size = net.horizon
        self.action_dim = net.action_dim

    @classmethod
    def load(cls, path: str | Path) -> "BCPolicy":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"BC checkpoint not found: {path} (make it with `rtctl train bc CONFIG`)")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net = ChunkMLP(**ckpt["arch"])
        net.load_state_dict(ckpt["weights"])
        return cls(net, {k: np.asarray(v) for k, v in ckpt["stats"].items()}, ckpt.get("meta", {}))

    def reset(self) -> None:
        pass

    def features(self, state: np.ndarray, target: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.concatenate([state, target], axis=-1), dtype=torch.float32)
        return (x - self.stats["x_mean"]) / self.stats["x_std"]

    @torch.no_grad()
    def predict_chunk(self, obs: Any) -> ActionChunk:
        state = np.asarray(obs["state"], float)
        x = self.features(state, np.asarray(obs["target"], float))[None]
        y = self.net(x)[0] * self.stats["y_std"] + self.stats["y_mean"]
        return chunk_for(obs, state[None, :] + y.numpy().astype(np.float64))
