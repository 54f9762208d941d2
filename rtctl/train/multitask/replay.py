"""One replay buffer per task, sampled stratified (the same batch from every active task) or pooled.

Buffers grow on demand (a task that never runs costs nothing) up to ``capacity`` transitions each, then
overwrite their oldest entries. Stratified sampling keeps a rarely-run hard task from being drowned by
easy ones in the critic's batch; pooled sampling is plain domain randomisation's single buffer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELDS = ("obs", "act", "rew", "next_obs", "done")


@dataclass
class Batch:
    task: np.ndarray  # (n,) int
    obs: np.ndarray
    act: np.ndarray
    rew: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray

    def __len__(self) -> int:
        return len(self.rew)


class _Ring:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = capacity
        self.dims = {"obs": (obs_dim,), "act": (act_dim,), "rew": (), "next_obs": (obs_dim,), "done": ()}
        self.data = {k: np.zeros((0, *d), dtype=np.float32) for k, d in self.dims.items()}
        self.size = 0
        self.pos = 0

    def _grow(self, need: int) -> None:
        cur = len(self.data["rew"])
        if need <= cur:
            return
        new = min(self.capacity, max(need, 2 * cur, 256))
        for k, d in self.dims.items():
            arr = np.zeros((new, *d), dtype=np.float32)
            arr[:cur] = self.data[k]
            self.data[k] = arr

    def add(self, items: dict[str, np.ndarray]) -> None:
        n = len(items["rew"])
        for i in range(n):  # ring order matters only at wrap-around; transitions per call are few
            if self.size < self.capacity:
                self._grow(self.size + 1)
            for k in FIELDS:
                self.data[k][self.pos] = items[k][i]
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)


class TaskReplay:
    def __init__(self, n_tasks: int, capacity: int, obs_dim: int, act_dim: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity per task must be >= 1, got {capacity}")
        self.n_tasks, self.capacity, self.obs_dim, self.act_dim = n_tasks, capacity, obs_dim, act_dim
        self.rings = [_Ring(capacity, obs_dim, act_dim) for _ in range(n_tasks)]

    def add(self, task: int, obs, act, rew, next_obs, done) -> None:
        items = {"obs": np.asarray(obs, np.float32).reshape(-1, self.obs_dim),
                 "act": np.asarray(act, np.float32).reshape(-1, self.act_dim),
                 "rew": np.asarray(rew, np.float32).reshape(-1),
                 "next_obs": np.asarray(next_obs, np.float32).reshape(-1, self.obs_dim),
                 "done": np.asarray(done, np.float32).reshape(-1)}
        self.rings[task].add(items)

    def sizes(self) -> np.ndarray:
        return np.array([r.size for r in self.rings])

    def _take(self, task: int, idx: np.ndarray) -> Batch:
        d = self.rings[task].data
        return Batch(np.full(len(idx), task), d["obs"][idx], d["act"][idx], d["rew"][idx], d["next_obs"][idx],
                     d["done"][idx])

    def sample_stratified(self, tasks: list[int], per_task: int, rng: np.random.Generator) -> list[Batch]:
        """``per_task`` transitions (with replacement) from each listed task that has data."""
        out = []
        for t in tasks:
            size = self.rings[t].size
            if size > 0:
                out.append(self._take(t, rng.integers(size, size=per_task)))
        return out

    def sample_pooled(self, tasks: list[int], n: int, rng: np.random.Generator) -> list[Batch]:
        """``n`` transitions drawn uniformly over all stored transitions of ``tasks`` (one mixed batch)."""
        sizes = np.array([self.rings[t].size for t in tasks])
        total = int(sizes.sum())
        if total == 0:
            return []
        flat = np.sort(rng.integers(total, size=n))
        owner = np.searchsorted(np.cumsum(sizes), flat, side="right")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        parts = [self._take(tasks[o], flat[owner == o] - starts[o]) for o in np.unique(owner)]
        return [Batch(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("task", *FIELDS)))]

    # -- checkpoint ---------------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for t, r in enumerate(self.rings):
            if r.size == 0:
                continue
            out[f"t{t}_meta"] = np.array([r.size, r.pos, len(r.data["rew"])])
            for k in FIELDS:
                out[f"t{t}_{k}"] = r.data[k]
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for t, r in enumerate(self.rings):
            if f"t{t}_meta" not in arrays:
                continue
            r.size, r.pos, _ = (int(v) for v in arrays[f"t{t}_meta"])
            for k in FIELDS:
                r.data[k] = np.array(arrays[f"t{t}_{k}"], dtype=np.float32)
