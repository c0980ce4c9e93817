"""Statistics shared by every pass: bootstrap CIs, Wilson intervals, permutation tests, BH q-values.

All functions are pure (arrays/tensors in, arrays out) and seeded through an explicit generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from headwiki.pvalues import format_pvalue, format_qvalue  # noqa: F401 - re-exported: their home is torch-free

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


def resample_counts(draws: np.ndarray, k: int) -> np.ndarray:
    """draws [n_boot, n] cluster indices in 0..k-1 -> counts [n_boot, k] (float64): how often each resample drew each
    cluster. One bincount (what np.add.at computed, exactly: integer counts; ~50x faster, which a live sandbox toggle feels)."""
    n_boot = draws.shape[0]
    flat = (np.arange(n_boot)[:, None] * k + draws).ravel()
    return np.bincount(flat, minlength=n_boot * k).reshape(n_boot, k).astype(np.float64)


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
    weights = resample_counts(draws, k)
    boots = (weights @ sums) / (weights @ sizes)[:, None]
    alpha = (1 - level) / 2
    return mean, np.quantile(boots, alpha, axis=0), np.quantile(boots, 1 - alpha, axis=0)


#: Cluster counts up to this are tested exactly (all 2**k sign patterns enumerated).
MAX_EXACT_CLUSTERS = 16
#: Monte-Carlo sign flips stop for a column once this many null statistics reach the observed one
#: (relative standard error of p about 1/sqrt(20) = 22%) ...
TARGET_EXCEEDANCES = 20
#: ... or after this many permutations: the resolution floor of a Monte-Carlo p-value is 1/(MAX_PERMUTATIONS + 1).
MAX_PERMUTATIONS = 100_000


@dataclass(frozen=True)
class SignFlipTest:
    """Result of :func:`signflip_pvalue`.

    p [m]: two-sided p-values. n_perm [m]: sign patterns used per column (2**k when exact).
    exact: every sign pattern was enumerated (p is exact; its smallest possible value is 2 / 2**k).
    floor: the smallest p this test can report (exact: 2 / 2**k; Monte Carlo: 1 / (max_perm + 1)); a
    Monte-Carlo p at the floor means "no null statistic reached the observed one: p < floor".
    n_clusters: k, the number of independent sign flips (clusters, or items when each is its own cluster).
    """

    p: np.ndarray
    n_perm: np.ndarray
    exact: bool
    floor: float
    n_clusters: int

    def at_floor(self) -> np.ndarray:
        """[m] True where p is only an upper bound (Monte Carlo with no exceedance)."""
        if self.exact:
            return np.zeros(self.p.shape, dtype=bool)
        return self.p <= self.floor * (1 + 1e-9)


def signflip_pvalue(
    diff: np.ndarray, clusters: np.ndarray | None = None, n_perm: int = 2000, seed: int = 0,
    max_perm: int = MAX_PERMUTATIONS, target_exceedances: int = TARGET_EXCEEDANCES,
    max_exact_clusters: int = MAX_EXACT_CLUSTERS,
) -> SignFlipTest:
    """Two-sided paired sign-flip permutation test of mean(diff) != 0, cluster-aware.

    diff: [n_items, m] paired differences (ablated - baseline); clusters: [n_items] labels (e.g. templates;
    None = every item its own cluster). Under the null each cluster's differences are symmetric about 0,
    so the sign of each cluster's SUM is flipped as a unit (the same unit the cluster bootstrap resamples).
    Statistic |sum_c eps_c s_c| (equivalent to |mean|). With k <= max_exact_clusters clusters every sign
    pattern is enumerated: p = #{|T_g| >= |T_obs|} / 2**k (exact). Otherwise Monte Carlo, adaptively:
    n_perm patterns for all columns, then doubling rounds for the columns with fewer than
    ``target_exceedances`` exceedances, up to ``max_perm``; p = (exceed + 1) / (N + 1). Columns that are
    all zero get p = 1.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    n, m = d.shape
    labels = np.arange(n) if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()
    k = int(labels.max()) + 1 if n else 0
    sums = np.zeros((k, m))
    np.add.at(sums, labels, d)
    observed = np.abs(sums.sum(0))
    tol = 1e-9 * np.maximum(np.abs(sums).sum(0), 1e-300)  # float ties count as reaching the observed value
    zero = np.all(d == 0, axis=0)
    if k <= max_exact_clusters:
        total = 1 << k
        exceed = np.zeros(m)
        bits = np.arange(k)
        chunk = max(1, (1 << 22) // max(k, 1))
        for start in range(0, total, chunk):
            codes = np.arange(start, min(total, start + chunk))
            signs = ((codes[:, None] >> bits) & 1) * 2.0 - 1.0  # [c, k]
            exceed += (np.abs(signs @ sums) >= observed - tol).sum(0)
        p = exceed / total
        p[zero] = 1.0
        return SignFlipTest(p, np.full(m, total), True, 2.0 / total, k)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(m)
    used = np.zeros(m, dtype=np.int64)
    active = np.ones(m, dtype=bool)
    batch = n_perm
    while active.any():
        cols = np.flatnonzero(active)
        chunk = max(1, (1 << 22) // max(k, 1))
        for start in range(0, batch, chunk):
            c = min(chunk, batch - start)
            signs = rng.choice(np.array([-1.0, 1.0]), size=(c, k))
            exceed[cols] += (np.abs(signs @ sums[:, cols]) >= observed[cols] - tol[cols]).sum(0)
        used[cols] += batch
        batch = int(min(used.max(), max_perm - used[cols].max()))
        active = (exceed < target_exceedances) & (used < max_perm) & ~zero
        if batch <= 0:
            break
    p = (exceed + 1) / (used + 1)
    p[zero] = 1.0
    return SignFlipTest(p, used, False, 1.0 / (max(max_perm, n_perm) + 1), k)


def paired_permutation_pvalue(diff: np.ndarray, n_perm: int = 2000, seed: int = 0,
                              clusters: np.ndarray | None = None) -> np.ndarray:
    """p-values [m] of :func:`signflip_pvalue` (diff [n_items, m]; clusters [n_items] or None = items)."""
    return signflip_pvalue(diff, clusters, n_perm=n_perm, seed=seed).p


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
