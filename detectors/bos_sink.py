"""BOS-sink detector.

Data: natural text windows [BOS, t_1..]. Score: mean attention mass on position 0 over query
positions i >= 1 (row 0 can only attend to itself), then over sequences. 1.0 = all attention parked
on BOS (a "resting" head); uniform causal attention scores mean(1/(i+1)).
"""

from __future__ import annotations

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.spec import Metric


def bos_sink_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s] -> [b, n_layers, n_heads]."""
    return patterns[..., 1:, 0].mean(-1)


METRIC = Metric(
    "bos_sink", "BOS sink", "detector", "score", "attention",
    "mean attention mass on position 0 (BOS) over query positions i >= 1, natural text",
    data="natural text windows", ci=True, heatmap=True, order=3,
    confound="removing a near-constant attention-sink output", strong_at=0.5,
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="text", fn=bos_sink_scores, metrics=(METRIC,)))
