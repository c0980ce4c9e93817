"""Induction detector.

Data: seeded random-token repeat sequences [BOS, x_1..x_L, x_1..x_L] (x_k distinct, drawn from the
tokenizer's ordinary vocabulary; no special tokens inside).
Score: for each second-copy position p = L+1..2L (holding x_k again, k = p-L), the attention from p
to position p-L+1 — the position AFTER the earlier copy of x_k — averaged over the L second-copy
positions, then over sequences. A perfect induction head scores 1.0; uniform causal attention
scores about mean(1/(p+1)) (≈ 0.03 at L = 31).

BOS: the role uses the raw score above (BOS counts in the denominator), because a head that parks all its
attention on BOS has almost no mass left and its renormalized leftovers can look like anything (on SmolLM2 a
100%-BOS head scores 0.705 as induction with BOS excluded, and ablating it does nothing).
``induction_nobos`` stores the BOS-excluded score (TransformerLens's ``exclude_bos``: the target mass over the
non-BOS mass of the scored rows, a ratio of sums), ``bos_share_repeat`` (headwiki.detectors.bos_sink) the BOS
mass on the same rows; the role rule's ``induction_bos_parked`` flag marks a head that does induction with the
attention it does not park on BOS (headwiki.detectors.roles).
"""

from __future__ import annotations

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.causal_spec import DROP
from headwiki.detectors.roles import RANDOM_INIT_CONTROL, role_rule
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


def attention_at_offset_nobos(patterns: torch.Tensor, queries: torch.Tensor, back: int) -> torch.Tensor:
    """The attention from q to q - back with the BOS column excluded: sum over `queries` of A[q, q-back] over the
    sum of their non-BOS mass (1 - A[q, 0]) — TransformerLens's ``exclude_bos`` renormalization, as a ratio of sums
    so rows with almost no non-BOS mass weigh almost nothing. Targets are never BOS (q - back >= 1), so it is in [0, 1].

    patterns: [b, n_layers, n_heads, s, s]; queries: [m] positions (all >= back + 1) -> [b, n_layers, n_heads].
    """
    q = queries.to(patterns.device)
    target = patterns[..., q, q - back].sum(-1)
    non_bos = (1.0 - patterns[..., q, 0]).sum(-1)
    return target / non_bos.clamp_min(1e-12)


def bos_mass(patterns: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Mean attention on position 0 (BOS) over `queries`.

    patterns: [b, n_layers, n_heads, s, s]; queries: [m] positions -> [b, n_layers, n_heads].
    """
    return patterns[..., queries.to(patterns.device), 0].mean(-1)


def induction_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence induction score.

    patterns: [b, n_layers, n_heads, 2L+1, 2L+1] on repeat sequences; tokens: [b, 2L+1] (unused:
    the targets are fixed by construction) -> [b, n_layers, n_heads].
    """
    L = meta.half_len
    return attention_at_offset(patterns, second_copy_positions(L), L - 1)


def induction_nobos_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence induction score with the BOS column excluded.

    patterns: [b, n_layers, n_heads, 2L+1, 2L+1]; tokens: [b, 2L+1] (unused) -> [b, n_layers, n_heads].
    """
    L = meta.half_len
    return attention_at_offset_nobos(patterns, second_copy_positions(L), L - 1)


METRIC = Metric(
    "induction", "induction", "detector", "score", "attention",
    "mean attention from each second-copy position to the position after its earlier copy (perfect = 1)",
    data="repeated random tokens [BOS, x_1..x_L, x_1..x_L]", ci=True, heatmap=True, order=0,
    confound="broken in-context copying (induction)",
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="repeat", fn=induction_scores, metrics=(METRIC,)))
NOBOS_METRIC = Metric(
    "induction_nobos", "induction (BOS excluded)", "detector", "score", "attention",
    "induction score with the BOS column excluded: attention to the position after the earlier copy over the "
    "non-BOS attention of the second-copy rows (TransformerLens exclude_bos; perfect = 1)",
    data="repeated random tokens [BOS, x_1..x_L, x_1..x_L]", ci=True, heatmap=True, order=10,
    bos_excluded_for=METRIC.name, bos_share="bos_share_repeat",
)
NOBOS_DETECTOR = register(Detector(name=NOBOS_METRIC.name, version=NOBOS_METRIC.version, needs="repeat",
                                   fn=induction_nobos_scores, metrics=(NOBOS_METRIC,)))
# Threshold 0.4: ARENA's threshold for repeated-random-token induction on the same perfect-is-1 scale; GPT-2
# small's known induction heads (5.1, 5.5, 6.9, 7.2, 7.10) clear it while uniform causal attention on L = 31
# scores ~0.03.
ROLE = role(Role(
    METRIC.name, "induction", "detector", METRIC.name,
    text="attends to the token after an earlier copy of the current token", colour="#7b3294", threshold=0.4,
    rule=role_rule(METRIC.name),
    control=RANDOM_INIT_CONTROL,
    consequence="broken in-context copying (induction)", signatures=(DROP,),
    citation="Olsson et al. 2022, In-context Learning and Induction Heads", order=0,
))
