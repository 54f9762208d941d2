"""Trained artifacts cached under artifacts/, keyed by a hash of what made them (config + recipe version)."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping


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
