"""Previous-token detectors.

Score: mean attention from position i to i-1 over positions i >= 2 (position 1 would attend to BOS,
which is confounded with BOS-sink behaviour), then over sequences (perfect = 1.0).

* ``previous_token``: on natural text windows.
* ``previous_token_random``: the same score on seeded random-token sequences, a control: a head high
  on both is positional (attends to i-1 whatever the tokens); a head high only on text is
  content-dependent.
* ``previous_token_nobos``: the text score with the BOS column excluded (TransformerLens ``exclude_bos``: the
  i-1 mass over the non-BOS mass of rows i >= 2, a ratio of sums); its BOS share is ``bos_sink``.

BOS: the role uses the raw score (BOS counted). A head that parks most attention on BOS and gives the rest to
i-1 scores low raw (SmolLM2: 0.19 with ~70% on BOS) yet matters causally (its ablation removes 21.5% of the
in-context effect); the BOS-excluded score alone would also label heads that park everything on BOS. So the
role rule (headwiki.detectors.roles) flags ``previous_token_bos_parked`` when the raw score misses the threshold
but the BOS-excluded score clears it with at least ``MIN_NON_BOS_MASS`` of non-BOS attention.
"""

from __future__ import annotations

import torch

from headwiki.detectors.induction import attention_at_offset, attention_at_offset_nobos
from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.causal_spec import DROP, IND_SCORE
from headwiki.detectors.roles import RANDOM_INIT_CONTROL, role_rule
from headwiki.spec import Metric, Role, role


def previous_token_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence previous-token score.

    patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s] (unused) -> [b, n_layers, n_heads].
    """
    s = patterns.shape[-1]
    return attention_at_offset(patterns, torch.arange(2, s), 1)


def previous_token_nobos_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence previous-token score with the BOS column excluded.

    patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s] (unused) -> [b, n_layers, n_heads].
    """
    s = patterns.shape[-1]
    return attention_at_offset_nobos(patterns, torch.arange(2, s), 1)


METRIC = Metric(
    "previous_token", "previous-token", "detector", "score", "attention",
    "mean attention from position i to i-1 over i >= 2 on natural text (perfect = 1)",
    data="natural text windows", ci=True, heatmap=True, order=1, confound="lost token-order information",
)
RANDOM_METRIC = Metric(
    "previous_token_random", "previous-token (random tokens)", "detector", "score", "attention",
    "previous-token score on random-token sequences (control: high on both = positional head)",
    data="random-token sequences", ci=True, heatmap=True, order=5, control_for=METRIC.name,
)
NOBOS_METRIC = Metric(
    "previous_token_nobos", "previous-token (BOS excluded)", "detector", "score", "attention",
    "previous-token score with the BOS column excluded: attention to i-1 over the non-BOS attention of rows i >= 2 "
    "(TransformerLens exclude_bos; perfect = 1)",
    data="natural text windows", ci=True, heatmap=True, order=11, bos_excluded_for=METRIC.name, bos_share="bos_sink",
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="text", fn=previous_token_scores, metrics=(METRIC,)))
RANDOM_NOBOS_METRIC = Metric(
    "previous_token_nobos", "previous-token (BOS excluded)", "detector", "score", "attention",
    "previous-token score with the BOS column excluded: attention to i-1 over the non-BOS attention of rows i >= 2 "
    "(TransformerLens exclude_bos; perfect = 1)",
    data="natural text windows", ci=True, heatmap=True, order=11, bos_excluded_for=METRIC.name, bos_share="bos_sink",
)
DETECTOR = register(Detector(name=RANDOM_METRIC.name, version=RANDOM_METRIC.version, needs="random",
                                    fn=previous_token_scores, metrics=(RANDOM_METRIC,)))
NOBOS_DETECTOR = register(Detector(name=NOBOS_METRIC.name, version=NOBOS_METRIC.version, needs="text",
                                   fn=previous_token_nobos_scores, metrics=(NOBOS_METRIC,)))
# Threshold 0.4: a head putting less than 40% of its mass on i-1 is mixing other behaviour; GPT-2's 4.11
# scores ~0.9+.
ROLE = role(Role(
    METRIC.name, "previous-token", "detector", METRIC.name, text="attends to the previous token", colour="#1b7837",
    threshold=0.4,
    rule=role_rule(METRIC.name),
    control=RANDOM_INIT_CONTROL,
    consequence="lost token-order information", signatures=(DROP, IND_SCORE),
    citation="Olsson et al. 2022 (K-composition with induction heads)", order=1,
))
