"""Composition scores between attention heads, from the weights alone (Elhage et al. 2021, "A Mathematical
Framework for Transformer Circuits", https://transformer-circuits.pub/2021/framework/index.html).

A head upstream (layer i) writes x W_V W_O = x W_OV into the residual stream; a head downstream (layer j > i)
reads it through its queries (Q-composition), its keys (K-composition) or its values (V-composition). The score
of one pair is the share of the downstream reading matrix R that the upstream output can reach:

    score = ||W_OV^src R^dst||_F / (||W_OV^src||_F ||R^dst||_F),
    R = W_Q W_K^T (Q), W_K W_Q^T (K: the bilinear form transposed), W_V W_O (V),

row-vector convention, every matrix [d_model, d_model], the same definitions and orientation as
TransformerLens (`utils.composition_scores`, `TransformerBridge.all_composition_scores`). Products are never
materialised: with W_OV = X Y and R = P Q (X, P [d_model, d_head]; Y, Q [d_head, d_model]),
||X Y P Q||^2 = tr(M^T (X^T X) M (Q Q^T)) with M = Y P [d_head, d_head], so a pair costs a few d_head^3 flops.

Grouped-query attention: a query head uses the W_K / W_V of its KV head (headwiki.kv_group: h // (H / H_kv),
TransformerLens's repeat_interleave layout), so heads of one KV group share their K- and V-side matrices.

Normalisation (as TransformerLens's fold_ln / center_writing_weights do): the scale of the norm in front of a
block's attention (ln1) multiplies the rows of its reading matrices W_Q, W_K, W_V; for LayerNorm (not RMSNorm)
the reading matrices are centred over d_model (LayerNorm removes the mean direction before any head reads) and
W_O is centred over d_model (its mean direction is removed by every later LayerNorm). Biases and the norm's
data-dependent 1/rms factor are not part of a weight-only score (as in TransformerLens).

Baseline: the same score for iid Gaussian matrices of the same shapes (mean and sd over `n_draws` draws, seeded),
and z = (score - mean) / sd. A score far above it says the two heads' subspaces overlap more than chance.
Base layer: torch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

VERSION = "1"  # bump when the scores or the baseline change: part of the detect pass's resume fingerprint
KINDS: tuple[str, ...] = ("q", "k", "v")
DEFAULT_DRAWS = 64


def fold_norm(w_read: torch.Tensor, scale: torch.Tensor | None, center: bool) -> torch.Tensor:
    """A block's reading matrices with its pre-attention norm folded in.

    w_read: [n_layers, n_heads, d_model, d_head] (W_Q, W_K or W_V); scale: [n_layers, d_model] (ln1 weight) or
    None; center: subtract the mean over d_model (LayerNorm). Returns [n_layers, n_heads, d_model, d_head]."""
    w = w_read if scale is None else w_read * scale[:, None, :, None]
    return w - w.mean(dim=-2, keepdim=True) if center else w


def center_writing(w_o: torch.Tensor) -> torch.Tensor:
    """W_O with its mean over d_model removed: [n_layers, n_heads, d_head, d_model] -> same shape."""
    return w_o - w_o.mean(dim=-1, keepdim=True)


def expand_kv(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """KV-head matrices [n_layers, n_kv_heads, d_model, d_head] -> per query head [n_layers, n_heads, d_model,
    d_head] (query head h reads KV head h // (n_heads / n_kv_heads)); unchanged without GQA."""
    n_kv = w.shape[1]
    return w if n_kv == n_heads else w.repeat_interleave(n_heads // n_kv, dim=1)


def factored_norm_sq(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||X Y||_F^2 for X [..., d, h], Y [..., h, d] -> [...] (from the h x h Gram matrices)."""
    return ((x.transpose(-1, -2) @ x) * (y @ y.transpose(-1, -2))).sum(dim=(-2, -1))


def pair_scores(x: torch.Tensor, y: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Composition scores of every (upstream, downstream) head pair of two layers.

    Upstream W_OV = X Y with x [S, d, h], y [S, h, d]; downstream R = P Q with p [T, d, h], q [T, h, d].
    Returns [S, T]: ||X Y P Q||_F / (||X Y||_F ||P Q||_F)."""
    n_s, h, _ = y.shape
    n_t, _, h2 = p.shape
    m = (y.reshape(n_s * h, -1) @ p.permute(1, 0, 2).reshape(p.shape[1], n_t * h2))  # one GEMM: [S*h, T*h]
    m = m.reshape(n_s, h, n_t, h2).permute(0, 2, 1, 3)  # Y P: [S, T, h, h]
    gx = x.transpose(-1, -2) @ x  # [S, h, h]
    gq = q @ q.transpose(-1, -2)  # [T, h, h]
    inner = m.transpose(-1, -2) @ gx[:, None] @ m  # M^T Gx M: [S, T, h, h]
    num = (inner * gq[None]).sum(dim=(-2, -1)).clamp_min(0).sqrt()
    return num / (factored_norm_sq(x, y).sqrt()[:, None] * factored_norm_sq(p, q).sqrt()[None, :])


def reading_factors(kind: str, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, w_o: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Q) with R = P Q for one kind, per layer and head: P [L, H, d, h], Q [L, H, h, d].

    q: W_Q W_K^T; k: W_K W_Q^T; v: W_V W_O. Inputs: w_q, w_k, w_v [L, H, d, h] (K/V already per query head),
    w_o [L, H, h, d]."""
    if kind == "q":
        return w_q, w_k.transpose(-1, -2)
    if kind == "k":
        return w_k, w_q.transpose(-1, -2)
    if kind == "v":
        return w_v, w_o
    raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def all_scores(w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, w_o: torch.Tensor, kind: str) -> torch.Tensor:
    """Composition scores of one kind for every head pair: [L, H, L, H] (src layer, src head, dst layer, dst
    head), NaN where the source layer is not below the destination layer.

    w_q, w_k, w_v: [L, H, d, h] per query head (norm folded, K/V expanded); w_o: [L, H, h, d]."""
    n_layers, n_heads = w_q.shape[:2]
    p, q = reading_factors(kind, w_q, w_k, w_v, w_o)
    out = torch.full((n_layers, n_heads, n_layers, n_heads), float("nan"), dtype=w_q.dtype, device=w_q.device)
    for src in range(n_layers - 1):  # every later layer at once: one batched product per source layer
        later = n_layers - src - 1
        scores = pair_scores(w_v[src], w_o[src], p[src + 1:].flatten(0, 1), q[src + 1:].flatten(0, 1))  # [H, later*H]
        out[src, :, src + 1:, :] = scores.reshape(n_heads, later, n_heads)
    return out


@dataclass(frozen=True)
class Baseline:
    """The score of iid Gaussian matrices of the same shapes: mean, sd over n draws (seeded)."""

    mean: float
    sd: float
    n: int


def random_baseline(d_model: int, d_head: int, n_draws: int = DEFAULT_DRAWS, seed: int = 0) -> Baseline:
    """Composition score of random X, P [d_model, d_head], Y, Q [d_head, d_model] (iid N(0, 1); the score is
    scale-free), over `n_draws` seeded draws. The Q, K and V scores share these shapes, hence one baseline."""
    g = torch.Generator().manual_seed(seed)
    x, p = (torch.randn(n_draws, d_model, d_head, generator=g, dtype=torch.float64) for _ in range(2))
    y, q = (torch.randn(n_draws, d_head, d_model, generator=g, dtype=torch.float64) for _ in range(2))
    m = y @ p  # [n, h, h]
    num = ((m.transpose(-1, -2) @ (x.transpose(-1, -2) @ x) @ m) * (q @ q.transpose(-1, -2))).sum(dim=(-2, -1)).sqrt()
    scores = num / (factored_norm_sq(x, y).sqrt() * factored_norm_sq(p, q).sqrt())
    return Baseline(float(scores.mean()), float(scores.std()), n_draws)


def z_scores(scores: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """(score - baseline mean) / baseline sd, elementwise (any shape)."""
    return (scores - baseline.mean) / baseline.sd
