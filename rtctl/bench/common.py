"""Shared benchmark helpers: repeat statistics, running one repeat in a fresh process, timing a benchmark."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median with min/max over repeats (the spread the docs quote)."""
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


def run_timed(name: str, module: Any, out_dir: Path, quick: bool, **opts: Any) -> tuple[list[dict], dict[str, Any]]:
    """Run a benchmark module: its one-time ``setup(out_dir, quick, **opts)`` (training, caching; optional),
    then ``run(out_dir, quick, **opts)``, timed apart. Set-up is not benchmark time: ``--quick``'s budget
    (≤ 3 min here) is on ``bench_s``. Writes OUT/timing.json and returns (rows, timing)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    info = module.setup(out_dir, quick, **opts) if hasattr(module, "setup") else {}
    t1 = time.monotonic()
    if t1 - t0 > 1.0:
        print(f"bench {name}: set-up done in {t1 - t0:.0f} s", flush=True)
    rows = module.run(out_dir, quick, **opts)
    t2 = time.monotonic()
    timing = {"bench": name, "quick": quick, "setup_s": round(t1 - t0, 1), "bench_s": round(t2 - t1, 1),
              "trained": list((info or {}).get("trained", [])),
              "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()}}
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    return rows, timing
