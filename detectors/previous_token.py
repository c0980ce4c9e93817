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


def previous_token_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence previous-token score.

    patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s] (unused) -> [b, n_layers, n_heads].
    """
    s = patterns.shape[-1]
    return attention_at_offset(patterns, torch.arange(2, s), 1)


DETECTOR = register(Detector(
    name="previous_token",
    version="1",
    needs="text",
    fn=previous_token_scores,
    description="mean attention from position i to i-1 over i >= 2 on natural text (perfect = 1)",
))

RANDOM_DETECTOR = register(Detector(
    name="previous_token_random",
    version="1",
    needs="random",
    fn=previous_token_scores,
    description="previous-token score on random-token sequences (control: high on both = positional head)",
))
