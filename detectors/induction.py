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
from headwiki.causal_spec import DROP
from headwiki.spec import Metric, Role, role


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


METRIC = Metric(
    "induction", "induction", "detector", "score", "attention",
    "mean attention from each second-copy position to the position after its earlier copy (perfect = 1)",
    data="repeated random tokens [BOS, x_1..x_L, x_1..x_L]", ci=True, heatmap=True, order=0,
    confound="broken in-context copying (induction)",
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="repeat", fn=induction_scores, metrics=(METRIC,)))
# Threshold 0.4: ARENA's threshold for repeated-random-token induction on the same perfect-is-1 scale; GPT-2
# small's known induction heads (5.1, 5.5, 6.9, 7.2, 7.10) clear it while uniform causal attention on L = 31
# scores ~0.03.
ROLE = role(Role(
    METRIC.name, "induction", "detector", METRIC.name,
    text="attends to the token after an earlier copy of the current token", colour="#7b3294", threshold=0.4,
    rule="score >= threshold AND 95% CI lower bound > the random-init control", control="the same head position in a random-initialized model of the same architecture, on the same sequences",
    consequence="broken in-context copying (induction)", signatures=(DROP,),
    citation="Olsson et al. 2022, In-context Learning and Induction Heads", order=0,
))
