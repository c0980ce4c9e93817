"""Random-initialized control per architecture: the null a role's CI lower bound must beat.

The control model has the same HF config (architecture, sizes, positional scheme) as the analysed
model, freshly initialized from a seed, and is scored on exactly the same token sequences. Its
per-head scores are stored in the ``controls`` table under a key that combines the architecture
signature (hash of the HF config minus names/versions) and the data hash, so a second model of the
same architecture on the same data reuses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from headwiki.detectors.registry import BatchMeta, InputKind, Registry
from headwiki.detectors.roles import control_metrics
from headwiki.detectors.scoring import score_inputs

# Config fields that name or version a checkpoint without changing the architecture.
_IGNORED_CONFIG_KEYS = {"_name_or_path", "transformers_version", "name_or_path", "output_attentions", "dtype", "torch_dtype", "_commit_hash"}


def arch_signature(bridge: Any) -> str:
    """sha256 (12 hex) of the HF config with names/versions removed: one value per architecture."""
    config = bridge.original_model.config.to_dict()
    clean = {k: v for k, v in config.items() if k not in _IGNORED_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()[:12]


def control_key(arch: str, data_hash: str, seed: int) -> str:
    """Controls depend on the architecture, the exact sequences and the init seed."""
    return f"{arch}-{data_hash[:8]}-s{seed}"


def build_control_bridge(path: str, tokenizer: Any, device: torch.device | str, seed: int, hf_config: Any = None) -> Any:
    """A random-init bridge with the architecture of the model at `path` (config only, no weights).

    hf_config: build from this HF config instead of reading `path` (sources without a config.json,
    e.g. a .gguf file): ``AutoModelForCausalLM.from_config`` under the same seed.
    """
    import warnings

    from transformer_lens.model_bridge import TransformerBridge

    from headwiki.kernels import fuse_activations

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        if hf_config is not None:
            from transformers import AutoModelForCausalLM

            hf_model = AutoModelForCausalLM.from_config(hf_config)
            bridge = TransformerBridge.boot_transformers(path, hf_model=hf_model, tokenizer=tokenizer, device=str(device))
        else:
            bridge = TransformerBridge.boot_transformers(path, load_weights=False, tokenizer=tokenizer, device=str(device))
    bridge.original_model.to(device)
    # fused activations only: no packed oneDNN copy of the weights, so the control costs one weight-size of
    # memory beside the model, not two (its forwards use PyTorch's GEMM)
    fuse_activations(bridge.original_model)
    bridge.eval()
    return bridge


def read_controls(db_path: str | Path, key: str, n_layers: int, n_heads: int) -> dict[str, torch.Tensor] | None:
    """Stored control scores {role: [n_layers, n_heads]} for `key`, or None when absent/incomplete."""
    from headwiki.db.store import reading

    if not Path(db_path).exists():
        return None
    with reading(db_path) as con:
        frame = con.execute(
            "SELECT metric, layer, head, value FROM controls WHERE arch_key = ?", [key]
        ).fetchdf()
    out: dict[str, torch.Tensor] = {}
    for metric in control_metrics():
        rows = frame[frame.metric == metric]
        if len(rows) != n_layers * n_heads:
            return None
        grid = torch.full((n_layers, n_heads), float("nan"), dtype=torch.float64)
        grid[torch.tensor(rows["layer"].to_numpy()), torch.tensor(rows["head"].to_numpy())] = torch.tensor(rows["value"].to_numpy(), dtype=torch.float64)
        out[metric] = grid
    return out


def compute_controls(
    control_bridge: Any,
    inputs: Mapping[InputKind, torch.Tensor],
    registry: Registry,
    meta: BatchMeta,
    batch_size: int,
    on_batch: Callable[[], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean control score of every role's metric over the same sequences: {metric: [n_layers, n_heads]} (float64)."""
    wanted = control_metrics()
    per_seq = score_inputs(control_bridge, inputs, registry, meta, batch_size, on_batch, only=control_detectors(registry))
    out: dict[str, torch.Tensor] = {}
    for det in registry:
        if det.name in per_seq:
            boot, _ = det.columns(per_seq[det.name])
            out.update({m: v.double().mean(0) for m, v in boot.items() if m in wanted})
    return out


def control_detectors(registry: Registry) -> set[str]:
    """The detectors that produce a role's metric (the only ones run on the control model)."""
    wanted = set(control_metrics())
    return {d.name for d in registry if any(m.name in wanted for m in d.metrics)}


def controls_frame(key: str, controls: Mapping[str, torch.Tensor], run_id: str) -> pd.DataFrame:
    """Rows for the `controls` table: (arch_key, metric, layer, head, value, run_id)."""
    rows = []
    for metric, grid in controls.items():
        n_layers, n_heads = grid.shape
        for layer in range(n_layers):
            for head in range(n_heads):
                rows.append((key, metric, layer, head, float(grid[layer, head]), run_id))
    return pd.DataFrame(rows, columns=["arch_key", "metric", "layer", "head", "value", "run_id"])
