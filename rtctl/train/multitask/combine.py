"""Gradient combiners for multi-task updates: plain sum, PCGrad (Yu et al. 2020), CAGrad (Liu et al. 2021).

Each takes the per-task gradients as a K x P matrix and returns one P-vector. PCGrad and CAGrad only need
inner products between task gradients, so both work on the K x K Gram matrix and express the result as a
weight per task gradient: the cost of the surgery does not grow with the number of network parameters.

PCGrad: for each task i, g_i' = g_i, then for every other task j in a fresh random order, if g_i'.g_j < 0,
remove the conflicting component g_i' -= (g_i'.g_j / |g_j|^2) g_j; the update is sum_i g_i'.
CAGrad: g0 = mean g_i; choose simplex weights w minimising g_w.g0 + c|g0| |g_w|; the update is
(g0 + c|g0| / |g_w| * g_w) / (1 + c^2) (the authors' rescaled form).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize


@dataclass(frozen=True)
class Combined:
    grad: torch.Tensor  # (P,)
    conflict_rate: float  # fraction of task pairs whose gradients point against each other


def gram(grads: torch.Tensor) -> np.ndarray:
    g = grads.detach().double()
    return (g @ g.T).cpu().numpy()


def conflict_rate(G: np.ndarray) -> float:
    k = len(G)
    if k < 2:
        return 0.0
    iu = np.triu_indices(k, 1)
    return float(np.mean(G[iu] < 0))


def pcgrad_weights(G: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Weights w with sum_i g_i' = sum_j w_j g_j. Row i of C holds g_i' in the basis of the original g_j."""
    k = len(G)
    C = np.eye(k)
    for i in range(k):
        for j in rng.permutation(k):
            if j == i or G[j, j] <= 0:
                continue
            dot = C[i] @ G[:, j]
            if dot < 0:
                C[i, j] -= dot / G[j, j]
    return C.sum(axis=0)


def cagrad_weights(G: np.ndarray, c: float) -> np.ndarray:
    k = len(G)
    g0_norm = np.sqrt(max(G.mean(), 0.0) + 1e-12)
    b = np.full(k, 1.0 / k)
    radius = c * g0_norm + 1e-12

    def objective(w: np.ndarray) -> float:
        return float(w @ G @ b + radius * np.sqrt(max(w @ G @ w, 0.0) + 1e-12))

    res = minimize(objective, b.copy(), bounds=[(0.0, 1.0)] * k,
                   constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum()},), method="SLSQP")
    w = np.clip(res.x, 0.0, 1.0)
    gw_norm = np.sqrt(max(w @ G @ w, 0.0))
    lam = radius / (gw_norm + 1e-12)
    return (b + lam * w) / (1.0 + c * c)


def combine(grads: torch.Tensor, kind: str, rng: np.random.Generator, cagrad_c: float = 0.5) -> Combined:
    """Combine K x P task gradients into one update direction."""
    if grads.ndim != 2:
        raise ValueError(f"combine expects a (tasks, params) matrix, got shape {tuple(grads.shape)}")
    if kind == "sum" or len(grads) == 1:
        G = gram(grads) if len(grads) > 1 else np.zeros((1, 1))
        return Combined(grads.sum(dim=0), conflict_rate(G))
    G = gram(grads)
    if kind == "pcgrad":
        w = pcgrad_weights(G, rng)
    elif kind == "cagrad":
        w = cagrad_weights(G, cagrad_c)
    else:
        raise ValueError(f"unknown gradient combiner {kind!r} (pcgrad, sum, cagrad)")
    return Combined(torch.as_tensor(w, dtype=grads.dtype) @ grads, conflict_rate(G))


def pcgrad_reference(grads: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The textbook vector form of PCGrad (for tests: must equal `combine(..., "pcgrad")` with the same rng)."""
    g = grads.detach().double()
    out = []
    for i in range(len(g)):
        gi = g[i].clone()
        for j in rng.permutation(len(g)):
            if j == i:
                continue
            dot = gi @ g[j]
            if dot < 0 and g[j] @ g[j] > 0:
                gi = gi - dot / (g[j] @ g[j]) * g[j]
        out.append(gi)
    return torch.stack(out).sum(dim=0).to(grads.dtype)
