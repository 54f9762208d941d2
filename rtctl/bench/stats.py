"""Confidence intervals for benchmark rows (success rates and means)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson_ci(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_ci(values: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if a.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    m = float(a.mean())
    half = z * float(a.std(ddof=1)) / math.sqrt(a.size) if a.size > 1 else float("nan")
    return (m, m - half, m + half)


def diff_proportions_ci(s1: int, n1: int, s2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 − p2 with a normal-approximation 95% interval."""
    p1, p2 = s1 / n1, s2 / n2
    half = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return (p1 - p2, p1 - p2 - half, p1 - p2 + half)


def diff_means_ci(a: Sequence[float], b: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    x = np.asarray([v for v in a if v is not None and np.isfinite(v)], float)
    y = np.asarray([v for v in b if v is not None and np.isfinite(v)], float)
    if x.size < 2 or y.size < 2:
        return (float("nan"),) * 3
    d = float(x.mean() - y.mean())
    half = z * math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    return (d, d - half, d + half)
