"""Previous-token detectors.

Score: mean attention from position i to i-1 over positions i >= 2 (position 1 would attend to BOS,
which is confounded with BOS-sink behaviour), then over sequences (perfect = 1.0).

* ``previous_token``: on natural text windows.
* ``previous_token_random``: the same score on seeded random-token sequences, a control: a head high
  on both is positional (attends to i-1 whatever the tokens); a head high only on text is
  content-dependent.
"""

from __future__ import annotations

import torch

from headwiki.detectors.induction import attention_at_offset
from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.causal_spec import DROP, IND_SCORE
from headwiki.spec import Metric, Role, role


def previous_token_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence previous-token score.

    patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s] (unused) -> [b, n_layers, n_heads].
    """
    s = patterns.shape[-1]
    return attention_at_offset(patterns, torch.arange(2, s), 1)


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
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="text", fn=previous_token_scores, metrics=(METRIC,)))
RANDOM_DETECTOR = register(Detector(name=RANDOM_METRIC.name, version=RANDOM_METRIC.version, needs="random",
                                    fn=previous_token_scores, metrics=(RANDOM_METRIC,)))
# Threshold 0.4: a head putting less than 40% of its mass on i-1 is mixing other behaviour; GPT-2's 4.11
# scores ~0.9+.
ROLE = role(Role(
    METRIC.name, "previous-token", "detector", METRIC.name, text="attends to the previous token", colour="#1b7837",
    threshold=0.4, rule="score >= threshold AND 95% CI lower bound > the random-init control", control="the same head position in a random-initialized model of the same architecture, on the same sequences",
    consequence="lost token-order information", signatures=(DROP, IND_SCORE),
    citation="Olsson et al. 2022 (K-composition with induction heads)", order=1,
))
