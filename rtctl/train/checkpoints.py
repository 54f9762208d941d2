"""A policy config's ``train_config`` → its checkpoint, trained on first use (seeded, cached under artifacts/).

The runtime never imports a trainer: `rtctl run` / `rtctl deploy` (rtctl.cli) pass `resolve_checkpoint` to it.
"""
from __future__ import annotations

from typing import Any, Callable

# policy.type → the trainer module whose ensure_checkpoint(train_config) makes that type's checkpoint
TRAINERS: dict[str, str] = {"bc": "rtctl.train.bc.train", "lerobot": "rtctl.train.lerobot.act"}


def resolve_checkpoint(cfg: Any) -> Any:
    if cfg.checkpoint is not None or cfg.train_config is None or cfg.type not in TRAINERS:
        return cfg
    import importlib

    ensure: Callable[[Any], Any] = importlib.import_module(TRAINERS[cfg.type]).ensure_checkpoint
    return cfg.model_copy(update={"checkpoint": str(ensure(cfg.train_config))})
