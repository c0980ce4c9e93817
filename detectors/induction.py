"""Induction detector.

Data: seeded random-token repeat sequences [BOS, x_1..x_L, x_1..x_L] (x_k distinct, drawn from the
tokenizer's ordinary vocabulary; no special tokens inside).
Score: for each second-copy position p = L+1..2L (holding x_k again, k = p-L), the attention from p
to position p-L+1 — the position AFTER the earlier copy of x_k — averaged over the L second-copy
positions, then over sequences. A perfect induction head scores 1.0; uniform causal attention
scores about mean(1/(p+1)) (≈ 0.03 at L = 31).
"""

from __future__ import annotations

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register


def second_copy_positions(half_len: int) -> torch.Tensor:
    """Query positions of the second copy: [L] = L+1 .. 2L."""
    return torch.arange(half_len + 1, 2 * half_len + 1)


def attention_at_offset(patterns: torch.Tensor, queries: torch.Tensor, back: int) -> torch.Tensor:
    """Mean over `queries` of attention from q to q - back.

    patterns: [b, n_layers, n_heads, s, s]; queries: [m] positions (all >= back) -> [b, n_layers, n_heads].
    """
    q = queries.to(patterns.device)
    return patterns[..., q, q - back].mean(-1)


def induction_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence induction score.

    patterns: [b, n_layers, n_heads, 2L+1, 2L+1] on repeat sequences; tokens: [b, 2L+1] (unused:
    the targets are fixed by construction) -> [b, n_layers, n_heads].
    """
    L = meta.half_len
    return attention_at_offset(patterns, second_copy_positions(L), L - 1)


DETECTOR = register(Detector(
    name="induction",
    version="1",
    needs="repeat",
    fn=induction_scores,
    description="mean attention from each second-copy position to the position after its earlier copy (perfect = 1)",
))
