"""What a shield reports about each command it filters, and the running counts a run summary needs."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OK, RELAXED, FALLBACK = "ok", "relaxed", "fallback"
STATUS_CODES = {OK: 0, RELAXED: 1, FALLBACK: 2}


@dataclass(slots=True)
class ShieldInfo:
    """Diagnostics of one `filter()` call.

    status: "ok" (the QP's hard constraints hold), "relaxed" (only the bounded-slack problem was feasible:
    some barrier condition is loosened by at most `slack`), "fallback" (hold / full brake; see `reason`).
    h_min: the smallest barrier value at the current state (metres; < 0 means outside the safe set).
    active: labels of the barrier rows active at the answer. solve_us: the whole call, µs."""

    status: str
    intervened: bool
    h_min: float
    active: tuple = ()
    slack: float = 0.0
    solve_us: float = 0.0
    reason: str = ""
    rows: int = 0


@dataclass(slots=True)
class BatchInfo:
    """`filter_batch` diagnostics, one entry per problem: status codes 0 ok / 1 relaxed / 2 fallback;
    target_ok: whether the requested target lane was admitted (vehicle shield)."""

    status: np.ndarray
    intervened: np.ndarray
    h_min: np.ndarray
    slack: np.ndarray
    solve_us: float = 0.0
    target_ok: np.ndarray | None = None


@dataclass
class ShieldCounts:
    """Running totals of a shield's decisions (for summary.json)."""

    calls: int = 0
    interventions: int = 0
    relaxed: int = 0
    fallbacks: int = 0
    fallback_reasons: dict = field(default_factory=dict)
    h_min: float = float("inf")

    def add(self, info: ShieldInfo) -> None:
        self.calls += 1
        self.interventions += info.intervened
        if info.status == RELAXED:
            self.relaxed += 1
        elif info.status == FALLBACK:
            self.fallbacks += 1
            self.fallback_reasons[info.reason] = self.fallback_reasons.get(info.reason, 0) + 1
        if info.h_min < self.h_min:
            self.h_min = info.h_min

    def add_batch(self, info: BatchInfo) -> None:
        self.calls += int(info.status.size)
        self.interventions += int(np.count_nonzero(info.intervened))
        self.relaxed += int(np.count_nonzero(info.status == 1))
        self.fallbacks += int(np.count_nonzero(info.status == 2))
        if info.h_min.size:
            self.h_min = min(self.h_min, float(np.min(info.h_min)))

    def as_dict(self) -> dict:
        return {"calls": self.calls, "interventions": self.interventions, "relaxed": self.relaxed,
                "fallbacks": self.fallbacks, "fallback_reasons": dict(self.fallback_reasons),
                "h_min": self.h_min if self.h_min != float("inf") else None}
