"""Trained artifacts cached under artifacts/, keyed by a hash of what made them (config + recipe version)."""
from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

ARTIFACTS = Path("artifacts")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached(out: Path, ready: str, make: Callable[[Path], object]) -> Path:
    """``out``, made now by ``make(tmp)`` in a temporary sibling and moved into place unless ``out/ready``
    exists already; when two processes make the same artifact, the first to finish wins."""
    if not (out / ready).exists():
        tmp = out.with_name(out.name + f".tmp{int(time.time() * 1e6)}")
        make(tmp)
        try:
            tmp.rename(out)
        except OSError:
            if not (out / ready).exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def cache_dir(root: Path, family: str, config_path: str | Path, cfg: Any, recipe: int) -> Path:
    """The cache folder of a trained artifact: ``root/family/<config stem>-<hash of the config and recipe>``
    (one key for the trainers and for the benches that say up front what they will train)."""
    from rtctl.config import dump_config

    return Path(root) / family / f"{Path(config_path).stem}-{digest(dump_config(cfg) + f'recipe {recipe}')}"


def with_meta(checkpoint: Path, meta: Callable[[], Mapping[str, Any]]) -> Path:
    """``checkpoint``, with ``meta()`` written as its metadata file first if it has none: a checkpoint cached
    before rtctl recorded rate/horizon/units is upgraded in place, not retrained. Sound because the cache key
    is the hash of the config ``meta()`` is computed from. Only the file's existence is checked, so the
    common path reads nothing (and never imports torch)."""
    from rtctl.policies.base import meta_path, write_checkpoint_meta

    if not meta_path(checkpoint).is_file():
        write_checkpoint_meta(checkpoint, meta())
    return checkpoint


@dataclass(frozen=True)
class Artifact:
    """How one trainer family's checkpoints are made and cached (one place for bc and lerobot's ACT):
    ``root/family/<config stem>-<hash>``, ready once ``ready`` exists in it, the checkpoint at ``checkpoint``
    inside; ``make(cfg, tmp, root)`` trains into ``tmp``; ``meta(cfg)`` is the checkpoint's metadata."""

    family: str
    config_cls: type
    recipe: int
    ready: str
    checkpoint: str
    make: Callable[[Any, Path, Path], Any]
    meta: Callable[[Any], Mapping[str, Any]]

    def folder(self, config_path: str | Path, root: Path = ARTIFACTS) -> Path:
        """Where `ensure` keeps this config's checkpoint (whether or not it exists yet)."""
        from rtctl.config import load_config

        return cache_dir(root, self.family, config_path, load_config(config_path, self.config_cls), self.recipe)

    def ensure(self, config_path: str | Path, root: Path = ARTIFACTS) -> Path:
        """The checkpoint for this config, trained now if it does not exist yet (keyed by the config's hash); one
        cached without metadata gets it from the config (`with_meta`), without retraining."""
        from rtctl.config import load_config

        cfg = load_config(config_path, self.config_cls)
        out = cache_dir(root, self.family, config_path, cfg, self.recipe)
        ckpt = cached(out, self.ready, lambda tmp: self.make(cfg, tmp, Path(root))) / self.checkpoint
        return with_meta(ckpt, lambda: self.meta(cfg))  # cached before checkpoints recorded their rate
