"""Trained artifacts cached under artifacts/, keyed by a hash of what made them (config + recipe version)."""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Callable


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
