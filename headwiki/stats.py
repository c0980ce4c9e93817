"""Statistics shared by every pass: bootstrap CIs, Wilson intervals, permutation tests, BH q-values.

All functions are pure (arrays/tensors in, arrays out) and seeded through an explicit generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch

CI_LEVEL = 0.95


def bootstrap_mean_ci(
    per_sample: torch.Tensor, n_boot: int = 1000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean over dim 0 and its percentile bootstrap CI, resampling samples (dim 0).

    per_sample: [n, *shape] (e.g. [n_seqs, n_layers, n_heads]) -> (mean, lo, hi), each [*shape].
    """
    x = per_sample.double()
    n = x.shape[0]
    mean = x.mean(0)
    if n < 2:
        return mean, mean.clone(), mean.clone()
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=gen)
    flat = x.reshape(n, -1).cpu()
    # [n_boot, n] index -> mean over resampled rows, done as a count-weighted matmul: O(n_boot*n*m)
    counts = torch.zeros(n_boot, n, dtype=torch.float64)
    counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    boots = counts @ flat / n  # [n_boot, m]
    alpha = (1 - level) / 2
    lo = torch.quantile(boots, alpha, dim=0).reshape(mean.shape)
    hi = torch.quantile(boots, 1 - alpha, dim=0).reshape(mean.shape)
    return mean, lo.to(mean.device), hi.to(mean.device)


def cluster_bootstrap_mean_ci(
    per_item: np.ndarray, clusters: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over items (axis 0) with a CI that resamples whole clusters (e.g. templates).

    per_item: [n_items, m]; clusters: [n_items] labels -> (mean [m], lo [m], hi [m]).
    """
    x = np.asarray(per_item, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    k = len(labels)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, inverse, x)
    sizes = np.bincount(inverse, minlength=k).astype(np.float64)
    mean = x.mean(0)
    if k < 2:
        return mean, mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_boot, k))
    weights = np.zeros((n_boot, k))
    np.add.at(weights, (np.repeat(np.arange(n_boot), k), draws.ravel()), 1.0)
    boots = (weights @ sums) / (weights @ sizes)[:, None]
    alpha = (1 - level) / 2
    return mean, np.quantile(boots, alpha, axis=0), np.quantile(boots, 1 - alpha, axis=0)


def paired_permutation_pvalue(diff: np.ndarray, n_perm: int = 2000, seed: int = 0) -> np.ndarray:
    """Two-sided sign-flip permutation p-value of mean(diff) != 0 for paired differences.

    diff: [n_items, m] (ablated - baseline per item) -> p [m], with the +1 correction so p > 0.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    n = d.shape[0]
    observed = np.abs(d.mean(0))
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, n))
    null = np.abs(signs @ d / n)  # [n_perm, m]
    exceed = (null >= observed[None, :] - 1e-12).sum(0)
    p = (exceed + 1) / (n_perm + 1)
    p[np.all(d == 0, axis=0)] = 1.0
    return p


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH q-values for a flat array of p-values (same shape out); NaNs stay NaN."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    q = np.full_like(flat, np.nan)
    vals = flat[ok]
    m = len(vals)
    if m:
        order = np.argsort(vals)
        ranked = vals[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(ranked, 1.0)
        q[ok] = out
    return q.reshape(p.shape)


def wilson_interval(successes: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n == 0:
        return (math.nan, math.nan)
    z = _z(level)
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    import pandas as pd

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def bootstrap_ratio_ci(
    num: np.ndarray, den: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratio of means sum(num)/sum(den) over samples, with a percentile bootstrap CI resampling samples.

    num: [n, m] (m ratios sharing the denominator), den: [n] -> (ratio [m], lo [m], hi [m]).
    """
    a = np.asarray(num, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    d = np.asarray(den, dtype=np.float64)
    n = a.shape[0]
    ratio = a.sum(0) / d.sum()
    if n < 2:
        return ratio, ratio.copy(), ratio.copy()
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), rng.integers(0, n, size=n_boot * n)), 1.0)
    boots = (counts @ a) / (counts @ d)[:, None]  # [n_boot, m]
    alpha = (1 - level) / 2
    return ratio, np.quantile(boots, alpha, axis=0), np.quantile(boots, 1 - alpha, axis=0)
