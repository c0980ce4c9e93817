"""One place for TransformerLens hook names and activation capture on a TransformerBridge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from headwiki.errors import HeadwikiError


def pattern_hook(layer: int) -> str:
    """Attention pattern [batch, n_heads, q, k] after softmax."""
    return f"blocks.{layer}.attn.hook_pattern"


def z_hook(layer: int) -> str:
    """Per-head attention output before W_O: [batch, pos, n_heads, d_head]."""
    return f"blocks.{layer}.attn.hook_z"


def resid_pre_hook(layer: int) -> str:
    """Residual stream entering block `layer`: [batch, pos, d_model]."""
    return f"blocks.{layer}.hook_resid_pre"


def require_hooks(bridge: Any, names: list[str], what: str) -> None:
    """Raise a one-line HeadwikiError if the model lacks a hook a pass needs."""
    available = set(bridge.hook_dict)
    missing = [n for n in names if n not in available]
    if missing:
        raise HeadwikiError(
            f"model {bridge.cfg.model_name!r} ({bridge.cfg.architecture}) has no per-head hook {missing[0]!r} "
            f"needed for {what}: headwiki needs an architecture whose TransformerLens adapter exposes per-head attention"
        )


def n_layers(bridge: Any) -> int:
    return int(bridge.cfg.n_layers)


class _PatternsCaptured(Exception):
    """Raised from the last pattern hook to stop the forward: nothing after it is needed."""


@torch.inference_mode()
def reduce_patterns(
    bridge: Any, tokens: torch.Tensor, reduce: Callable[[torch.Tensor], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """One batched forward; each layer's hook_pattern is reduced by `reduce` inside its hook and dropped.

    `reduce` maps one layer's pattern [batch, 1, n_heads, seq, seq] to {name: [batch, 1, n_heads, ...]};
    the results are concatenated over layers: {name: [batch, n_layers, n_heads, ...]}. The forward
    stops after the last layer's pattern hook (the rest of the last block and the unembedding never
    run; for GPT-2-small the unembedding alone is ~30% of a forward), and no [b, L, H, s, s] stack
    is ever built, so memory stays at one layer's pattern.
    """
    names = [pattern_hook(layer) for layer in range(n_layers(bridge))]
    require_hooks(bridge, names, "attention-pattern detectors")
    reduced: dict[str, dict[str, torch.Tensor]] = {}
    last = names[-1]

    def keep(pattern: torch.Tensor, hook: Any) -> None:
        reduced[hook.name] = reduce(pattern[:, None])
        if hook.name == last:
            raise _PatternsCaptured

    try:
        with bridge.hooks(fwd_hooks=[(name, keep) for name in names]):
            bridge(tokens, return_type=None)
    except _PatternsCaptured:
        pass
    missing = [n for n in names if n not in reduced]
    if missing:
        raise HeadwikiError(f"hook {missing[0]} did not fire for model {bridge.cfg.model_name!r}: its adapter does not expose attention patterns")
    keys = reduced[names[0]].keys()
    return {key: torch.cat([reduced[name][key] for name in names], dim=1) for key in keys}


def capture_patterns(bridge: Any, tokens: torch.Tensor) -> torch.Tensor:
    """All attention patterns of one batched forward: tokens [batch, seq] -> [batch, n_layers, n_heads,
    seq, seq] (float32, on the model's device). For scores, prefer :func:`reduce_patterns` (no stack)."""
    return reduce_patterns(bridge, tokens, lambda pattern: {"pattern": pattern.float()})["pattern"]
