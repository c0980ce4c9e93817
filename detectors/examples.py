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
