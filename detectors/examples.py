"""Two example attention patterns per head, stored so the wiki can draw them without a model."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from headwiki.hooks import capture_patterns

MAX_EXAMPLE_POSITIONS = 24


def example_sequences(repeat: torch.Tensor, text: torch.Tensor, max_positions: int = MAX_EXAMPLE_POSITIONS) -> dict[str, torch.Tensor]:
    """{'repeat': [1, s1], 'text': [1, s2]} (keyed by input kind) with s <= max_positions.

    repeat: [n, 2L+1] repeat sequences -> a shorter repeat [BOS, x_1..x_k, x_1..x_k] from the first
    one (k = min(L, (max_positions-1)//2)); text: [n, s] windows -> the first window's prefix.
    """
    out: dict[str, torch.Tensor] = {}
    if len(repeat):
        half = (repeat.shape[1] - 1) // 2
        k = min(half, (max_positions - 1) // 2)
        x = repeat[0, 1 : 1 + k]
        out["repeat"] = torch.cat([repeat[0, :1], x, x])[None]
    if len(text):
        out["text"] = text[:1, :max_positions]
    return out


def example_frame(bridge: Any, model_id: str, sequences: dict[str, torch.Tensor], device: torch.device) -> pd.DataFrame:
    """head_examples rows: (model_id, layer, head, kind, tokens VARCHAR[], pattern DOUBLE[][])."""
    rows = []
    for kind, tokens in sequences.items():
        patterns = capture_patterns(bridge, tokens.to(device))[0].double().cpu()  # [L, H, s, s]
        strings = [str(t) for t in bridge.tokenizer.convert_ids_to_tokens(tokens[0].tolist())]
        n_layers, n_heads = patterns.shape[:2]
        for layer in range(n_layers):
            for head in range(n_heads):
                rows.append((model_id, layer, head, kind, strings, patterns[layer, head].tolist()))
    return pd.DataFrame(rows, columns=["model_id", "layer", "head", "kind", "tokens", "pattern"])


# --- top-activating positions per head (issue 18): which tokens make a head write the most ---

TOP_K_EXAMPLES = 4
TOP_WINDOWS = 8
STRIP_TOKENS = 12  # tokens shown before (and including) the query position
MAX_STRIP_TOKENS = 24
TOP_STATISTIC = "output_norm_nobos"
TOP_STATISTIC_TEXT = ("||(z_q - a_q0 z_0) W_O||: the L2 norm of what the head writes into the residual stream at query position q "
                      "from the non-BOS tokens (its attention-weighted values minus the BOS term, times its output matrix; "
                      "z_0 is BOS's value, as position 0 attends only to itself), over every non-BOS query position")


def output_norms(z: torch.Tensor, w_o: torch.Tensor, bos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """||z W_O|| per position and head: z [b, s, H, d_head], w_o [H, d_head, d_model] -> [b, s, H]. With bos_weight
    [b, H, s] (each query's attention to position 0) the BOS term a_q0 z_0 is removed first (z_0 = BOS's value: the
    first position attends only to itself)."""
    z = z.float()
    if bos_weight is not None:
        z = z - bos_weight.permute(0, 2, 1)[..., None] * z[:, :1]
    return torch.einsum("bshe,hed->bshd", z, w_o.float()).norm(dim=-1)


@torch.inference_mode()
def capture_patterns_and_z(bridge: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched forward: tokens [b, s] -> (patterns [b, L, H, s, s], z [b, L, s, H, d_head]), float32 CPU."""
    from headwiki.hooks import n_layers, pattern_hook, require_hooks, z_hook

    layers = range(n_layers(bridge))
    names = [pattern_hook(L) for L in layers] + [z_hook(L) for L in layers]
    require_hooks(bridge, names, "top-activating examples")
    got: dict[str, torch.Tensor] = {}

    def keeper(name: str) -> Any:
        def keep(t: torch.Tensor, hook: Any) -> None:
            got[name] = t.detach().float().cpu()
        return keep

    bridge.run_with_hooks(tokens, return_type=None, fwd_hooks=[(n, keeper(n)) for n in names])
    patterns = torch.stack([got[pattern_hook(L)] for L in layers], dim=1)
    z = torch.stack([got[z_hook(L)] for L in layers], dim=1)
    return patterns, z


def top_positions(stat: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of stat [b, s] over positions 1.. (BOS never a query): -> (window [k], position [k])."""
    flat = stat[:, 1:].reshape(-1)
    idx = flat.topk(min(k, flat.numel())).indices
    width = stat.shape[1] - 1
    return idx // width, idx % width + 1


GAP = "…"


def strip_positions(query: int, key: int) -> list[int | None]:
    """The positions a strip shows: the STRIP_TOKENS tokens ending at `query`, reaching back to `key` when it lies
    within MAX_STRIP_TOKENS; a key further back is shown with its neighbours (two before, one after) and a gap (None)."""
    start = max(0, query - STRIP_TOKENS + 1)
    if key >= start:
        return list(range(start, query + 1))
    if query - key < MAX_STRIP_TOKENS:
        return list(range(key, query + 1))
    head = list(range(max(0, key - 2), key + 2))
    return [*head, None, *range(max(head[-1] + 1, query - STRIP_TOKENS + 1), query + 1)]


def top_example_frame(bridge: Any, model_id: str, tokens: torch.Tensor, source: str, device: torch.device,
                      k: int = TOP_K_EXAMPLES) -> pd.DataFrame:
    """head_top_examples rows: each head's k top-activating positions (statistic TOP_STATISTIC) on the windows
    tokens [n, s] (BOS first), each with a token strip ending at the query (`strip_positions`: it always holds the
    most-attended key; GAP marks skipped tokens), the head's attention over the strip, and `query` / `top_key` as
    indices into the strip."""
    tokens = tokens[:TOP_WINDOWS]
    patterns, z = capture_patterns_and_z(bridge, tokens.to(device))  # [b, L, H, s, s], [b, L, s, H, h]
    w_o = bridge.W_O.detach().float().cpu()  # [L, H, h, d]
    strings = [[bridge.tokenizer.decode([t]) for t in row.tolist()] for row in tokens]  # readable text, not BPE pieces
    rows = []
    n_layers, n_heads = patterns.shape[1:3]
    for layer in range(n_layers):
        norms = output_norms(z[:, layer], w_o[layer], patterns[:, layer, :, :, 0])  # [b, s, H]
        for head in range(n_heads):
            wins, poss = top_positions(norms[:, :, head], k)
            for rank, (w, q) in enumerate(zip(wins.tolist(), poss.tolist()), start=1):
                row = patterns[w, layer, head, q, : q + 1]  # attention of query q over keys 0..q
                key = int(row.argmax())
                shown = strip_positions(q, key)
                toks = [GAP if p is None else strings[w][p] for p in shown]
                att = [0.0 if p is None else round(float(row[p]), 4) for p in shown]
                rows.append((model_id, layer, head, rank, TOP_STATISTIC, float(norms[w, q, head]), w, q,
                             toks, att, len(shown) - 1, shown.index(key), source))
    return pd.DataFrame(rows, columns=["model_id", "layer", "head", "rank", "statistic", "value", "seq", "position",
                                       "tokens", "attention", "query", "top_key", "source"])
