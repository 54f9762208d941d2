"""rtctl.safety — control-barrier-function shields (numpy + a QP solver; nothing heavier).

    from rtctl.safety import so101_shield, ArmState, VehicleShield, action_mask

Names are imported on first use, so `import rtctl.safety` itself loads nothing but this file.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ShieldInfo": "info", "BatchInfo": "info", "ShieldCounts": "info",
    "CBFQP": "qp", "solve2": "qp", "solve2_batch": "qp_batch",
    "continuous_row": "barriers", "hocbf_row": "barriers", "discrete_row": "barriers",
    "sampled_data_margin": "barriers", "robust_margin": "barriers",
    "ArmKinematics": "kinematics", "ArmShield": "arm", "ArmState": "arm", "so101_shield": "arm",
    "ArmShieldConfig": "arm_config",
    "SO101_TRACKING": "arm_config",
    "so101_tracking": "arm_config",
    "VehicleParams": "vehicle_model", "Road": "vehicle_model", "bicycle_step": "vehicle_model",
    "neighbour_table": "vehicle_model", "crossing_table": "vehicle_model", "footprint_extent": "vehicle_model",
    "VehicleShield": "vehicle", "VehicleShieldConfig": "vehicle",
    "Behaviour": "behaviours", "DEFAULT_BEHAVIOURS": "behaviours", "action_mask": "behaviours",
    "behaviour_references": "behaviours",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
