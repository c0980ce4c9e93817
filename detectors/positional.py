"""Positional (relative-offset) detector.

Data: natural text windows. For each relative offset d = 0..s-2, the mean attention from query i to
key i-d over the rows where that key is a content position (i >= 1, i-d >= 1: the BOS column is left
out so BOS sinks do not masquerade as long offsets). The dominant offset is the argmax of the
sequence-averaged profile; its mass is stored per sequence (bootstrapped) as ``positional_mass``.
A previous-token head has offset 1; a "self" head offset 0.

``positional_offset`` is NULL where the dominant offset is not supported: when it is seen in fewer than
``MIN_OFFSET_ROW_SHARE`` of a sequence's query rows (offset d is seen in s-1-d of the s-1 rows: the last offsets
rest on 1-2 cells)
or its mean mass is below ``MIN_OFFSET_MASS`` (a head spreading its attention has an argmax but no offset).
``positional_mass`` is still the mass at the argmax.
"""

from __future__ import annotations

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.spec import Metric


# On SmolLM2-135M (64-token windows) 25 of 270 heads had a "dominant" offset 41-63 read from 1-2 cells with mass
# <= 0.11. A quarter of the rows (16 of a 64-token window's 64 query rows, so offsets up to 48 there): an offset
# seen in fewer rows is read off the window's last few tokens. 0.15: above those artefacts and above uniform causal
# attention's per-offset mass (1/(i+1) <= 0.1 from i = 9); a previous-token head scores ~1.
MIN_OFFSET_ROW_SHARE = 0.25
MIN_OFFSET_MASS = 0.15


def offset_profile(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Mean attention mass at each relative offset.

    patterns: [b, n_layers, n_heads, s, s] -> [b, n_layers, n_heads, s-1] (index d = offset d).
    """
    s = patterns.shape[-1]
    # diagonal(offset=-d)[j] = A[j+d, j]; keep keys j >= 1 (content positions)
    out = [torch.diagonal(patterns, offset=-d, dim1=-2, dim2=-1)[..., 1:].mean(-1) for d in range(s - 1)]
    return torch.stack(out, dim=-1)


def dominant_offset(profile: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """profile: [n, n_layers, n_heads, k] -> ({positional_mass: [n, L, H]}, {positional_offset: [L, H]}).

    positional_offset is float with NaN (stored NULL) where the offset is seen in fewer than MIN_OFFSET_ROW_SHARE
    of the k = s-1 query rows per sequence (offset d is seen in k-d rows) or its mean mass is below MIN_OFFSET_MASS.
    """
    offset = profile.mean(0).argmax(-1)  # [L, H]
    mass = profile.gather(-1, offset[None, ..., None].expand(profile.shape[0], -1, -1, 1)).squeeze(-1)
    k = profile.shape[-1]
    supported = (k - offset >= MIN_OFFSET_ROW_SHARE * k) & (mass.double().mean(0) >= MIN_OFFSET_MASS)
    return {MASS.name: mass}, {OFFSET.name: torch.where(supported, offset.double(), torch.tensor(float("nan"), dtype=torch.float64))}


MASS = Metric(
    "positional_mass", "positional mass", "detector", "score", "attention",
    "mean attention mass at the head's dominant relative offset (positional_offset), BOS column excluded, natural text",
    data="natural text windows", ci=True, heatmap=True, order=6,
)
OFFSET = Metric(
    "positional_offset", "positional offset", "detector", "score", "positions",
    "the head's dominant relative offset d (query i attends to key i-d most), BOS column excluded, natural text; "
    f"NULL where it is seen in fewer than {MIN_OFFSET_ROW_SHARE:.0%} of a sequence's query rows or holds less than "
    f"{MIN_OFFSET_MASS} mass",
    data="natural text windows", dtype="BIGINT", heatmap=True, order=7, version="2",
)
DETECTOR = register(Detector(name="positional", version="2", needs="text", fn=offset_profile, metrics=(MASS, OFFSET),
                             reduce=dominant_offset))
