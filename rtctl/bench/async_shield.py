"""`rtctl bench async_shield`: the `rtctl bench async` grid with every command through the CBF shield (wall
rows at constant latency only: the jittered-latency comparison is about scheduling, and `rtctl bench async`
runs it)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rtctl.bench import async_chunks


def setup(out_dir: Path, quick: bool, policies: Optional[tuple[str, ...]] = None) -> dict:
    return async_chunks.setup(out_dir, quick, policies, label="async_shield")


def run(out_dir: Path, quick: bool, policies: Optional[tuple[str, ...]] = None) -> list[dict]:
    return async_chunks.run(out_dir, quick, shield=True, policies=policies, label="async_shield",
                            jitter=False)
