"""The OV circuit of an attention head in token space: copying score, successor score, boosted/suppressed tokens.

A head that attends to token t adds ``x_t W_V^h W_O^h`` to the residual stream; read straight through the
unembedding, its direct effect on the logits is the row t of the full OV circuit (row-vector convention, as in
TransformerLens)::

    OV_full = E  diag(g_L) W_V^h W_O^h  U          [d_vocab, d_vocab]
    E = norm(W_E)   (the embedding rows as layer L's attention LayerNorm sees them: centred for LayerNorm,
                     divided by their RMS / std; optionally the *effective* embedding W_E + MLP_0(W_E) first)
    g_L             (layer L's attention-LayerNorm gain, folded into W_V)
    U = P diag(g_f) W_U   (the final LayerNorm's gain folded into the unembedding; P centres for LayerNorm)

LayerNorm biases, b_V and b_O are left out (they add the same vector whatever the token, so they shift every row
of OV_full alike and carry no token-to-token information); the final LayerNorm's per-position 1/RMS is a positive
scalar that scales a whole row and cannot change a sign or a ranking within a row. Tied and untied embeddings
are the same case (U is W_U whatever it is tied to).

Copying score (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"): the eigenvalue positivity
sum(lambda) / sum(|lambda|) of OV_full, in [-1, 1]: +1 when the circuit maps every token onto itself with a
positive weight (copying), -1 when onto itself negatively (copy suppression, McDougall et al. 2023). OV_full is
d_vocab x d_vocab but has rank <= d_head, and for A = E diag(g_L) W_V [V, d_head], B = W_O U [d_head, V] the
nonzero eigenvalues of AB equal those of BA (a cyclic permutation), so the score is computed from the
d_head x d_head matrix ``W_O G diag(g_L) W_V`` with ``G = U E`` ([d_model, d_model], computed once per model):
O(d_model^2 d_vocab) once plus O(d_head d_model^2) per head instead of an eigendecomposition of d_vocab^2.

Successor score (Gould et al. 2024, "Successor Heads"): for ordinal sequences (1 2 3 .., Monday Tuesday ..),
the rows of OV_full of each member restricted to the columns of the same sequence; a member scores 1 when its
successor has the largest logit among the sequence's members (itself included).

Pure tensor functions; the model-reading glue is in headwiki.detectors.weights. Base layer: no pass imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

Norm = Literal["RMS", "LN", "none"]


def normalize_rows(x: torch.Tensor, norm: Norm, eps: float = 1e-5) -> torch.Tensor:
    """What a LayerNorm without gain does to each row: x [n, d] -> [n, d] (LN: centred, / std; RMS: / rms)."""
    x = x.double()
    if norm == "LN":
        x = x - x.mean(-1, keepdim=True)
        return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    if norm == "RMS":
        return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return x


def unembed(W_U: torch.Tensor, final_gain: torch.Tensor | None, norm: Norm) -> torch.Tensor:
    """U = P diag(g_f) W_U: the unembedding with the final LayerNorm's gain folded in (and its centring P for LN).

    W_U [d_model, d_vocab], final_gain [d_model] or None -> [d_model, d_vocab] (float64)."""
    U = W_U.double()
    if final_gain is not None:
        U = final_gain.double()[:, None] * U
    if norm == "LN":
        U = U - U.mean(0, keepdim=True)
    return U


def token_gram(E: torch.Tensor, U: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """G = U E: E [d_vocab, d_model] (normalized token rows), U [d_model, d_vocab] -> [d_model, d_model] (float64).

    Each chunk's product in float32 (the cost: d_model^2 d_vocab), accumulated in float64."""
    G = torch.zeros(U.shape[0], E.shape[1], dtype=torch.float64)
    for start in range(0, E.shape[0], chunk):
        G += (U[:, start:start + chunk].float() @ E[start:start + chunk].float()).double()
    return G


def fold_gain(W_V: torch.Tensor, gains: torch.Tensor | None) -> torch.Tensor:
    """diag(g_L) W_V: W_V [n_layers, n_heads, d_model, d_head], gains [n_layers, d_model] or None -> same shape."""
    W = W_V.double()
    return W if gains is None else gains.double()[:, None, :, None] * W


def ov_eigenvalues(W_V: torch.Tensor, W_O: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """The nonzero eigenvalues of each head's full OV circuit, from the d_head x d_head matrix W_O G W_V.

    W_V [n_layers, n_heads, d_model, d_head] (per query head, gain folded), W_O [n_layers, n_heads, d_head, d_model],
    G [d_model, d_model] -> complex [n_layers, n_heads, d_head]."""
    M = W_O.double() @ G.double() @ W_V.double()  # [L, H, d_head, d_head]
    return torch.linalg.eigvals(M)


def eigen_positivity(eigenvalues: torch.Tensor) -> torch.Tensor:
    """sum(lambda) / sum(|lambda|) over the last dim: complex [..., k] -> real [...] in [-1, 1] (0 where all are 0).

    sum(lambda) is real for a real matrix (its trace); imaginary parts of conjugate pairs cancel."""
    total = eigenvalues.sum(-1).real
    mass = eigenvalues.abs().sum(-1)
    return torch.where(mass > 0, total / mass.clamp_min(1e-300), torch.zeros_like(total))


def copying_scores(W_V: torch.Tensor, W_O: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Copying score of every head: [n_layers, n_heads] (see the module docstring for the shapes and folding)."""
    return eigen_positivity(ov_eigenvalues(W_V, W_O, G))


def ov_logits(rows: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """Direct logit effect of each head's OV output for given token rows.

    rows [n, d_model] (normalized embeddings), W_V [L, H, d_model, d_head], W_O [L, H, d_head, d_model],
    U [d_model, k] (unembedding columns of interest) -> [L, H, n, k]."""
    return rows.double() @ W_V.double() @ W_O.double() @ U.double()


def successor_hits(rows: torch.Tensor, W_V: torch.Tensor, W_O: torch.Tensor, U: torch.Tensor,
                   sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """Per ordinal pair, whether the successor is the top-1 logit among its sequence's members.

    rows [d_vocab or any, d_model] indexed by token id, U [d_model, d_vocab]; sequences: token ids in order
    (each of >= 2 members). -> bool [L, H, n_pairs] (pairs (t_i, t_i+1) of every sequence, in order)."""
    out = []
    for seq in sequences:
        ids = torch.tensor(list(seq))
        logits = ov_logits(rows[ids], W_V, W_O, U[:, ids])  # [L, H, n, n]
        top = logits[..., :-1, :].argmax(-1)  # [L, H, n-1]: best member for each member that has a successor
        out.append(top == torch.arange(1, len(seq)))
    return torch.cat(out, dim=-1)


def top_tokens(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boosted and suppressed tokens of OV logit rows, as z-scores over the vocabulary (the rows' scale is arbitrary:
    the final LayerNorm divides by a residual norm the weights do not fix).

    logits [..., d_vocab] -> (boosted z, boosted ids, suppressed z, suppressed ids), each [..., k]."""
    centred = logits - logits.mean(-1, keepdim=True)
    centred = centred / centred.std(-1, keepdim=True).clamp_min(1e-12)
    up = centred.topk(k, dim=-1)
    down = (-centred).topk(k, dim=-1)
    return up.values, up.indices, -down.values, down.indices
