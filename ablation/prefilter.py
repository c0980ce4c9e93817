"""CPU mode of the negation-ablation pass: attribution patching for every head, exact ablation for a few.

An exact zero+mean sweep of every head of a real model (e.g. SmolLM2-135M: 270 heads x 400+ items)
takes hours on 2 CPU cores. In ``prefilter`` mode the pass

1. estimates every head's effect on S with attribution patching (one forward + backward per batch),
2. ablates exactly the top-K heads by |estimate| (max over the requested ablations), plus K heads
   drawn at random from the rest (seeded) to measure what the prefilter misses,
3. reports, over the exactly measured heads, the Spearman correlation between estimate and exact
   effect, the top-K recall (of the K largest exact |effects| among the measured heads, how many
   the prefilter ranked in its top K) and how many random-check heads beat the smallest exact
   effect of the prefilter's top K.

Heads not measured exactly keep NULL in the exact columns (their estimate is in the ``_atp_``
columns); ``ablation_exact`` says which is which. q-values count every head of the model as a
test (unmeasured heads enter Benjamini-Hochberg with p = 1), so selecting heads does not make
the correction laxer.

``auto`` (the default) picks ``prefilter`` on CPU for models with more than PREFILTER_MIN_HEADS
heads and ``exact`` otherwise (a GPU, or a small model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from headwiki.errors import HeadwikiError
from headwiki.stats import benjamini_hochberg, spearman

MODES: tuple[str, ...] = ("auto", "exact", "prefilter")
PREFILTER_MIN_HEADS = 128
DEFAULT_TOP_K = 8
PREFILTER_MAX_GROUP = 4  # ranked role groups up to this size in prefilter mode (no per-layer groups)
PREFILTER_MAX_ITEMS = 64  # items used in prefilter mode unless --max-items says otherwise


def resolve_mode(mode: str, device: str, n_heads_total: int) -> str:
    """'auto' -> 'prefilter' on CPU for models with many heads, else 'exact'; other values validated."""
    if mode not in MODES:
        raise HeadwikiError(f"unknown --mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    return "prefilter" if device == "cpu" and n_heads_total > PREFILTER_MIN_HEADS else "exact"


@dataclass(frozen=True)
class Selection:
    """Heads (flat index L * n_heads + h) measured exactly: the prefilter's top K and the random check."""

    top: list[int]
    random: list[int]

    @property
    def measured(self) -> list[int]:
        return sorted(set(self.top) | set(self.random))

    def source(self, i: int) -> str | None:
        return "attribution_top_k" if i in self.top else ("random_check" if i in self.random else None)


def select_heads(estimates: dict[str, torch.Tensor], top_k: int, seed: int) -> Selection:
    """Top-K flat head indices by max over ablations of |estimated delta S|, plus K random others.

    estimates: {ablation: [n_layers, n_heads]} attribution estimates of delta S."""
    score = torch.stack([e.reshape(-1).abs() for e in estimates.values()]).max(0).values.numpy()
    m = score.shape[0]
    k = max(1, min(top_k, m))
    order = np.lexsort((np.arange(m), -score))
    top = [int(i) for i in order[:k]]
    rest = np.array(sorted(set(range(m)) - set(top)))
    rng = np.random.default_rng(seed)
    random = sorted(int(i) for i in rng.choice(rest, size=min(k, len(rest)), replace=False)) if len(rest) else []
    return Selection(top=top, random=random)


def expand(values: np.ndarray, measured: list[int], m: int) -> np.ndarray:
    """Rows of `values` [len(measured), ...] placed at `measured` in an [m, ...] array of NaN."""
    out = np.full((m, *values.shape[1:]), np.nan)
    out[measured] = values
    return out


def q_over_all_heads(p_measured: np.ndarray, measured: list[int], m: int) -> np.ndarray:
    """BH q-values [m, k] with every unmeasured head counted as a test with p = 1 (NaN in the output)."""
    padded = np.ones((m, p_measured.shape[1]))
    padded[measured] = p_measured
    q = np.stack([benjamini_hochberg(padded[:, j]) for j in range(padded.shape[1])], axis=1)
    out = np.full_like(q, np.nan)
    out[measured] = q[measured]
    return out


def agreement(estimate: np.ndarray, exact: np.ndarray, selection: Selection) -> dict[str, Any]:
    """How well the estimate ranked heads, over the exactly measured ones.

    estimate, exact: [m] (exact NaN where unmeasured) -> spearman, top-K recall, random-check misses."""
    measured = selection.measured
    k = len(selection.top)
    est, ex = estimate[measured], exact[measured]
    true_top = {measured[i] for i in np.argsort(-np.abs(ex), kind="stable")[:k]}
    floor = float(np.min(np.abs(exact[selection.top]))) if selection.top else float("nan")
    misses = [i for i in selection.random if abs(exact[i]) > floor]
    return {
        "spearman": spearman(est, ex), "n_measured": len(measured), "k": k,
        "top_k_recall": len(true_top & set(selection.top)) / k if k else float("nan"),
        "random_check_beating_top_k_floor": len(misses), "random_check_size": len(selection.random),
        "estimated_missed_heads": round(len(misses) / max(1, len(selection.random)) * (len(estimate) - len(measured)), 1),
    }
