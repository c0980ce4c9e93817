"""Duplicate-token detector.

Data: the same seeded random-token repeat sequences as induction, [BOS, x_1..x_L, x_1..x_L].
Score: for each second-copy position p = L+1..2L, the attention from p to p-L — the earlier copy of
the same token — averaged over the L second-copy positions, then over sequences (perfect = 1.0).
"""

from __future__ import annotations

import torch

from headwiki.detectors.induction import attention_at_offset, second_copy_positions
from headwiki.detectors.registry import BatchMeta, Detector, register


def duplicate_token_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence duplicate-token score.

    patterns: [b, n_layers, n_heads, 2L+1, 2L+1]; tokens: [b, 2L+1] -> [b, n_layers, n_heads].
    """
    L = meta.half_len
    return attention_at_offset(patterns, second_copy_positions(L), L)


DETECTOR = register(Detector(
    name="duplicate_token",
    version="1",
    needs="repeat",
    fn=duplicate_token_scores,
    description="mean attention from each second-copy position to its earlier copy (perfect = 1)",
))
