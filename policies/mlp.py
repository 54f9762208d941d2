"""MLP actor and critic modules, and `MLPPolicy`: an exported actor that `rtctl run` loads.

The actor maps a flat observation to an action in [-1, 1]^n (tanh). The critic takes (observation, action,
task code) and returns one value; the task code (one-hot or variation parameters) exists only in training,
so the exported actor is task-agnostic.

An export is a ``torch.save`` dict of tensors and plain values only (loadable with ``weights_only=True``):
``format``, ``obs_keys`` (observation entries concatenated in order), ``hidden``, ``obs_dim``, ``act_dim``,
``actor`` (state dict), ``meta`` (rate, horizon 1, units: see `rtctl.policies.base`; also in the
``.meta.json`` sidecar) and ``action`` (how [-1, 1] becomes a command):

* ``{"mode": "affine", "low": [...], "high": [...]}``: linear map onto the box (low, high);
* ``{"mode": "delta_state", "state_key": "state", "joints": [...], "scale": s, "low": [...],
  "high": [...], "fixed": {index: value}}``: absolute joint targets = observed joint positions +
  s * action on the listed joints, other joints held at ``fixed`` values, clipped to (low, high).

``features`` (optional) lists values computed from the observation and appended after ``obs_keys``:

* ``{"kind": "chain_fk", "state_key", "target_key", "links": [{"pos", "quat" (w x y z), "qpos_index"}],
  "tool": [x, y, z]}``: forward kinematics of a serial chain of z-hinges (each link: fixed transform from
  its parent, then its joint's rotation); appends the tool position and target[:3] minus it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .base import ActionChunk, Observation, chunk_for, write_checkpoint_meta

EXPORT_FORMAT = "rtctl.mlp_actor/1"


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


def _rotation(quat: Sequence[float]) -> np.ndarray:
    w, x, y, z = quat
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def chain_fk(q: np.ndarray, links: Sequence[Mapping[str, Any]], tool: Sequence[float]) -> np.ndarray:
    """Tool position of a serial chain of z-hinges for joint positions ``q``."""
    R, p = np.eye(3), np.zeros(3)
    for link in links:
        p = p + R @ np.asarray(link["pos"], dtype=np.float64)
        c, s = np.cos(q[int(link["qpos_index"])]), np.sin(q[int(link["qpos_index"])])
        R = R @ _rotation(link["quat"]) @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return p + R @ np.asarray(tool, dtype=np.float64)


def compute_features(obs: Observation, features: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
    out = []
    for f in features:
        if f.get("kind") != "chain_fk":
            raise ValueError(f"unknown observation feature {f.get('kind')!r} (chain_fk)")
        tool = chain_fk(np.asarray(obs[f["state_key"]], dtype=np.float64).reshape(-1), f["links"], f["tool"])
        out += [tool, np.asarray(obs[f["target_key"]], dtype=np.float64).reshape(-1)[:3] - tool]
    return out


def export_actor(path: str | Path, actor: Actor, hidden: Sequence[int], obs_keys: Sequence[str],
                 action: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                 features: Sequence[Mapping[str, Any]] = (), *, meta: Mapping[str, Any]) -> Path:
    """Write the export, with its checkpoint metadata (``meta``: what the trainer knows — rate, units, action
    names; `rtctl.train.multitask.export.export_meta`) embedded and in a ``.meta.json`` sidecar."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = actor.net[0]
    blob = {
        "format": EXPORT_FORMAT,
        "obs_keys": list(obs_keys),
        "hidden": [int(h) for h in hidden],
        "obs_dim": int(first.in_features),
        "act_dim": int(actor.net[-1].out_features),
        "actor": {k: v.detach().cpu().clone() for k, v in actor.state_dict().items()},
        "action": dict(action),
        "features": [dict(f) for f in features],
        "extra": dict(extra or {}),
    }
    blob["meta"] = dict(meta)
    torch.save(blob, path)
    write_checkpoint_meta(path, blob["meta"])
    return path


class MLPPolicy:
    """A one-step policy: `predict_chunk` returns a chunk of horizon 1."""

    chunk_size = 1

    def __init__(self, blob: Mapping[str, Any]) -> None:
        if blob.get("format") != EXPORT_FORMAT:
            raise ValueError(f"not an rtctl MLP actor export (format {blob.get('format')!r}, "
                             f"expected {EXPORT_FORMAT!r})")
        self.obs_keys = list(blob["obs_keys"])
        self.obs_dim = int(blob["obs_dim"])
        self.actor = Actor(self.obs_dim, int(blob["act_dim"]), blob["hidden"])
        self.actor.load_state_dict(blob["actor"])
        self.actor.eval()
        self.action = dict(blob["action"])
        self.features = list(blob.get("features", []))
        self.extra = dict(blob.get("extra", {}))
        self.meta = dict(blob.get("meta", {}))  # absent in exports made before rtctl recorded rate/units
        mode = self.action.get("mode")
        if mode not in ("affine", "delta_state"):
            raise ValueError(f"unknown action mode {mode!r} in export (affine, delta_state)")
        self.low = np.asarray(self.action["low"], dtype=np.float64)
        self.high = np.asarray(self.action["high"], dtype=np.float64)
        self.action_dim = len(self.low)

    @classmethod
    def load(cls, path: str | Path) -> "MLPPolicy":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"policy export not found: {path}")
        return cls(torch.load(path, map_location="cpu", weights_only=True))

    def reset(self) -> None:
        """Stateless between chunks."""

    def flat_obs(self, obs: Observation) -> np.ndarray:
        missing = [k for k in self.obs_keys if k not in obs]
        if missing:
            raise KeyError(f"observation lacks {missing} (policy reads {self.obs_keys})")
        parts = [np.asarray(obs[k], dtype=np.float64).reshape(-1) for k in self.obs_keys]
        x = np.concatenate(parts + compute_features(obs, self.features))
        if x.shape != (self.obs_dim,):
            raise ValueError(f"observation entries {self.obs_keys} (+ features) give {x.shape[0]} values, "
                             f"policy needs {self.obs_dim}")
        return x

    def act_unit(self, obs: Observation) -> np.ndarray:
        with torch.no_grad():
            return self.actor(torch.as_tensor(self.flat_obs(obs), dtype=torch.float32)[None])[0].double().numpy()

    def command(self, obs: Observation, unit: np.ndarray) -> np.ndarray:
        """Map an actor output in [-1, 1]^n to the command this export describes."""
        a = self.action
        if a["mode"] == "affine":
            return self.low + (np.clip(unit, -1, 1) + 1) * 0.5 * (self.high - self.low)
        state = np.asarray(obs[a["state_key"]], dtype=np.float64).reshape(-1)
        cmd = np.zeros(len(self.low))
        for i, v in a.get("fixed", {}).items():
            cmd[int(i)] = float(v)
        joints = [int(j) for j in a["joints"]]
        cmd[joints] = state[joints] + float(a["scale"]) * np.clip(unit, -1, 1)
        return np.clip(cmd, self.low, self.high)

    def predict_chunk(self, obs: Observation) -> ActionChunk:
        return chunk_for(obs, self.command(obs, self.act_unit(obs))[None, :])
