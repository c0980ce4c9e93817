"""Apply detectors to batches: ONE batched forward per batch (hook_pattern only), reduced at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from headwiki.batching import batched
from headwiki.detectors.registry import BatchMeta, Detector, InputKind, Registry
from headwiki.hooks import capture_patterns


def score_inputs(
    bridge: Any,
    inputs: Mapping[InputKind, torch.Tensor],
    registry: Registry,
    meta: BatchMeta,
    batch_size: int,
    on_batch: Callable[[], None] | None = None,
    only: set[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sequence outputs of every detector (or those named in `only`) on its input kind.

    inputs: {kind: tokens [n_kind, s]} -> {detector name: [n_kind, n_layers, n_heads(, k)]} on CPU.
    Each batch of each kind is run through the model once; patterns [b, L, H, s, s] are reduced
    to scores immediately and dropped.
    """
    device = _device(bridge)
    out: dict[str, list[torch.Tensor]] = {}
    for kind, tokens in inputs.items():
        detectors: list[Detector] = [d for d in registry.needing(kind) if only is None or d.name in only]
        if not detectors or len(tokens) == 0:
            continue
        for batch in batched(tokens, batch_size):
            batch = batch.to(device)
            patterns = capture_patterns(bridge, batch)
            for det in detectors:
                out.setdefault(det.name, []).append(det.fn(patterns, batch, meta).float().cpu())
            del patterns
            if on_batch is not None:
                on_batch()
    return {name: torch.cat(parts) for name, parts in out.items()}


def n_forward_batches(inputs: Mapping[InputKind, torch.Tensor], registry: Registry, batch_size: int, only: set[str] | None = None) -> int:
    """How many forward passes :func:`score_inputs` will run (for the progress bar)."""
    total = 0
    for kind, tokens in inputs.items():
        if any(only is None or d.name in only for d in registry.needing(kind)) and len(tokens):
            total += (len(tokens) + batch_size - 1) // batch_size
    return total


def _device(bridge: Any) -> torch.device:
    try:
        return next(bridge.original_model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device(str(getattr(bridge.cfg, "device", "cpu")))
