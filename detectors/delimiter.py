"""Delimiter-head detector (goodfire-ai/spd's `detect_delimiter` idea, implemented from its description).

Data: natural text windows. A key token is a *delimiter* when it decodes to ASCII punctuation only (".", ",", ";",
"(", "--", ...) or to whitespace holding a newline; special tokens (BOS, EOS, pad) never are
(:func:`delimiter_mask`). Score per sequence: for the query rows i >= 1, the attention mass on delimiter keys
1..i divided by the base rate — the fraction of those keys that are delimiters — as a ratio of row means:

    score = mean_i sum_{j <= i, delim(j)} A[i, j]  /  mean_i (#delim keys in 1..i) / i

So 1 = the head attends to delimiters as often as they occur (a uniform head over non-BOS keys scores 1; mass
parked on BOS counts for nothing), 3 = three times their base rate. A sequence without any delimiter key scores 0
(nothing to enrich). The unit is times the base rate (`enrichment`).
"""

from __future__ import annotations

import string
from typing import Any

import torch

from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.detectors.roles import RANDOM_INIT_CONTROL, role_rule
from headwiki.spec import Metric, Role, role

PUNCTUATION = frozenset(string.punctuation)


def is_delimiter_text(text: str) -> bool:
    """A decoded token is a delimiter: ASCII punctuation only (surrounding spaces allowed), or whitespace with a newline."""
    core = text.strip()
    if not core:
        return "\n" in text
    return all(c in PUNCTUATION for c in core)


def delimiter_mask(tokenizer: Any, d_vocab: int) -> torch.Tensor:
    """bool [d_vocab]: which token ids are delimiters (:func:`is_delimiter_text`; special tokens never)."""
    size = min(int(d_vocab), len(tokenizer))
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None}
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    mask = torch.zeros(int(d_vocab), dtype=torch.bool)
    for i, t in enumerate(texts):
        if i not in special and is_delimiter_text(t):
            mask[i] = True
    return mask


def delimiter_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Per-sequence delimiter enrichment (mass on delimiter keys / their base rate over keys 1..i, rows i >= 1).

    patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s]; meta.delimiters: bool [d_vocab] -> [b, n_layers, n_heads].
    """
    if meta.delimiters is None:
        raise ValueError("delimiter_scores needs meta.delimiters (the tokenizer's delimiter mask)")
    s = patterns.shape[-1]
    delim = meta.delimiters.to(tokens.device)[tokens].clone()  # [b, s]
    delim[:, 0] = False  # BOS is never a delimiter key
    d = delim.to(patterns.dtype)
    mass = (patterns[..., 1:, :] * d[:, None, None, None, :]).sum(-1).mean(-1)  # [b, L, H], rows 1..s-1
    counts = d[:, 1:].cumsum(-1)  # [b, s-1]: delimiters among keys 1..i for i = 1..s-1
    base = (counts / torch.arange(1, s, device=d.device, dtype=d.dtype)).mean(-1)  # [b]
    ratio = mass / base.clamp(min=1e-12)[:, None, None]
    return torch.where(base[:, None, None] > 0, ratio, torch.zeros_like(ratio))


METRIC = Metric(
    "delimiter", "delimiter", "detector", "score", "enrichment",
    "attention mass on delimiter keys (ASCII punctuation, newlines) divided by their base rate among the keys 1..i, "
    "ratio of row means over query rows i >= 1, natural text (1 = as often as delimiters occur; BOS mass counts for nothing)",
    data="natural text windows", ci=True, heatmap=True, order=9, confound="lost clause/sentence-boundary context",
)
DETECTOR = register(Detector(name=METRIC.name, version=METRIC.version, needs="text", fn=delimiter_scores, metrics=(METRIC,)))
# Threshold 3.0 (set before looking at any model): three times the delimiters' base rate — on English text, where
# ~12-15% of tokens are punctuation or newlines, that is ~40% of the head's attention on them. A uniform head scores
# ~1 and the random-init control carries that baseline; the CI lower bound must also clear the control.
ROLE = role(Role(
    METRIC.name, "delimiter", "detector", METRIC.name,
    text="attends to punctuation and newline tokens far more often than they occur", colour="#a6761d", threshold=3.0,
    rule=role_rule(METRIC.name, bos_flag=False),
    control=RANDOM_INIT_CONTROL,
    consequence="lost clause/sentence-boundary context",
    no_signature="no behavioural signature isolates delimiter heads (they are thought to summarize context at "
                 "boundaries); the label rests on attention only",
    citation="goodfire-ai/spd detect_delimiter (delimiter heads); Voita et al. 2019 observe heads on punctuation",
    order=4,
))
