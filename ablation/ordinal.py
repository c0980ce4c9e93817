"""Causal check for the OV roles: next-ordinal accuracy under head ablation — the validation pass's
``next_ordinal_accuracy`` signature (:func:`ordinal_signature_rows`; declared by the successor and copy-suppression
roles) and the standalone check of any head groups (:func:`ordinal_check`, scripts/ordinal_check.py).

Prompts: for every ordinal run of the tokenizer (headwiki.ordinals) and every window of three consecutive members,
``[start] m_i , m_i+1 , m_i+2 ,`` -> the target m_i+3 (e.g. "Monday, Tuesday, Wednesday," -> " Thursday").
Accuracy: the share of prompts whose top-1 next token over the whole vocabulary is the target. A head group is
ablated (zero: its z set to 0; mean: to its mean over the prompts' non-BOS positions) and the accuracy drop compared
with `n_random` head sets of the same layers drawn from the heads outside the group (headwiki.ablation.validation's
matched_random_sets); p_rank = (1 + #random drops >= the group's drop) / (n_random + 1). As a validation signature the
per-prompt values are 0/1 (correct or not) and the validation pass's statistics apply (effect = share of the clean
accuracy removed, bootstrap CI over prompts, paired sign-flip p against each random set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from headwiki.causal_spec import NEXT_ORDINAL, SIGNATURE_WORDS, HeadGroup
from headwiki.hooks import z_hook
from headwiki.ordinals import OrdinalRun, ordinal_runs
from headwiki.stats import wilson_interval

WINDOW = 3
# Below this clean accuracy the model does not do the task and an ablation effect is a share of (almost) nothing.
MIN_CLEAN_ACCURACY = 0.2


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
    """Mean z of every head over the prompts' non-BOS positions: {layer: [n_heads, d_head]}."""
    names = {z_hook(L) for L in range(n_layers)}
    device = next(bridge.parameters()).device
    _, cache = bridge.run_with_cache(prompts.tokens.to(device), names_filter=lambda n: n in names)
    return {L: cache[z_hook(L)][:, 1:].mean(dim=(0, 1)) for L in range(n_layers)}


def ordinal_check(bridge: Any, prompts: OrdinalPrompts, groups: Mapping[str, list[tuple[int, int]]], n_layers: int,
                  n_heads: int, kind: str = "mean", n_random: int = 10, seed: int = 0,
                  excluded: set[tuple[int, int]] | None = None) -> list[dict[str, Any]]:
    """One row per group: clean and ablated accuracy, drop (points as a fraction), matched random drops, p_rank."""
    from headwiki.ablation.validation import matched_random_sets  # the validation pass imports this module

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


def ordinal_signature_rows(
    loaded: Any, role: str, groups: Sequence[HeadGroup], ablations: Sequence[str], effect_row: Callable[..., dict[str, Any]],
    base: dict[str, Any], n_boot: int, n_perm: int, seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """role_validation rows (one per group and ablation) of the next-ordinal signature for `role`, and a record.

    Per prompt the value is 1 when the top-1 next token is the next member, else 0 (clean and under each ablation);
    effect_row(ablated [n], randoms [R, n], clean [n], n_boot, n_perm, seed) -> the validation pass's statistics. No
    rows (the record says why) when the tokenizer has no ordinal run or the clean accuracy is below MIN_CLEAN_ACCURACY."""
    from headwiki.db.store import head_label

    bridge = loaded.bridge
    try:
        prompts = ordinal_prompts(bridge.tokenizer, loaded.start.id)
    except ValueError as exc:
        return [], {"applicable": False, "why": f"not applicable: {exc}"}
    if not len(prompts.targets):
        return [], {"applicable": False, "why": "not applicable: the tokenizer holds no run of >= 4 single-token ordinals"}
    clean = correct(bridge, prompts).double().numpy()
    acc = float(clean.mean())
    record: dict[str, Any] = {"n_prompts": len(clean), "clean_accuracy": acc,
                              "runs": sorted(set(prompts.runs)), "applicable": acc >= MIN_CLEAN_ACCURACY}
    if acc < MIN_CLEAN_ACCURACY:
        record["why"] = (f"not applicable: clean next-ordinal accuracy {acc:.0%} of {len(clean)} prompts is below "
                         f"{MIN_CLEAN_ACCURACY:.0%}: the model does not do the task")
        return [], record
    n_layers = int(loaded.info.n_layers)
    means = head_means(bridge, prompts, n_layers) if "mean" in ablations else {}
    rows = []
    for name, heads, randoms in groups:
        for kind in ablations:
            measure = lambda hs: correct(bridge, prompts, hs, kind, means).double().numpy()  # noqa: E731
            ablated = measure(heads)
            rand = np.stack([measure(r) for r in randoms]) if randoms else np.empty((0, len(clean)))
            stats = effect_row(ablated, rand, clean, n_boot, n_perm, seed)
            suffix = stats.pop("note_suffix", "")
            rows.append({**base, "n_seqs": len(clean), "seq_len": int(prompts.tokens.shape[1]), "ablation": kind,
                         "role": role, "signature": NEXT_ORDINAL, "group_name": name, "k": len(heads),
                         "heads": [head_label(*x) for x in heads],
                         "note": f"{SIGNATURE_WORDS[NEXT_ORDINAL]}; {len(clean)} prompts, clean accuracy {acc:.1%}" + suffix,
                         **stats})
            record[f"ablated_accuracy_{name}_{kind}"] = float(ablated.mean())
    return rows, record
