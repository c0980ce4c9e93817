"""Hyper-parameters of a toy training run and where a run is written by default.

Kept apart from :mod:`headwiki.toy.train` so the command line can show the defaults without
importing torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headwiki.toy.world import NEGATION_CONTRAST


def default_out(seed: int) -> Path:
    """Where ``headwiki toy train --seed S`` writes when no --out is given: a new folder in the current
    directory (never the installed package's model folder; ``headwiki toy select`` installs a run)."""
    return Path(f"toy-run-seed{seed}")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run (all recorded in metrics.json)."""

    seed: int = 0
    steps: int = 6000
    batch_size: int = 32
    n_ctx: int = 64
    n_layer: int = 2
    n_head: int = 8
    d_model: int = 128
    lr: float = 1e-3
    lr_after_curriculum: float = 3e-3
    min_lr_frac: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    curriculum_steps: int = 1000
    text_frac: float = 0.6
    again_frac: float = 0.15
    again_gate_from: int = 2500
    text_frac_gated: float = 0.55
    again_frac_gated: float = 0.3
    again_pool: tuple[int, int] = (12, 28)
    contrast: float = NEGATION_CONTRAST
    min_span: int = 5
    max_span: int = 30
    ema_decay: float = 0.999
    ema_start: int = 3000
    time_budget_s: float = 900.0
    eval_every: int = 500
    checkpoint_every: int = 0  # save the raw (not averaged) weights every N steps into <out>/checkpoints/step<N>; 0 = none
