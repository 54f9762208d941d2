"""Variation sets: the tasks of multi-task and robust training.

A *variation* assigns values to some env parameters (``mass_scale=1.2, action_latency_ticks=2`` for an
arm, ``process="FF", supply_scale=0.9, temperature_c=125`` for a circuit corner). A `VariationSet` is an
ordered list of them with one marked nominal, built declaratively from

* a grid: every combination of per-parameter values (the last parameter varies fastest), or
* distributions: ``n`` seeded draws of ``uniform``/``loguniform``/``normal``/``choice`` per parameter, or
* an explicit list of parameter maps,

so the same YAML block describes PVT corners, arm dynamics sets and vehicle sets. A variation is applied
at reset (`VariedEnv`), never mid-episode. Index order is part of the set's meaning: task ``i`` of a
trainer is variation ``i``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import gymnasium as gym
import numpy as np

DISTRIBUTIONS = ("uniform", "loguniform", "normal", "choice")


@dataclass(frozen=True)
class Variation:
    index: int
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.params.items())


class VariationSet:
    """An ordered, indexable set of variations; ``nominal`` is the index of the nominal one."""

    def __init__(self, params: Sequence[Mapping[str, Any]], nominal: int = 0, name: str = "") -> None:
        if len(params) == 0:
            raise ValueError(f"variation set {name!r} is empty")
        keys = list(params[0])
        for i, p in enumerate(params):
            if list(p) != keys:
                raise ValueError(f"variation set {name!r}: variation {i} has parameters {list(p)}, expected {keys}")
        if not 0 <= nominal < len(params):
            raise ValueError(f"variation set {name!r}: nominal index {nominal} outside 0..{len(params) - 1}")
        self.variations = tuple(Variation(i, dict(p)) for i, p in enumerate(params))
        self.nominal = int(nominal)
        self.name = name

    # -- container --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.variations)

    def __getitem__(self, i: int) -> Variation:
        return self.variations[i]

    def __iter__(self) -> Iterator[Variation]:
        return iter(self.variations)

    @property
    def param_names(self) -> list[str]:
        return list(self.variations[0].params)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variations]

    def numeric_matrix(self) -> np.ndarray:
        """(len, n_numeric) float matrix of the numeric parameters, e.g. to condition a critic on them."""
        cols = [k for k in self.param_names if all(_is_number(v.params[k]) for v in self.variations)]
        return np.array([[float(v.params[k]) for k in cols] for v in self.variations]).reshape(len(self), len(cols))

    def index_of(self, params: Mapping[str, Any]) -> int | None:
        for v in self.variations:
            if all(_same(v.params.get(k), val) for k, val in params.items()) and len(params) == len(v.params):
                return v.index
        return None

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(v.params) for v in self.variations]

    # -- constructors -----------------------------------------------------------------------------------
    @classmethod
    def grid(cls, axes: Mapping[str, Sequence[Any]], nominal: Mapping[str, Any] | None = None,
             name: str = "") -> "VariationSet":
        """Every combination of ``axes`` values; ``nominal`` is found in the grid or appended to it."""
        for k, vals in axes.items():
            if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or len(vals) == 0:
                raise ValueError(f"variation grid {name!r}: axis '{k}' needs a non-empty list of values, got {vals!r}")
        keys = list(axes)
        params = [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]
        return cls._with_nominal(params, nominal, name)

    @classmethod
    def sample(cls, dists: Mapping[str, Mapping[str, Any]], n: int, seed: int,
               nominal: Mapping[str, Any] | None = None, name: str = "") -> "VariationSet":
        """``n`` seeded draws; each parameter is drawn from its own stream, so adding one keeps the others."""
        if n < 1:
            raise ValueError(f"variation sample {name!r}: n must be >= 1, got {n}")
        columns = {}
        for j, (k, d) in enumerate(dists.items()):
            rng = np.random.default_rng([seed, j])
            columns[k] = _draw(k, d, n, rng, name)
        params = [{k: columns[k][i] for k in dists} for i in range(n)]
        return cls._with_nominal(params, nominal, name)

    @classmethod
    def _with_nominal(cls, params: list[dict], nominal: Mapping[str, Any] | None, name: str) -> "VariationSet":
        if nominal is None:
            return cls(params, 0, name)
        missing = set(params[0]) ^ set(nominal)
        if missing:
            raise ValueError(f"variation set {name!r}: nominal must set exactly {sorted(params[0])}, "
                             f"differs in {sorted(missing)}")
        nominal = {k: nominal[k] for k in params[0]}
        for i, p in enumerate(params):
            if all(_same(p[k], nominal[k]) for k in p):
                return cls(params, i, name)
        return cls(params + [dict(nominal)], len(params), name)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], name: str = "") -> "VariationSet":
        """Declarative form (YAML): exactly one of ``grid``, ``sample`` or ``list``, plus optional ``nominal``.

        grid:    {param: [v1, v2, ...], ...}
        sample:  {n: 64, seed: 0, params: {param: {uniform: [lo, hi]} | {loguniform: [lo, hi]}
                                                 | {normal: [mean, std]} | {choice: [a, b, ...]}}}
        list:    [{param: v, ...}, ...]
        nominal: {param: v, ...}   (for a list: an index is also accepted)
        """
        if not isinstance(spec, Mapping):
            raise ValueError(f"variation set {name!r}: spec must be a mapping, got {type(spec).__name__}")
        kinds = [k for k in ("grid", "sample", "list") if k in spec]
        unknown = set(spec) - {"grid", "sample", "list", "nominal", "name"}
        if unknown:
            raise ValueError(f"variation set {name!r}: unknown key(s) {sorted(unknown)} "
                             "(allowed: grid, sample, list, nominal, name)")
        if len(kinds) != 1:
            raise ValueError(f"variation set {name!r}: give exactly one of grid, sample, list (got {kinds or 'none'})")
        name = str(spec.get("name", name))
        nominal = spec.get("nominal")
        if "grid" in spec:
            return cls.grid(spec["grid"], nominal, name)
        if "sample" in spec:
            s = spec["sample"]
            extra = set(s) - {"n", "seed", "params"}
            if extra or "params" not in s or "n" not in s:
                raise ValueError(f"variation set {name!r}: sample needs n, params (and optional seed); "
                                 f"unknown {sorted(extra)}")
            return cls.sample(s["params"], int(s["n"]), int(s.get("seed", 0)), nominal, name)
        items = spec["list"]
        if isinstance(nominal, int):
            return cls([dict(p) for p in items], nominal, name)
        return cls._with_nominal([dict(p) for p in items], nominal, name)


def _draw(key: str, dist: Mapping[str, Any], n: int, rng: np.random.Generator, name: str) -> list[Any]:
    if not isinstance(dist, Mapping) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ValueError(f"variation sample {name!r}: parameter '{key}' needs one of {DISTRIBUTIONS}, got {dist!r}")
    kind, arg = next(iter(dist.items()))
    if kind == "choice":
        return [arg[i] for i in rng.integers(len(arg), size=n)]
    a, b = float(arg[0]), float(arg[1])
    if kind == "uniform":
        if not a <= b:
            raise ValueError(f"variation sample {name!r}: '{key}' uniform needs lo <= hi, got {arg}")
        return rng.uniform(a, b, size=n).tolist()
    if kind == "loguniform":
        if not 0 < a <= b:
            raise ValueError(f"variation sample {name!r}: '{key}' loguniform needs 0 < lo <= hi, got {arg}")
        return np.exp(rng.uniform(np.log(a), np.log(b), size=n)).tolist()
    if b < 0:
        raise ValueError(f"variation sample {name!r}: '{key}' normal needs std >= 0, got {arg}")
    return rng.normal(a, b, size=n).tolist()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(np.isclose(float(a), float(b), rtol=1e-12, atol=1e-12))
    return a == b


def apply_variation(env: gym.Env, params: Mapping[str, Any]) -> None:
    """Default way to put a variation into an env: ``set_variation(dict)`` if it has one, else attributes."""
    target = getattr(env, "unwrapped", env)
    if hasattr(target, "set_variation"):
        target.set_variation(dict(params))
        return
    for k, v in params.items():
        if not hasattr(target, k):
            raise KeyError(f"{type(target).__name__} has no parameter '{k}' to vary "
                           "(give it a set_variation(dict) method or pass apply= to VariedEnv)")
        setattr(target, k, v)


class VariedEnv(gym.Wrapper):
    """Applies one variation of ``vset`` at every reset.

    ``reset(options={"variation": i})`` picks variation ``i``; without it the wrapper keeps the last one
    (``sampler="fixed"``) or draws one uniformly from the reset's own RNG (``sampler="uniform"``).
    ``info["variation"]`` says which one ran.
    """

    def __init__(self, env: gym.Env, vset: VariationSet, sampler: str = "fixed",
                 apply: Callable[[gym.Env, Mapping[str, Any]], None] = apply_variation) -> None:
        super().__init__(env)
        if sampler not in ("fixed", "uniform"):
            raise ValueError(f"VariedEnv: sampler must be 'fixed' or 'uniform', got {sampler!r}")
        self.vset, self.sampler, self._apply = vset, sampler, apply
        self.variation_index = vset.nominal

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        idx = options.pop("variation", None)
        if idx is None and self.sampler == "uniform":
            rng = np.random.default_rng(seed) if seed is not None else self.np_random
            idx = int(rng.integers(len(self.vset)))
        if idx is not None:
            if not 0 <= int(idx) < len(self.vset):
                raise IndexError(f"variation {idx} outside 0..{len(self.vset) - 1} of set {self.vset.name!r}")
            self.variation_index = int(idx)
        self._apply(self.env, self.vset[self.variation_index].params)
        obs, info = self.env.reset(seed=seed, options=options or None)
        info = dict(info)
        info["variation"] = self.variation_index
        return obs, info
