"""Positional (relative-offset) detector.

Data: natural text windows. For each relative offset d = 0..s-2, the mean attention from query i to
key i-d over the rows where that key is a content position (i >= 1, i-d >= 1: the BOS column is left
out so BOS sinks do not masquerade as long offsets). The dominant offset is the argmax of the
sequence-averaged profile; its mass is stored per sequence (bootstrapped) as ``positional_mass``.
A previous-token head has offset 1; a "self" head offset 0.
"""

from __future__ import annotations

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.spec import Metric


def offset_profile(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Mean attention mass at each relative offset.

    patterns: [b, n_layers, n_heads, s, s] -> [b, n_layers, n_heads, s-1] (index d = offset d).
    """
    s = patterns.shape[-1]
    # diagonal(offset=-d)[j] = A[j+d, j]; keep keys j >= 1 (content positions)
    out = [torch.diagonal(patterns, offset=-d, dim1=-2, dim2=-1)[..., 1:].mean(-1) for d in range(s - 1)]
    return torch.stack(out, dim=-1)


def dominant_offset(profile: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """profile: [n, n_layers, n_heads, k] -> ({positional_mass: [n, L, H]}, {positional_offset: [L, H]})."""
    offset = profile.mean(0).argmax(-1)  # [L, H]
    mass = profile.gather(-1, offset[None, ..., None].expand(profile.shape[0], -1, -1, 1)).squeeze(-1)
    return {MASS.name: mass}, {OFFSET.name: offset}


MASS = Metric(
    "positional_mass", "positional mass", "detector", "score", "attention",
    "mean attention mass at the head's dominant relative offset (positional_offset), BOS column excluded, natural text",
    data="natural text windows", ci=True, heatmap=True, order=6,
)
OFFSET = Metric(
    "positional_offset", "positional offset", "detector", "score", "positions",
    "the head's dominant relative offset d (query i attends to key i-d most), BOS column excluded, natural text",
    data="natural text windows", dtype="BIGINT", heatmap=True, order=7,
)
DETECTOR = register(Detector(name="positional", version="1", needs="text", fn=offset_profile, metrics=(MASS, OFFSET),
                             reduce=dominant_offset))
