"""Merge strategies: how a new chunk's rows replace the committed plan from its switch tick on.

A merge gets the old plan's rows for the ticks the new chunk covers (missing rows = the old plan's last
command held, since that is what the robot would do) and returns the rows to commit. Every mode in one
comparison must use the same merge, so the comparison measures conditioning, not smoothing.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np

Merge = Callable[[np.ndarray, np.ndarray], np.ndarray]


def hard_switch(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """VLASH: replace outright at the switch tick."""
    return new


def make_blend(ticks: int = 5) -> Merge:
    """Timestep-aligned linear cross-fade over the first ``ticks`` rows (old → new)."""

    def blend(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = new.copy()
        n = min(ticks, len(new), len(old))
        if n:
            alpha = (np.arange(1, n + 1) / (ticks + 1))[:, None]
            out[:n] = (1 - alpha) * old[:n] + alpha * new[:n]
        return out

    return blend


MERGES: Dict[str, Callable[..., Merge]] = {
    "hard": lambda **_: hard_switch,
    "blend": lambda blend_ticks=5, **_: make_blend(blend_ticks),
}


def make_merge(name: str, **kw) -> Merge:
    if name not in MERGES:
        raise ValueError(f"unknown merge '{name}' (known: {', '.join(MERGES)})")
    return MERGES[name](**kw)
