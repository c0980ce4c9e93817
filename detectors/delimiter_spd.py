"""spd's delimiter ratio beside headwiki's (goodfire-ai/spd ``detect_delimiter_heads``, implemented from its
description), on the same natural-text windows and the same delimiter mask as headwiki.detectors.delimiter.

spd's score: raw = the attention mass on delimiter keys averaged over ALL query positions (and sequences); baseline =
the fraction of ALL tokens of the data that are delimiters; ratio = raw / baseline; spd marks a head whose ratio
exceeds :data:`SPD_THRESHOLD` (2.0). Here the baseline is the fraction over every window of the pass, so the stored
mean is exactly raw / baseline; the CI is a bootstrap over windows with the baseline held at that value.

What differs from spd:
* delimiters: headwiki's mask (headwiki.detectors.delimiter.delimiter_mask: every token decoding to ASCII punctuation
  only, or whitespace with a newline) instead of spd's list (". , ; : ! ?" and newline, plus ".\\n", ".\\n\\n",
  ",\\n", ";\\n" where they are single tokens): ours also counts brackets, quotes, dashes and the like;
* BOS: headwiki's windows start with the model's start token (spd's packed text has none). It is never a delimiter
  and its query row attends only to itself, so with windows of one length it scales raw and baseline by the same
  (s - 1) / s: the ratio is what it would be without it.
What differs from headwiki's ``delimiter`` score: that one divides each row's mass by the delimiters' causal base
rate among the keys that row can see (1..i) and ignores BOS; spd's divides by their frequency in the whole text, so
a uniform causal head scores above 1 where delimiters come late in a window and below 1 where they come early.

Measured on SmolLM2-135M (scripts/spd_agreement.py, the detect pass's 50 English windows): Spearman +0.9997 with
headwiki's delimiter score, the same top 10; 32 heads pass spd's 2.0, 14 headwiki's 3.0 (all among the 32).
"""

from __future__ import annotations

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.spec import Metric

SPD_THRESHOLD = 2.0


def spd_delimiter_parts(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """spd's two ingredients per sequence: raw (attention mass on delimiter keys, mean over every query row) and the
    sequence's delimiter fraction (the same for every head).

    patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s]; meta.delimiters: bool [d_vocab] -> [b, n_layers, n_heads, 2]
    (channel 0 raw, channel 1 delimiter fraction)."""
    if meta.delimiters is None:
        raise ValueError("spd_delimiter_parts needs meta.delimiters (the tokenizer's delimiter mask)")
    d = meta.delimiters.to(tokens.device)[tokens].to(patterns.dtype)  # [b, s]
    raw = (patterns * d[:, None, None, None, :]).sum(-1).mean(-1)  # [b, L, H]
    base = d.mean(-1)[:, None, None].expand_as(raw)  # [b, L, H]
    return torch.stack([raw, base], dim=-1)


def spd_ratio(per_seq: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """per-sequence parts [n, n_layers, n_heads, 2] -> ({delimiter_spd: raw / (delimiter fraction over all n
    sequences)}, {}): the mean over sequences is spd's ratio raw / baseline (0 when the text holds no delimiter)."""
    raw, base = per_seq[..., 0].double(), per_seq[..., 1].double().mean()
    if float(base) <= 0.0:
        return {METRIC.name: torch.zeros_like(raw)}, {}
    return {METRIC.name: raw / base}, {}


METRIC = Metric(
    "delimiter_spd", "delimiter (spd ratio)", "detector", "score", "enrichment",
    f"goodfire-ai/spd's delimiter ratio: attention mass on delimiter keys averaged over ALL query positions, divided by "
    f"the fraction of all tokens of the text that are delimiters (headwiki's delimiter mask); spd marks > "
    f"{SPD_THRESHOLD}. Not a role: headwiki's delimiter role divides by the causal base rate among keys 1..i instead",
    data="natural text windows", ci=True, order=10,
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="text", fn=spd_delimiter_parts,
                             metrics=(METRIC,), reduce=spd_ratio))
