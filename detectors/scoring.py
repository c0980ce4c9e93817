"""Apply detectors to batches: ONE batched forward per batch (hook_pattern only), reduced at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from headwiki.batching import batched
from headwiki.detectors.registry import BatchMeta, Detector, InputKind, Registry
from headwiki.hooks import reduce_patterns


def add_head_columns(frame: Any, part: Any) -> None:
    """Copy every column of `part` (one row per head, layer-major, with layer / head) into the detector pass's `frame`
    (same rows, same order; asserted)."""
    assert frame["layer"].tolist() == part["layer"].tolist() and frame["head"].tolist() == part["head"].tolist()
    for col in part.columns:
        if col not in ("layer", "head"):
            frame[col] = part[col].to_numpy()


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
    Each batch of each kind is run through the model once; each layer's pattern [b, 1, H, s, s] is
    reduced to scores inside its hook and dropped (every detector is per head, so per layer).
    """
    device = _device(bridge)
    out: dict[str, list[torch.Tensor]] = {}
    for kind, tokens in inputs.items():
        detectors: list[Detector] = [d for d in registry.needing(kind) if only is None or d.name in only]
        if not detectors or len(tokens) == 0:
            continue
        for batch in batched(tokens, batch_size):
            batch = batch.to(device)
            for name, value in reduce_patterns(bridge, batch, _layer_scorer(detectors, batch, meta)).items():
                out.setdefault(name, []).append(value.cpu())
            if on_batch is not None:
                on_batch()
    return {name: torch.cat(parts) for name, parts in out.items()}


def _layer_scorer(detectors: list[Detector], tokens: torch.Tensor, meta: BatchMeta) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """The per-layer reduction for :func:`reduce_patterns`: pattern [b, 1, H, s, s] -> {detector: [b, 1, H(, k)]}."""

    def scores(pattern: torch.Tensor) -> dict[str, torch.Tensor]:
        pattern = pattern.float()  # bf16/fp16 models are scored in float32
        return {det.name: det.fn(pattern, tokens, meta).float() for det in detectors}

    return scores


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
