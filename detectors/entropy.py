"""Attention-entropy detector.

Data: natural text windows. Score: for each query position i >= 1, the entropy of its attention
row over the i+1 visible keys divided by log(i+1) (so 0 = all mass on one key, 1 = uniform), averaged
over positions, then over sequences.
"""

from __future__ import annotations

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.spec import Metric


def normalized_entropy(patterns: torch.Tensor) -> torch.Tensor:
    """Per-row normalized entropy.

    patterns: [..., s, s] (causal rows summing to 1) -> [..., s-1] for query rows 1..s-1.
    """
    p = patterns[..., 1:, :].double()
    ent = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    visible = torch.arange(2, patterns.shape[-1] + 1, device=patterns.device, dtype=torch.float64)
    return (ent / torch.log(visible)).to(patterns.dtype)


def entropy_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s] -> [b, n_layers, n_heads]."""
    return normalized_entropy(patterns).mean(-1)


METRIC = Metric(
    "entropy", "attention entropy", "detector", "score", "norm_entropy",
    "mean normalized attention entropy (0 = one key, 1 = uniform) over query positions i >= 1, natural text",
    data="natural text windows", ci=True, heatmap=True, order=4,
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="text", fn=entropy_scores, metrics=(METRIC,)))
