"""Composition edges between heads (Q-, K-, V-composition; Elhage et al. 2021) for the `head_edges` table.

Weights only: no forward pass. The scores, the normalisation folding and the random-matrix baseline are the
pure functions of headwiki.composition; this module reads the weights out of a TransformerBridge and lays the
scores out as rows (model_id, kind, src_layer, src_head, dst_layer, dst_head, score, baseline, baseline_sd,
n_draws, z). Not a detector (registers nothing): the detect pass writes its rows in the same transaction.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from headwiki import composition as comp

EDGE_COLUMNS = ["model_id", "kind", "src_layer", "src_head", "dst_layer", "dst_head", "score", "baseline",
                "baseline_sd", "n_draws", "z"]


def _ln1_scale(bridge: Any) -> torch.Tensor | None:
    """[n_layers, d_model]: the weight of the norm in front of each block's attention (None if it has none)."""
    scales = []
    for block in bridge.blocks:
        ln = getattr(block, "ln1", None)
        inner = getattr(ln, "_original_component", ln)
        w = getattr(inner, "weight", None)
        if w is None:
            return None
        scales.append(w.detach().float())
    return torch.stack(scales)


def is_layernorm(bridge: Any) -> bool:
    """True for LayerNorm (centres the residual), False for RMSNorm and others."""
    return str(getattr(bridge.cfg, "normalization_type", "") or "").upper().startswith("LN")


@torch.inference_mode()
def bridge_weights(bridge: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_Q, W_K, W_V [L, H, d, h] per query head, W_O [L, H, h, d]) in float32 on the model's device (a GPU computes them in well under a second; scores agree with float64 to ~1e-6), with ln1 folded into
    the reading matrices and, for LayerNorm, the reading and writing matrices centred (headwiki.composition)."""
    n_heads = int(bridge.cfg.n_heads)
    w_q, w_k, w_v = (t.detach().float() for t in (bridge.W_Q, bridge.W_K, bridge.W_V))
    w_o = bridge.W_O.detach().float()
    w_k, w_v = comp.expand_kv(w_k, n_heads), comp.expand_kv(w_v, n_heads)
    scale, center = _ln1_scale(bridge), is_layernorm(bridge)
    w_q, w_k, w_v = (comp.fold_norm(w, scale, center) for w in (w_q, w_k, w_v))
    return w_q, w_k, w_v, comp.center_writing(w_o) if center else w_o


def edge_frame(bridge: Any, model_id: str, n_draws: int = comp.DEFAULT_DRAWS, seed: int = 0) -> pd.DataFrame:
    """One row per (kind, upstream head, downstream head) with src_layer < dst_layer: the composition score, the
    random-matrix baseline (mean, sd, draws) and z."""
    w_q, w_k, w_v, w_o = bridge_weights(bridge)
    n_layers, n_heads, d_model, d_head = w_q.shape
    base = comp.random_baseline(d_model, d_head, n_draws=n_draws, seed=seed)
    frames = []
    grid = torch.stack(torch.meshgrid(*(torch.arange(n) for n in (n_layers, n_heads, n_layers, n_heads)), indexing="ij"), -1)
    keep = grid[..., 0] < grid[..., 2]
    idx = grid[keep].numpy()
    for kind in comp.KINDS:
        scores = comp.all_scores(w_q, w_k, w_v, w_o, kind).cpu()[keep]
        frames.append(pd.DataFrame({
            "model_id": model_id, "kind": kind, "src_layer": idx[:, 0], "src_head": idx[:, 1], "dst_layer": idx[:, 2],
            "dst_head": idx[:, 3], "score": scores.numpy(), "baseline": base.mean, "baseline_sd": base.sd,
            "n_draws": base.n, "z": comp.z_scores(scores, base).numpy()}))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EDGE_COLUMNS)
    return out[EDGE_COLUMNS]
