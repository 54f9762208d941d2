"""`rtctl bench async_lerobot [--quick] --out DIR`: the `rtctl bench async` grid for the LeRobot ACT policies
alone (plain and offset-aware), virtual clock, Δ ∈ {0, 4}, 50 paired episodes per cell (12 with --quick):
the rows the README's LeRobot table quotes. `rtctl bench async` runs them too, inside its full grid."""
from __future__ import annotations

from pathlib import Path

from rtctl.bench import async_chunks


def run(out_dir: Path, quick: bool) -> list[dict]:
    return async_chunks.run(out_dir, quick, policies=async_chunks.LEROBOT_POLICIES, episodes=12 if quick else 50,
                            delays=(0, 4), wall_clock=False)
