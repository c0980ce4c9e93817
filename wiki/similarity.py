"""Metric-profile similarity between heads (pure functions)."""

from __future__ import annotations

import numpy as np


def zscore_columns(x: np.ndarray) -> np.ndarray:
    """Standardise each column of x [n_heads, n_metrics]; NaN -> 0 (the column mean); constant columns -> 0."""
    x = np.asarray(x, dtype=float)
    mean = np.nanmean(np.where(np.isnan(x), np.nan, x), axis=0) if x.size else np.zeros(x.shape[1])
    std = np.nanstd(x, axis=0) if x.size else np.ones(x.shape[1])
    mean = np.nan_to_num(mean)
    std = np.where(np.nan_to_num(std) > 1e-12, np.nan_to_num(std), 1.0)
    return np.nan_to_num((x - mean) / std)


def most_similar(x: np.ndarray, index: int, k: int = 5) -> list[tuple[int, float]]:
    """The k rows of x [n_heads, n_metrics] closest to row `index` (Euclidean on z-scored columns).

    Returns [(row, distance)] sorted by distance then row (deterministic), excluding `index` itself.
    """
    z = zscore_columns(x)
    d = np.sqrt(((z - z[index]) ** 2).sum(axis=1))
    order = sorted((float(d[i]), i) for i in range(len(d)) if i != index)
    return [(i, dist) for dist, i in order[:k]]
