"""The benchmark definition read from ``specs.yaml``: sizing box, device cards, corners, spec targets, reward."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from ..variations import VariationSet
from .mos import MosCard

SPECS_PATH = Path(__file__).resolve().parent / "specs.yaml"
DESIGN_VARIABLES = ("w1_um", "w3_um", "w5_um", "w6_um", "w7_um", "l_um", "ibias_ua", "cc_pf")
MEASUREMENTS = ("gain", "ugbw_mhz", "pm_deg", "power_mw", "swing_v")


@dataclass(frozen=True)
class Spec:
    name: str
    target: float
    sense: str  # ">=" or "<="


@dataclass(frozen=True)
class Corner:
    """Everything a backend needs to simulate one PVT corner."""

    name: str
    nmos: MosCard
    pmos: MosCard
    vdd: float
    temperature_c: float


@dataclass(frozen=True)
class Benchmark:
    circuit: Mapping[str, float]
    bounds: np.ndarray  # (8, 2) physical bounds of the design variables
    devices: Mapping[str, MosCard]
    process: Mapping[str, Mapping[str, tuple[float, float]]]
    corners: VariationSet
    held_out: VariationSet
    specs: tuple[Spec, ...]
    tolerance: float
    bonus: float
    reference_design: np.ndarray | None = None  # physical values of a design known to pass every corner

    # -- designs --------------------------------------------------------------------------------------
    def to_physical(self, action: np.ndarray) -> np.ndarray:
        """Actions in [-1, 1]^8 (N x 8) -> physical design values, log-linear between the bounds."""
        a = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        if a.shape[-1] != len(DESIGN_VARIABLES):
            raise ValueError(f"op-amp design needs {len(DESIGN_VARIABLES)} values {DESIGN_VARIABLES}, got {a.shape}")
        lo, hi = np.log(self.bounds[:, 0]), np.log(self.bounds[:, 1])
        return np.exp(lo + (a + 1) * 0.5 * (hi - lo))

    def to_action(self, physical: np.ndarray) -> np.ndarray:
        lo, hi = np.log(self.bounds[:, 0]), np.log(self.bounds[:, 1])
        return 2 * (np.log(np.asarray(physical, dtype=float)) - lo) / (hi - lo) - 1

    # -- corners --------------------------------------------------------------------------------------
    def corner(self, params: Mapping[str, Any]) -> Corner:
        proc = params["process"]
        if proc not in self.process:
            raise ValueError(f"unknown process corner {proc!r} (known: {sorted(self.process)})")
        shifts = self.process[proc]
        nmos = self.devices["nmos"].shifted(*shifts["nmos"])
        pmos = self.devices["pmos"].shifted(*shifts["pmos"])
        vdd = float(self.circuit["vdd_nominal"]) * float(params["supply_scale"])
        name = f"{proc}_{params['supply_scale']:g}V_{params['temperature_c']:g}C"
        return Corner(name, nmos, pmos, vdd, float(params["temperature_c"]))

    def corner_list(self, vset: VariationSet | None = None) -> list[Corner]:
        return [self.corner(v.params) for v in (vset or self.corners)]

    # -- reward ---------------------------------------------------------------------------------------
    def relative(self, meas: Mapping[str, np.ndarray]) -> np.ndarray:
        """(..., n_specs) normalised distances rel_i (>= 0 where the spec is met)."""
        cols = []
        for s in self.specs:
            m = np.maximum(np.nan_to_num(np.asarray(meas[s.name], dtype=float), nan=0.0), 0.0)
            t = s.target
            rel = (m - t) / (m + t) if s.sense == ">=" else (t - m) / (m + t)
            cols.append(rel)
        return np.stack(cols, axis=-1)

    def reward(self, meas: Mapping[str, np.ndarray]) -> np.ndarray:
        """AutoCkt/RobustAnalog reward: sum of the negative parts, or the bonus once within tolerance."""
        r = np.minimum(self.relative(meas), 0.0).sum(axis=-1)
        return np.where(r < -self.tolerance, r, self.bonus)

    def passes(self, meas: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.all(self.relative(meas) >= -self.tolerance, axis=-1)


def load_benchmark(path: str | Path | None = None) -> Benchmark:
    path = Path(path or SPECS_PATH)
    raw = yaml.safe_load(path.read_text())
    dv = raw["design_variables"]
    if tuple(dv) != DESIGN_VARIABLES:
        raise ValueError(f"{path}: design_variables must be {DESIGN_VARIABLES} in this order, got {tuple(dv)}")
    bounds = np.array([[float(dv[k][0]), float(dv[k][1])] for k in DESIGN_VARIABLES])
    if np.any(bounds[:, 0] <= 0) or np.any(bounds[:, 1] <= bounds[:, 0]):
        raise ValueError(f"{path}: every design variable needs 0 < lo < hi, got {bounds.tolist()}")
    devices = {k: MosCard(**{f: float(v) if f != "polarity" else int(v) for f, v in card.items()})
               for k, card in raw["devices"].items()}
    process = {p: {k: (float(v[0]), float(v[1])) for k, v in d.items()} for p, d in raw["process"].items()}
    specs = tuple(Spec(k, float(v["target"]), str(v["sense"])) for k, v in raw["specs"].items())
    for s in specs:
        if s.name not in MEASUREMENTS or s.sense not in (">=", "<="):
            raise ValueError(f"{path}: spec {s.name!r} must be one of {MEASUREMENTS} with sense '>=' or '<='")
    return Benchmark(
        circuit={k: float(v) for k, v in raw["circuit"].items()},
        bounds=bounds,
        devices=devices,
        process=process,
        corners=VariationSet.from_spec(raw["corners"], name="opamp_pvt"),
        held_out=VariationSet.from_spec(raw["held_out"], name="opamp_pvt_held_out"),
        specs=specs,
        tolerance=float(raw["reward"]["tolerance"]),
        bonus=float(raw["reward"]["bonus"]),
        reference_design=(np.array([float(raw["reference_design"][k]) for k in DESIGN_VARIABLES])
                          if raw.get("reference_design") else None),
    )
