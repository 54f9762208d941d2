"""`rtctl bench async_shield`: the `rtctl bench async` grid with every command through the CBF shield."""
from __future__ import annotations

from pathlib import Path

from rtctl.bench import async_chunks


def run(out_dir: Path, quick: bool) -> list[dict]:
    return async_chunks.run(out_dir, quick, shield=True)
