"""TransformerLens-compatible head scores (the peer's formula, vectorised over heads and sequences).

TransformerLens's ``head_detector.detect_head(model, seq, name, error_measure="mul")`` scores one
prompt at a time as sum(A * D) / sum(A) over the whole [s, s] pattern, where D is a 0/1 detection
pattern built from the tokens, then averages over prompts. Rows without a target still count in the
denominator, so on [BOS, x, x] a perfect induction head scores ~0.5 (not 1) unless ``exclude_bos``.

Detection patterns (identical to TransformerLens 4.3):
* previous_token_head: D[i, i-1] = 1.
* duplicate_token_head: D[i, j] = 1 for j < i with tokens[j] == tokens[i].
* induction_head: D[i, j] = duplicate[i, j-1] for 1 <= j (the token after an earlier copy).

Registered detectors: ``induction_tl`` and ``duplicate_token_tl`` on the repeat sequences,
``previous_token_tl`` on the natural-text windows, all with TL's defaults (mul, exclude_bos=False).
"""

from __future__ import annotations

from typing import Literal

import torch

from headwiki.detectors import duplicate_token, induction, previous_token
from headwiki.detectors.registry import BatchMeta, Detector, InputKind, register
from headwiki.spec import Metric

TLHeadName = Literal["previous_token_head", "duplicate_token_head", "induction_head"]
TL_HEAD_NAMES: tuple[TLHeadName, ...] = ("previous_token_head", "duplicate_token_head", "induction_head")


def duplicate_detection_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """tokens: [b, s] -> D [b, s, s] with D[i, j] = 1 iff j < i and tokens[j] == tokens[i]."""
    s = tokens.shape[-1]
    eq = tokens[:, :, None] == tokens[:, None, :]
    strictly_lower = torch.ones(s, s, dtype=torch.bool, device=tokens.device).tril(-1)
    return (eq & strictly_lower).float()


def induction_detection_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """tokens: [b, s] -> D [b, s, s] with D[i, j] = duplicate[i, j-1] for j >= 1, D[i, 0] = 0."""
    dup = duplicate_detection_pattern(tokens)
    out = torch.zeros_like(dup)
    out[..., 1:] = dup[..., :-1]
    return out


def previous_detection_pattern(tokens: torch.Tensor) -> torch.Tensor:
    """tokens: [b, s] -> D [b, s, s] with D[i, i-1] = 1."""
    b, s = tokens.shape
    eye = torch.zeros(s, s, device=tokens.device)
    eye[1:, :-1] = torch.eye(s - 1, device=tokens.device)
    return eye.expand(b, s, s)


DETECTION_PATTERNS = {
    "previous_token_head": previous_detection_pattern,
    "duplicate_token_head": duplicate_detection_pattern,
    "induction_head": induction_detection_pattern,
}


def mul_scores(patterns: torch.Tensor, detection: torch.Tensor, exclude_bos: bool = False) -> torch.Tensor:
    """TransformerLens "mul" score for every head of every sequence.

    patterns: [b, n_layers, n_heads, s, s]; detection: [b, s, s] (0/1) -> [b, n_layers, n_heads]
    = sum(A * D) / sum(A) per head, with column 0 of A zeroed first when `exclude_bos`. One read of A
    per sum (einsum, no [b, L, H, s, s] temporaries), accumulated in A's dtype like TL's own sum.
    """
    a = patterns
    if exclude_bos:
        a = a.clone()
        a[..., 0] = 0
    d = detection.to(a.device, a.dtype)
    return torch.einsum("blhij,bij->blh", a, d) / a.sum((-1, -2))


_LAST_DETECTION: dict[TLHeadName, tuple[torch.Tensor, torch.Tensor]] = {}


def detection_pattern(tokens: torch.Tensor, head_name: TLHeadName, device: torch.device) -> torch.Tensor:
    """D [b, s, s] for `tokens`, built once per batch: the scorer calls every detector once per layer
    with the same tokens object, so the last one built per head type is reused (identity check)."""
    cached = _LAST_DETECTION.get(head_name)
    if cached is not None and cached[0] is tokens and cached[1].device == device:
        return cached[1]
    d = DETECTION_PATTERNS[head_name](tokens.to(device))
    _LAST_DETECTION[head_name] = (tokens, d)
    return d


def tl_scores(patterns: torch.Tensor, tokens: torch.Tensor, head_name: TLHeadName, exclude_bos: bool = False) -> torch.Tensor:
    """Per-sequence TL-compatible score: patterns [b, L, H, s, s], tokens [b, s] -> [b, L, H].

    The mean over sequences equals ``detect_head(bridge, strings, head_name, exclude_bos=...)``.
    """
    return mul_scores(patterns, detection_pattern(tokens, head_name, patterns.device), exclude_bos)


def _detector(of: Metric, head_name: TLHeadName, needs: InputKind, data: str) -> Detector:
    """The TransformerLens-scale twin `<metric>_tl` of one of headwiki's detector metrics."""
    def fn(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
        return tl_scores(patterns, tokens, head_name)

    fn.__doc__ = f"TransformerLens detect_head('{head_name}', error_measure='mul') per sequence: [b, L, H, s, s] -> [b, L, H]."
    metric = Metric(
        f"{of.name}_tl", f"{of.label} (TransformerLens detect_head)", "peer", "score", of.unit,
        f"TransformerLens-compatible detect_head '{head_name}' (mul, exclude_bos=False) on {data}",
        data=data, ci=True, order=of.order)
    return register(Detector(name=metric.name, version=metric.version, needs=needs, fn=fn, metrics=(metric,)))


INDUCTION_TL = _detector(induction.METRIC, "induction_head", "repeat", "the repeat sequences")
DUPLICATE_TL = _detector(duplicate_token.METRIC, "duplicate_token_head", "repeat", "the repeat sequences")
PREVIOUS_TL = _detector(previous_token.METRIC, "previous_token_head", "text", "natural text")
