"""Per-item metrics, paired effect statistics and BH q-values (pure functions; roles: negation_specific.py).

Per item and model state the pass measures (see :mod:`headwiki.ablation.scoring`):
``neg_acc`` (negated prompt answered with the foil, 0/1), ``aff_acc`` and ``ctrl_acc`` (target, 0/1),
``sens`` (S = LD_ctrl - LD_neg) and the raw ``neg_ld``, ``aff_ld``, ``ctrl_ld`` (LD per condition). An ablation's effect on a metric is the mean
over items of the paired difference (ablated - clean), with a percentile bootstrap 95% CI that
resamples clusters (templates), a two-sided sign-flip permutation p-value that flips the same
clusters (exact when there are at most 16, else adaptive Monte Carlo; :func:`headwiki.stats.signflip_pvalue`), and
Benjamini-Hochberg q-values across all heads of the model (per metric and ablation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from headwiki.ablation.scoring import correctness, logit_diffs, sensitivity
from headwiki.negation_rule import ALPHA  # re-exported: the pass's significance level
from headwiki.negation_spec import EFFECT_SPECS  # noqa: F401 (re-exported: the declarations of the effect columns)
from headwiki.stats import benjamini_hochberg, cluster_bootstrap_mean_ci, signflip_pvalue

METRICS: tuple[str, ...] = tuple(EFFECT_SPECS)  # the item metrics, in item_values' column order
MIN_TEMPLATES_FOR_CLUSTERING = 10


def item_values(slot_lp: torch.Tensor) -> torch.Tensor:
    """[..., n_slots] slot log-probs -> [..., n_items, len(METRICS)] per-item values in METRICS order."""
    ld = logit_diffs(slot_lp.double())
    ok = correctness(ld)
    return torch.stack([ok[..., 1], ok[..., 0], ok[..., 2], sensitivity(ld), ld[..., 1], ld[..., 0], ld[..., 2]], dim=-1)


def cluster_labels(templates: Sequence[str], item_ids: Sequence[str]) -> tuple[np.ndarray, str]:
    """Bootstrap clusters: templates when there are >= MIN_TEMPLATES_FOR_CLUSTERING of them, else items.

    Returns (labels [n_items], "template" | "item"): resampling 3 templates would give a degenerate CI.
    """
    if len(set(templates)) >= MIN_TEMPLATES_FOR_CLUSTERING:
        return np.asarray(templates), "template"
    return np.asarray(item_ids), "item"


@dataclass
class Effects:
    """Effect statistics for m ablations (heads or groups) x k = len(METRICS) metrics: each array [m, k]."""

    delta: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    p: np.ndarray
    q: np.ndarray
    p_floor: float = 0.0  # smallest p the permutation test can report (see headwiki.stats.SignFlipTest)
    p_exact: bool = False  # every sign pattern enumerated: p is exact, not a Monte-Carlo estimate
    n_flip_units: int = 0  # independent sign flips (clusters)


def paired_effects(
    base: np.ndarray, ablated: np.ndarray, clusters: np.ndarray, n_boot: int = 2000, n_perm: int = 2000, seed: int = 0
) -> Effects:
    """base [n_items, k], ablated [m, n_items, k] -> Effects ([m, k] each; q = BH over the m rows per metric)."""
    diff = ablated - base[None]  # [m, n, k]
    m, n, k = diff.shape
    flat = diff.transpose(1, 0, 2).reshape(n, m * k)
    mean, lo, hi = cluster_bootstrap_mean_ci(flat, clusters, n_boot=n_boot, seed=seed)
    test = signflip_pvalue(flat, clusters, n_perm=n_perm, seed=seed + 1)  # flips whole clusters, like the CI
    p = test.p.reshape(m, k)
    q = np.stack([benjamini_hochberg(p[:, j]) for j in range(k)], axis=1)
    return Effects(mean.reshape(m, k), lo.reshape(m, k), hi.reshape(m, k), p, q, test.floor, test.exact, test.n_clusters)


def accuracy_summary(values: np.ndarray, clusters: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Clean-run summary from per-item values [n, k]: mean of each metric with its cluster-bootstrap CI."""
    mean, lo, hi = cluster_bootstrap_mean_ci(values, clusters, n_boot=n_boot, seed=seed)
    return {m: (float(mean[j]), float(lo[j]), float(hi[j])) for j, m in enumerate(METRICS)}
