"""`rtctl bench async_lerobot [--quick] --out DIR`: the `rtctl bench async` grid for the LeRobot ACT policies
alone (plain and offset-aware; ``--policies`` narrows it), virtual clock, Δ ∈ {0, 4}, 50 paired episodes per
cell (12 with --quick): the rows docs/so101.md's LeRobot table quotes. `rtctl bench async --policies
bc,bc_offset,lerobot_act,lerobot_act_offset` runs them inside its full grid."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rtctl.bench import async_chunks


def setup(out_dir: Path, quick: bool, policies: Optional[tuple[str, ...]] = None) -> dict:
    return async_chunks.setup(out_dir, quick, policies or async_chunks.LEROBOT_POLICIES, wall_clock=False,
                              label="async_lerobot")


def run(out_dir: Path, quick: bool, policies: Optional[tuple[str, ...]] = None) -> list[dict]:
    return async_chunks.run(out_dir, quick, policies=policies or async_chunks.LEROBOT_POLICIES,
                            episodes=12 if quick else 50, delays=(0, 4), wall_clock=False, label="async_lerobot")
