"""Ranked-group and whole-layer ablations: which sets of heads carry negation together.

Groups (each run with every requested ablation, all heads of a group ablated at once):

* ``role`` groups: for each detector role the model's detect run declared (`roles` table), the top-k
  heads by its score, k = 1, 2, 4, 8, ... up to the number of heads
  (NaN scores rank last);
* ``layer`` groups: every head of one layer, for each layer;
* ``all``: every attention head of the model (an invariant check: negation should vanish).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from headwiki.ablation.sweep import Replica
from headwiki.db.store import head_label


@dataclass(frozen=True)
class HeadGroup:
    """A named set of heads: kind (role | layer | all), name (role or "L3"), k (its size), heads [(layer, head)]."""

    kind: str
    name: str
    k: int
    heads: tuple[tuple[int, int], ...]

    @property
    def replica(self) -> Replica:
        by_layer: dict[int, list[int]] = {}
        for layer, head in self.heads:
            by_layer.setdefault(layer, []).append(head)
        return {layer: tuple(sorted(hs)) for layer, hs in by_layer.items()}

    @property
    def labels(self) -> list[str]:
        return [head_label(layer, head) for layer, head in self.heads]


def ranked_sizes(n_total: int) -> list[int]:
    """1, 2, 4, 8, ... <= n_total."""
    sizes, k = [], 1
    while k <= n_total:
        sizes.append(k)
        k *= 2
    return sizes


def rank_heads(frame: pd.DataFrame) -> list[tuple[int, int]]:
    """(layer, head) by descending `score` (columns layer, head, score); ties by layer then head, NaN scores last."""
    score = frame["score"].to_numpy(dtype=float)
    order = np.lexsort((frame["head"].to_numpy(), frame["layer"].to_numpy(), np.where(np.isnan(score), np.inf, -score)))
    return [(int(frame["layer"].iloc[i]), int(frame["head"].iloc[i])) for i in order]


def role_groups(scores: Mapping[str, pd.DataFrame]) -> list[HeadGroup]:
    """Top-k groups per role; `scores[role]` has columns layer, head, score (one row per head)."""
    groups: list[HeadGroup] = []
    for role, frame in scores.items():
        ranked = rank_heads(frame)
        for k in ranked_sizes(len(ranked)):
            groups.append(HeadGroup("role", role, k, tuple(ranked[:k])))
    return groups


def layer_groups(n_layers: int, n_heads: int) -> list[HeadGroup]:
    """One group per layer (all its heads) plus the group of every head of the model."""
    groups = [HeadGroup("layer", f"L{layer}", n_heads, tuple((layer, h) for h in range(n_heads))) for layer in range(n_layers)]
    groups.append(HeadGroup("all", "all_heads", n_layers * n_heads,
                            tuple((layer, h) for layer in range(n_layers) for h in range(n_heads))))
    return groups
