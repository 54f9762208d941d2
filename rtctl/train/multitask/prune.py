"""Task pruning (RobustAnalog §3.4 as re-implemented publicly): cluster the tasks by their current
performance and keep, per cluster, the task that does worst, plus the nominal task.

The features are z-scored per column (a column that does not vary contributes nothing); k is fixed or
picked by the best silhouette in [k_min, k_max]. k-means is seeded (k-means++ with several restarts), so
a given performance matrix and RNG state always select the same tasks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Selection:
    active: list[int]  # sorted task indices to train on
    labels: np.ndarray  # cluster of every task
    k: int


def zscore(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    sd = X.std(axis=0)
    return np.where(sd > 1e-12, (X - X.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0), 0.0)


def kmeans(X: np.ndarray, k: int, rng: np.random.Generator, restarts: int = 4, iters: int = 50
           ) -> tuple[np.ndarray, float]:
    """Lloyd's k-means with k-means++ seeding; returns (labels, inertia) of the best restart."""
    n = len(X)
    best_labels, best_inertia = np.zeros(n, dtype=int), np.inf
    for _ in range(restarts):
        centers = [X[rng.integers(n)]]
        for _ in range(1, k):
            d2 = np.min(((X[:, None, :] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
            total = d2.sum()
            centers.append(X[rng.choice(n, p=d2 / total)] if total > 0 else X[rng.integers(n)])
        C = np.array(centers)
        labels = np.zeros(n, dtype=int)
        for it in range(iters):
            labels_new = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
            if it > 0 and np.array_equal(labels_new, labels):
                break
            labels = labels_new
            for c in range(k):
                if np.any(labels == c):
                    C[c] = X[labels == c].mean(axis=0)
        inertia = float(((X - C[labels]) ** 2).sum())
        if inertia < best_inertia - 1e-12:
            best_labels, best_inertia = labels.copy(), inertia
    return best_labels, best_inertia


def silhouette(X: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (-1..1); 0 for a single cluster."""
    uniq = np.unique(labels)
    if len(uniq) < 2:
        return 0.0
    D = np.sqrt(((X[:, None, :] - X[None]) ** 2).sum(-1))
    s = np.zeros(len(X))
    for i in range(len(X)):
        same = labels == labels[i]
        if same.sum() <= 1:
            continue
        a = D[i, same].sum() / (same.sum() - 1)
        b = min(D[i, labels == c].mean() for c in uniq if c != labels[i])
        s[i] = (b - a) / max(a, b) if max(a, b) > 0 else 0.0
    return float(s.mean())


def select_tasks(features: np.ndarray, scores: np.ndarray, nominal: int, rng: np.random.Generator,
                 k: int | None = None, k_min: int = 2, k_max: int = 4, include_nominal: bool = True) -> Selection:
    """Worst task (lowest ``scores``) of each k-means cluster of ``features`` (+ the nominal task)."""
    F = np.asarray(features, dtype=float)
    scores = np.asarray(scores, dtype=float)
    n = len(F)
    if F.ndim != 2 or len(scores) != n:
        raise ValueError(f"select_tasks: features must be (tasks, metrics) and scores (tasks,), got {F.shape}, "
                         f"{scores.shape}")
    Z = zscore(F)
    if k is None:
        candidates = [kk for kk in range(max(1, k_min), min(k_max, n - 1) + 1)]
        if not candidates:
            labels, k = np.zeros(n, dtype=int), 1
        else:
            fits = [(kk, kmeans(Z, kk, rng)[0]) for kk in candidates]
            k, labels = max(fits, key=lambda f: silhouette(Z, f[1]))
    else:
        k = min(int(k), n)
        labels = kmeans(Z, k, rng)[0]
    active = set()
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        active.add(int(members[np.argmin(scores[members])]))
    if include_nominal:
        active.add(int(nominal))
    return Selection(sorted(active), labels, int(k))


def worst_fraction(scores: np.ndarray, epsilon: float) -> list[int]:
    """Indices of the worst ceil(epsilon * n) scores (EPOpt / CVaR_epsilon), lowest first."""
    scores = np.asarray(scores, dtype=float)
    m = max(1, int(np.ceil(epsilon * len(scores) - 1e-9)))
    return [int(i) for i in np.argsort(scores, kind="stable")[:m]]


def worst_mean(scores: np.ndarray, fraction: float = 0.1) -> float:
    """Mean of the worst ceil(fraction * n) values (the 'worst-10%' figure when fraction = 0.1)."""
    scores = np.asarray(scores, dtype=float)
    return float(np.mean(scores[worst_fraction(scores, fraction)]))


def summarize(returns: np.ndarray) -> dict[str, float]:
    """Mean, worst-task and worst-10 % figures of per-task returns."""
    r = np.asarray(returns, dtype=float)
    return {"mean": float(r.mean()), "worst": float(r.min()), "worst10": worst_mean(r, 0.1)}
