"""Causal check for the OV roles: next-ordinal accuracy under head ablation (standalone; scripts/ordinal_check.py).

Prompts: for every ordinal run of the tokenizer (headwiki.ordinals) and every window of three consecutive members,
``[start] m_i , m_i+1 , m_i+2 ,`` -> the target m_i+3 (e.g. "Monday, Tuesday, Wednesday," -> " Thursday").
Accuracy: the share of prompts whose top-1 next token over the whole vocabulary is the target. A head group is
ablated (zero: its z set to 0; mean: to its mean over the prompts' positions) and the accuracy drop compared with
`n_random` head sets of the same layers drawn from the heads outside the group (headwiki.ablation.validation's
matched_random_sets); p_rank = (1 + #random drops >= the group's drop) / (n_random + 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from headwiki.ablation.validation import matched_random_sets
from headwiki.hooks import z_hook
from headwiki.ordinals import OrdinalRun, ordinal_runs
from headwiki.stats import wilson_interval

WINDOW = 3


@dataclass(frozen=True)
class OrdinalPrompts:
    """tokens [n, 2*WINDOW+1] (start token, then member / comma pairs), targets [n], run name per prompt."""

    tokens: torch.Tensor
    targets: torch.Tensor
    runs: list[str]


def ordinal_prompts(tokenizer: Any, start_id: int, runs: Sequence[OrdinalRun] | None = None) -> OrdinalPrompts:
    """Every window of WINDOW consecutive members of every ordinal run, comma-separated, with its next member."""
    encode = lambda s: list(tokenizer.encode(s, add_special_tokens=False))  # noqa: E731
    runs = list(runs) if runs is not None else ordinal_runs(encode)
    comma = encode(",")
    if len(comma) != 1:
        raise ValueError("the tokenizer splits ',' into several tokens")
    rows, targets, names = [], [], []
    for r in runs:
        for i in range(len(r.ids) - WINDOW):
            seq = [start_id]
            for t in r.ids[i:i + WINDOW]:
                seq += [t, comma[0]]
            rows.append(seq)
            targets.append(r.ids[i + WINDOW])
            names.append(r.name)
    return OrdinalPrompts(torch.tensor(rows), torch.tensor(targets), names)


def _hooks(heads: Sequence[tuple[int, int]], kind: str, means: Mapping[int, torch.Tensor]) -> list[tuple[str, Callable[..., torch.Tensor]]]:
    by_layer: dict[int, list[int]] = {}
    for L, h in heads:
        by_layer.setdefault(L, []).append(h)

    def make(layer: int) -> Callable[..., torch.Tensor]:
        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:  # z [b, s, H, d_head]
            for h in by_layer[layer]:
                z[:, :, h, :] = 0.0 if kind == "zero" else means[layer][h]
            return z
        return hook

    return [(z_hook(L), make(L)) for L in by_layer]


@torch.no_grad()
def correct(bridge: Any, prompts: OrdinalPrompts, heads: Sequence[tuple[int, int]] = (), kind: str = "mean",
            means: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Per prompt, whether the top-1 next token is the target, with `heads` ablated: bool [n]."""
    device = next(bridge.parameters()).device
    tokens = prompts.tokens.to(device)
    if heads:
        with bridge.hooks(fwd_hooks=_hooks(heads, kind, means or {})):
            logits = bridge(tokens)
    else:
        logits = bridge(tokens)
    return (logits[:, -1].argmax(-1).cpu() == prompts.targets)


@torch.no_grad()
def head_means(bridge: Any, prompts: OrdinalPrompts, n_layers: int) -> dict[int, torch.Tensor]:
    """Mean z of every head over the prompts' positions: {layer: [n_heads, d_head]}."""
    names = {z_hook(L) for L in range(n_layers)}
    device = next(bridge.parameters()).device
    _, cache = bridge.run_with_cache(prompts.tokens.to(device), names_filter=lambda n: n in names)
    return {L: cache[z_hook(L)].mean(dim=(0, 1)) for L in range(n_layers)}


def ordinal_check(bridge: Any, prompts: OrdinalPrompts, groups: Mapping[str, list[tuple[int, int]]], n_layers: int,
                  n_heads: int, kind: str = "mean", n_random: int = 10, seed: int = 0,
                  excluded: set[tuple[int, int]] | None = None) -> list[dict[str, Any]]:
    """One row per group: clean and ablated accuracy, drop (points as a fraction), matched random drops, p_rank."""
    means = head_means(bridge, prompts, n_layers) if kind == "mean" else {}
    clean = correct(bridge, prompts).float()
    n = len(clean)
    rng = np.random.default_rng(seed)
    out = []
    for name, heads in groups.items():
        acc = correct(bridge, prompts, heads, kind, means).float()
        drop = float(clean.mean() - acc.mean())
        randoms = [float(clean.mean() - correct(bridge, prompts, s, kind, means).float().mean())
                   for s in matched_random_sets(list(heads), set(heads) | (excluded or set()), n_heads, n_random, rng)]
        lo, hi = wilson_interval(int(acc.sum()), n)
        out.append({"group": name, "k": len(heads), "heads": " ".join(f"L{L}H{h}" for L, h in heads), "ablation": kind,
                    "n_prompts": n, "clean_acc": float(clean.mean()), "ablated_acc": float(acc.mean()),
                    "ablated_lo": lo, "ablated_hi": hi, "drop": drop, "random_mean": float(np.mean(randoms)),
                    "random_max": float(np.max(randoms)),
                    "p_rank": (1 + sum(r >= drop for r in randoms)) / (len(randoms) + 1)})
    return out
