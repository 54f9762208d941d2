"""Any LeRobot `PreTrainedPolicy` (ACT, Diffusion, SmolVLA, …) as an rtctl `Policy` (needs `rtctl[lerobot]`).

`LeRobotPolicy.load(folder)` reads a checkpoint folder as LeRobot saves it (``config.json``,
``model.safetensors``, ``policy_preprocessor.json``/``policy_postprocessor.json`` + their state files) —
nothing is fetched from a hub — and `predict_chunk(obs)` runs exactly LeRobot's own path:
pre-processor → ``predict_action_chunk`` → post-processor, on the observation mapped to LeRobot's names:

=====================================  ===========================================================
rtctl observation key                  LeRobot feature
=====================================  ===========================================================
``state`` (joint positions, rad)       ``observation.state`` (through `JointUnits`, default identity)
``target`` (task input)                ``observation.environment_state`` (only if the policy has it)
``image`` / ``image.<cam>`` (H×W×3 u8) ``observation.images.<cam>`` (3×H×W float in [0, 1])
``task`` (str) or the adapter's task   ``task`` (language-conditioned policies: SmolVLA)
=====================================  ===========================================================

The chunk comes back as absolute joint commands in radians (`JointUnits.to_rad`). A policy that keeps an
observation history (Diffusion's ``n_obs_steps``) sees the current observation repeated: rtctl asks for a
chunk every K ticks, not every tick, so the history LeRobot would have queued is not one tick apart, and
every chunk is a function of its own observation only (the `Policy` contract).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from rtctl.policies.base import ActionChunk, chunk_for

IMAGE_PREFIX = "observation.images."
STATE, ENV_STATE, ACTION = "observation.state", "observation.environment_state", "action"


@dataclass(frozen=True)
class JointUnits:
    """policy units = rad · scale + offset, per joint (a LeRobot SO-101 checkpoint uses calibrated
    −100..100 units; checkpoints trained on rtctl's sim demos use radians: the identity)."""

    scale: Optional[np.ndarray] = None
    offset: Optional[np.ndarray] = None

    def to_policy(self, rad: np.ndarray) -> np.ndarray:
        x = np.asarray(rad, np.float64)
        return x * (1.0 if self.scale is None else self.scale) + (0.0 if self.offset is None else self.offset)

    def to_rad(self, units: np.ndarray) -> np.ndarray:
        x = np.asarray(units, np.float64) - (0.0 if self.offset is None else self.offset)
        return x / (1.0 if self.scale is None else self.scale)


def image_to_lerobot(img: Any, key: str):
    """H×W×3 uint8 (a camera frame) → 3×H×W float32 in [0, 1], LeRobot's image convention."""
    import torch

    a = np.asarray(img)
    if a.ndim != 3 or 3 not in (a.shape[0], a.shape[-1]):
        raise ValueError(f"observation {key!r}: expected an H×W×3 image, got shape {a.shape}")
    if a.shape[-1] == 3 and a.shape[0] != 3:
        a = np.moveaxis(a, -1, 0)
    t = torch.as_tensor(np.ascontiguousarray(a))
    return t.float() / 255.0 if a.dtype == np.uint8 else t.float()


class LeRobotPolicy:
    """`Policy` over a LeRobot policy plus its pre/post-processors (see the module docstring)."""

    def __init__(self, policy: Any, preprocessor: Any, postprocessor: Any, *, task: str = "",
                 images: Optional[Mapping[str, str]] = None, state_key: str = "state",
                 env_state_key: str = "target", units: Optional[JointUnits] = None) -> None:
        self.policy = policy.eval()
        self.config = policy.config
        self.preprocessor, self.postprocessor = preprocessor, postprocessor
        self.task = task
        self.state_key, self.env_state_key = state_key, env_state_key
        self.units = units or JointUnits()
        cams = [k[len(IMAGE_PREFIX):] for k in self.config.input_features if k.startswith(IMAGE_PREFIX)]
        if images is None:  # one camera reads obs["image"]; several read obs["image.<cam>"]
            images = {cams[0]: "image"} if len(cams) == 1 else {c: f"image.{c}" for c in cams}
        missing = [c for c in cams if c not in images]
        if missing:
            raise ValueError(f"LeRobotPolicy: no observation key given for camera(s) {missing} (images=…)")
        self.images = dict(images)
        self.action_dim = int(self.config.output_features[ACTION].shape[0])
        # Diffusion returns its n_action_steps executable rows; the others the whole chunk.
        self.chunk_size = int(self.config.n_action_steps if self.config.type == "diffusion"
                              else self.config.chunk_size)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu", **kw: Any) -> "LeRobotPolicy":
        """Load a checkpoint folder saved by LeRobot (policy + processors); nothing from a hub."""
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"LeRobot checkpoint folder not found or has no config.json: {folder}")
        cfg = PreTrainedConfig.from_pretrained(folder, local_files_only=True)
        cfg.device = device
        policy = get_policy_class(cfg.type).from_pretrained(folder, config=cfg, local_files_only=True)
        policy.to(device)
        dev = {"device_processor": {"device": device}}
        pre, post = make_pre_post_processors(cfg, pretrained_path=str(folder), preprocessor_overrides=dev,
                                             postprocessor_overrides={"device_processor": {"device": "cpu"}})
        return cls(policy, pre, post, **kw)

    def reset(self) -> None:
        self.policy.reset()

    def lerobot_observation(self, obs: Mapping[str, Any]) -> dict[str, Any]:
        """The un-batched raw observation LeRobot's pre-processor takes (as `lerobot record` stores it)."""
        import torch

        feats = self.config.input_features
        out: dict[str, Any] = {}
        if STATE in feats:
            out[STATE] = torch.as_tensor(self.units.to_policy(self._get(obs, self.state_key)), dtype=torch.float32)
        if ENV_STATE in feats:
            out[ENV_STATE] = torch.as_tensor(np.asarray(self._get(obs, self.env_state_key), np.float64),
                                             dtype=torch.float32)
        for cam, key in self.images.items():
            out[IMAGE_PREFIX + cam] = image_to_lerobot(self._get(obs, key), key)
        for key, t in out.items():
            want = tuple(feats[key].shape)
            got = tuple(t.shape)
            # images: the channel count must match; the size is the model's business (resize/crop steps)
            if (got[0] != want[0]) if key.startswith(IMAGE_PREFIX) else (got != want):
                raise ValueError(f"observation for {key!r}: shape {got} does not fit the policy's {want}")
        out["task"] = str(obs.get("task", self.task))
        return out

    def _get(self, obs: Mapping[str, Any], key: str) -> Any:
        if key not in obs:
            raise KeyError(f"LeRobotPolicy: observation has no {key!r} (keys: {sorted(obs)})")
        return obs[key]

    def predict_batch(self, batch: dict[str, Any]):
        """``predict_action_chunk`` on a pre-processed batch → (1, H, A) normalised actions."""
        self.policy.reset()
        if self.config.type == "diffusion":
            return self._diffusion_chunk(batch)
        return self.policy.predict_action_chunk(batch)

    def _diffusion_chunk(self, batch: dict[str, Any]):
        # Diffusion's predict_action_chunk reads its observation queues, which select_action fills
        # (images stacked under observation.images first); do the same, from the current observation.
        import torch
        from lerobot.policies.utils import populate_queues

        batch = {k: v for k, v in batch.items() if k != ACTION}  # the pipeline's empty action slot
        if self.config.image_features:
            batch["observation.images"] = torch.stack([batch[k] for k in self.config.image_features], dim=-4)
        populate_queues(self.policy._queues, batch)
        return self.policy.predict_action_chunk(batch)

    def predict_chunk(self, obs: Mapping[str, Any]) -> ActionChunk:
        import torch

        with torch.inference_mode():
            batch = self.preprocessor(self.lerobot_observation(obs))
            actions = self.postprocessor(self.predict_batch(batch))
        return chunk_for(obs, self.units.to_rad(actions[0].double().cpu().numpy()))
