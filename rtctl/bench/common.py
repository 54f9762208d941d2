"""Shared benchmark helpers: repeat statistics and running one repeat in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Sequence

import numpy as np


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median with min/max over repeats (the spread the README quotes)."""
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not a.size:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def run_child(module: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run ``python -m module`` with a JSON argument; it prints one JSON line last. A fresh process per
    repeat keeps each measurement's memory peak and interpreter state its own."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", module, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout_s, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
