"""Duplicate-token detector.

Data: the same seeded random-token repeat sequences as induction, [BOS, x_1..x_L, x_1..x_L].
Score: for each second-copy position p = L+1..2L, the attention from p to p-L — the earlier copy of
the same token — averaged over the L second-copy positions, then over sequences (perfect = 1.0).

BOS: the role uses the raw score (BOS counted); ``duplicate_token_nobos`` stores the BOS-excluded score
(TransformerLens ``exclude_bos``, a ratio of sums over the second-copy rows) and ``bos_share_repeat`` the BOS
mass on those rows; the role rule flags ``duplicate_token_bos_parked`` (headwiki.detectors.roles), as for induction.
"""

from __future__ import annotations

import torch

from headwiki.detectors.induction import attention_at_offset, attention_at_offset_nobos, second_copy_positions
from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.detectors.roles import RANDOM_INIT_CONTROL, role_rule
from headwiki.spec import Metric, Role, role


def duplicate_token_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence duplicate-token score.

    patterns: [b, n_layers, n_heads, 2L+1, 2L+1]; tokens: [b, 2L+1] -> [b, n_layers, n_heads].
    """
    L = meta.half_len
    return attention_at_offset(patterns, second_copy_positions(L), L)


def duplicate_token_nobos_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence duplicate-token score with the BOS column excluded.

    patterns: [b, n_layers, n_heads, 2L+1, 2L+1]; tokens: [b, 2L+1] -> [b, n_layers, n_heads].
    """
    L = meta.half_len
    return attention_at_offset_nobos(patterns, second_copy_positions(L), L)


METRIC = Metric(
    "duplicate_token", "duplicate-token", "detector", "score", "attention",
    "mean attention from each second-copy position to its earlier copy (perfect = 1)",
    data="repeated random tokens [BOS, x_1..x_L, x_1..x_L]", ci=True, heatmap=True, order=2, confound="lost repeated-token detection",
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="repeat", fn=duplicate_token_scores, metrics=(METRIC,)))
NOBOS_METRIC = Metric(
    "duplicate_token_nobos", "duplicate-token (BOS excluded)", "detector", "score", "attention",
    "duplicate-token score with the BOS column excluded: attention to the earlier copy over the non-BOS attention "
    "of the second-copy rows (TransformerLens exclude_bos; perfect = 1)",
    data="repeated random tokens [BOS, x_1..x_L, x_1..x_L]", ci=True, heatmap=True, order=12,
    bos_excluded_for=METRIC.name, bos_share="bos_share_repeat",
)
NOBOS_DETECTOR = register(Detector(name=NOBOS_METRIC.name, version=NOBOS_METRIC.version, needs="repeat",
                                   fn=duplicate_token_nobos_scores, metrics=(NOBOS_METRIC,)))
# Threshold 0.3: duplicate heads typically split attention between the earlier copy, BOS and the current
# token (GPT-2's 0.1/0.10/3.0 are weaker than its induction heads), so a lower bar than induction's.
ROLE = role(Role(
    METRIC.name, "duplicate-token", "detector", METRIC.name, text="attends to earlier copies of the current token",
    colour="#d95f02", threshold=0.3,
    rule=role_rule(METRIC.name),
    control=RANDOM_INIT_CONTROL,
    consequence="lost repeated-token detection",
    no_signature=("no clean behavioural signature: attending to earlier copies of the current token has no "
                  "single downstream behaviour to ablate (it feeds suppression and induction circuits alike), "
                  "so the label rests on the attention pattern alone and is not causally validated"),
    citation="Wang et al. 2022 (IOI: duplicate-token heads)", order=2,
))
