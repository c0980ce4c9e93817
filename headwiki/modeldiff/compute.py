"""Pure pieces of a model diff (tensors in, tensors out).

Weights: per head, W_QK = W_Q[h] W_K[g(h)]^T and W_OV = W_V[g(h)] W_O[h] (both [d_model, d_model]; g(h) the KV head a
query head reads under grouped-query attention); relative change ||W^B - W^A||_F / ||W^A||_F. Biases are left out.
Activations: per head, sqrt(sum ||z^B - z^A||^2) / sqrt(sum ||z^A||^2) over every token of the same text (z: the head's
output before W_O). Metric deltas: B - A with a 95% CI combined from the two stored CIs by MOVER (Zou & Donner 2008):
lo = d - sqrt((b - b_lo)^2 + (a_hi - a)^2), hi = d + sqrt((b_hi - b)^2 + (a - a_lo)^2), which treats the two estimates
as independent (they were measured on separate runs).
"""

from __future__ import annotations

import math

import torch


def expand_kv(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[n_kv, ...] per-KV-head weights -> [n_heads, ...] (each query head's KV head; GQA groups are contiguous)."""
    return w if w.shape[0] == n_heads else w.repeat_interleave(n_heads // w.shape[0], dim=0)


def qk_ov(w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, w_o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w_q [H, d_model, d_head], w_k / w_v [H_kv, d_model, d_head], w_o [H, d_head, d_model] ->
    (W_QK [H, d_model, d_model], W_OV [H, d_model, d_model])."""
    n = w_q.shape[0]
    k, v = expand_kv(w_k, n), expand_kv(w_v, n)
    return w_q @ k.transpose(1, 2), v @ w_o


def relative_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||b - a||_F / ||a||_F over the last two dims: [H, m, n] x2 -> [H]."""
    a, b = a.double(), b.double()
    return torch.linalg.matrix_norm(b - a) / torch.linalg.matrix_norm(a).clamp_min(1e-30)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token t+1 | tokens <= t): logits [b, s, vocab], tokens [b, s] -> [b, s - 1]."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    return logp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def mover_ci(a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float) -> tuple[float, float, float]:
    """(b - a, lo, hi): the difference of two estimates and its CI from their CIs (MOVER; module docstring)."""
    d = b - a
    return d, d - math.sqrt((b - b_lo) ** 2 + (a_hi - a) ** 2), d + math.sqrt((b_hi - b) ** 2 + (a - a_lo) ** 2)
