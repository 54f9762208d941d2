"""Per-car map between the shield's command (acceleration m/s², steering rad) and the VESC's inputs.

Longitudinal model, fitted per car from a logged ramp (`fit_throttle`):
    drive  (motor current I ≥ 0):  a = k_drive · I − c0 − c1 · v
    brake  (brake current B ≥ 0):  a = −k_brake · B − c0 − c1 · v        (only while rolling forward)
with v = ERPM / erpm_per_mps. Inverting it gives the current for a wanted acceleration at the present speed.
Steering: servo position = servo_center + servo_per_rad · δ, clipped to [servo_min, servo_max] (the F1TENTH
VESC convention, where the servo output drives the steering servo).

A calibration lives in a small YAML file (configs/calibration/car_<n>.yaml); unknown keys are errors.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import yaml


@dataclass(frozen=True)
class Calibration:
    erpm_per_mps: float = 4614.0  # F1TENTH default speed_to_erpm_gain
    k_drive: float = 0.5  # m/s² per A
    k_brake: float = 0.6  # m/s² per A of brake current
    c0: float = 0.1  # m/s², rolling resistance
    c1: float = 0.2  # 1/s, speed-proportional drag
    max_current: float = 20.0  # A, the most the driver commands (below the VESC's own limit)
    max_brake_current: float = 20.0
    servo_center: float = 0.5304  # F1TENTH steering_angle_to_servo_offset
    servo_per_rad: float = -1.2135  # F1TENTH steering_angle_to_servo_gain
    servo_min: float = 0.05
    servo_max: float = 0.95

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"calibration.{f.name} must be a finite number, got {v!r}")
        for name in ("erpm_per_mps", "k_drive", "k_brake", "max_current", "max_brake_current"):
            if getattr(self, name) <= 0:
                raise ValueError(f"calibration.{name} must be > 0, got {getattr(self, name)!r}")
        if self.servo_per_rad == 0:
            raise ValueError("calibration.servo_per_rad must not be 0")
        if not 0.0 <= self.servo_min < self.servo_max <= 1.0:
            raise ValueError("calibration needs 0 ≤ servo_min < servo_max ≤ 1")

    # -- command -> VESC ------------------------------------------------------------------------------------
    def speed(self, erpm: float) -> float:
        return erpm / self.erpm_per_mps

    def current_for(self, accel: float, v: float) -> tuple[str, float]:
        """("current", I) to drive or ("brake", B) to slow down, for acceleration `accel` at speed v."""
        need = accel + self.c0 + self.c1 * max(v, 0.0)  # what the motor must add to the passive decay
        if need >= 0.0:
            return "current", min(need / self.k_drive, self.max_current)
        return "brake", min(-need / self.k_brake, self.max_brake_current)

    def servo_for(self, steer: float) -> float:
        return min(max(self.servo_center + self.servo_per_rad * steer, self.servo_min), self.servo_max)

    def steer_of(self, servo: float) -> float:
        return (servo - self.servo_center) / self.servo_per_rad

    def accel_of(self, mode: str, amps: float, v: float) -> float:
        """The model's acceleration for a command (what the emulator uses as its plant)."""
        drag = self.c0 * (v > 1e-3) + self.c1 * max(v, 0.0)
        push = self.k_drive * amps if mode == "current" else -self.k_brake * amps * (v > 1e-3)
        return push - drag

    # -- file -------------------------------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, data: Mapping, source: str = "<calibration>") -> "Calibration":
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: a calibration must be a mapping of keys to numbers")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"{source}: unknown calibration keys {unknown} (allowed: {sorted(allowed)})")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file not found: {path}")
        return cls.from_mapping(yaml.safe_load(path.read_text()) or {}, str(path))

    def save(self, path: str | Path, comment: str = "") -> Path:
        path = Path(path)
        head = "".join(f"# {line}\n" for line in comment.splitlines())
        path.write_text(head + yaml.safe_dump(asdict(self), sort_keys=False))
        return path


def fit_throttle(rows: Iterable[Mapping], base: Calibration | None = None) -> tuple[Calibration, dict]:
    """Fit k_drive, k_brake, c0, c1 from a logged ramp.

    rows: dicts with t (s), mode ("current" | "brake"), amps (commanded, A) and erpm (measured), in time
    order, e.g. a current ramp up, a hold and a brake ramp down logged by the driver. Accelerations come
    from central differences of the measured speed. Returns the calibration (other fields from `base`)
    and fit diagnostics (rows used, RMS residual in m/s²).
    """
    base = base or Calibration()
    rows = list(rows)
    if len(rows) < 10:
        raise ValueError(f"a throttle fit needs at least 10 logged rows, got {len(rows)}")
    t = np.array([float(r["t"]) for r in rows])
    v = np.array([float(r["erpm"]) for r in rows]) / base.erpm_per_mps
    amps = np.array([float(r["amps"]) for r in rows])
    brake = np.array([r["mode"] == "brake" for r in rows])
    if np.any(np.diff(t) <= 0):
        raise ValueError("throttle log times must increase")
    a = np.gradient(v, t)
    moving = v > 0.05  # the drag terms (and braking) act only while rolling
    use = moving.copy()
    use[[0, -1]] = False
    if use.sum() < 6 or not (use & brake).any() or not (use & ~brake).any():
        raise ValueError("the throttle log needs rolling rows with both drive and brake currents")
    # a = k_drive·I·[drive] − k_brake·B·[brake] − c0 − c1·v
    X = np.column_stack([np.where(brake, 0.0, amps), np.where(brake, -amps, 0.0), -np.ones_like(v), -v])[use]
    coef, *_ = np.linalg.lstsq(X, a[use], rcond=None)
    k_drive, k_brake, c0, c1 = (float(c) for c in coef)
    if k_drive <= 0 or k_brake <= 0:
        raise ValueError(f"throttle fit gave non-physical gains (k_drive {k_drive:.3g}, k_brake {k_brake:.3g}); "
                         "log a longer ramp with larger currents")
    resid = a[use] - X @ coef
    cal = Calibration(**{**asdict(base), "k_drive": k_drive, "k_brake": k_brake, "c0": max(c0, 0.0),
                         "c1": max(c1, 0.0)})
    return cal, {"rows": int(use.sum()), "rms_mps2": float(np.sqrt(np.mean(resid ** 2)))}
