"""Direct logit attribution (DLA) of attention heads, through the final norm with its scale frozen (the exact
linearization of one forward): one definition for the IOI roles (headwiki.ioi) and the model diff (headwiki.modeldiff).

A vector c added to the residual stream at a position moves logit(a) - logit(b) by c . d, with
d = w * (u_a - u_b) / scale (w the final norm's weight, u the unembedding columns, scale the norm's divisor at that
position in the clean run), mean-centred for LayerNorm (which subtracts the mean of its input). With b = None the
reference is the mean logit over the vocabulary (u_b = mean column of W_U). A head's DLA is its output z W_O read on d.
"""

from __future__ import annotations

from typing import Any

import torch


def final_norm(bridge: Any) -> tuple[torch.Tensor, bool]:
    """(weight [d_model] float32, centre: whether the final norm is a LayerNorm) of a TransformerBridge."""
    norm = bridge.ln_final.original_component
    return norm.weight.detach().float(), isinstance(norm, torch.nn.LayerNorm)


def logit_direction(W_U: torch.Tensor, norm_w: torch.Tensor, scale: torch.Tensor, a_tok: torch.Tensor,
                    b_tok: torch.Tensor | None = None, center: bool = False) -> torch.Tensor:
    """Residual directions [n, d_model] of logit(a) - logit(b) (b None: minus the mean logit), scale frozen.

    W_U [d_model, vocab]; norm_w [d_model]; scale [n] (the final norm's divisor at each position); a_tok / b_tok [n]."""
    ua = W_U[:, a_tok].T
    ub = W_U[:, b_tok].T if b_tok is not None else W_U.mean(1)[None, :]
    e = norm_w * (ua - ub) / scale[:, None]
    return e - e.mean(-1, keepdim=True) if center else e


def head_dla(z: torch.Tensor, W_O: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Each head's DLA at each position: z [n, H, d_head] (one layer), W_O [H, d_head, d_model], direction [n, d_model]
    -> [n, H] (nats of the direction's logit difference)."""
    return torch.einsum("nhk,hkd,nd->nh", z, W_O, direction)
