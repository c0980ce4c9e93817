"""One place for TransformerLens hook names and activation capture on a TransformerBridge."""

from __future__ import annotations

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
def capture_patterns(bridge: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Run one batched forward pass capturing only hook_pattern, stopping after the last layer's.

    The rest of the last block and the unembedding never run (for GPT-2-small the unembedding
    alone is ~30% of the forward). tokens: [batch, seq] -> patterns [batch, n_layers, n_heads,
    seq, seq] (float32, on the model's device).
    """
    names = [pattern_hook(layer) for layer in range(n_layers(bridge))]
    require_hooks(bridge, names, "attention-pattern detectors")
    captured: dict[str, torch.Tensor] = {}
    last = names[-1]

    def keep(pattern: torch.Tensor, hook: Any) -> None:
        captured[hook.name] = pattern.float()
        if hook.name == last:
            raise _PatternsCaptured

    try:
        with bridge.hooks(fwd_hooks=[(name, keep) for name in names]):
            bridge(tokens, return_type=None)
    except _PatternsCaptured:
        pass
    missing = [n for n in names if n not in captured]
    if missing:
        raise HeadwikiError(f"hook {missing[0]} did not fire for model {bridge.cfg.model_name!r}: its adapter does not expose attention patterns")
    return torch.stack([captured[name] for name in names], dim=1)
