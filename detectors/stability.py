"""Label stability: does a detector role survive other reasonable settings, or only the defaults?

A role's CI resamples sequences only (on SmolLM2 ±0.01), while changing the sequence length or the random
draw moves labels across the threshold by more. So the pass re-scores every role's metric on a small grid of
other settings — half the span length (L/2) and a second seed, and the pair of both — with half as many
sequences, and calls a head's role

* ``stable`` when the head holds it (the main rule: score >= threshold and CI lower bound > control) AND its CI
  lower bound is >= the threshold AND its score is >= the threshold in every grid cell;
* ``borderline`` when the head holds it but one of those fails, or does not hold it although some grid cell
  (or the CI's upper bound) reaches the threshold.

The grid is declared here (GRID) and recorded in the run's params; the two columns list roles per head.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from headwiki.detectors.registry import BatchMeta, Registry
from headwiki.detectors.scoring import score_inputs
from headwiki.label_spec import BORDERLINE, STABLE  # noqa: F401 (re-exported: the columns this module fills)
from headwiki.spec import Role

# (span length factor, seed offset) of each extra setting; n_seqs is halved in every cell (at least 8)
GRID: tuple[tuple[float, int], ...] = ((0.5, 0), (1.0, 1), (0.5, 1))
MIN_GRID_SEQS = 8

def grid_scores(
    build: Callable[[int, int, int], dict[str, torch.Tensor]], bridge: Any, registry: Registry, roles: list[Role],
    n_seqs: int, half_len: int, seed: int, batch_size: int, on_cell: Callable[[], None] | None = None,
    meta: BatchMeta | None = None,
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, Any]]]:
    """Mean score of every role's metric in each grid cell: ([{role: [n_layers, n_heads]} per cell], cell settings).

    build(n_seqs, half_len, seed) -> {input kind: tokens} (the pass's own input builder)."""
    metrics = {r.metric for r in roles}
    only = {d.name for d in registry if any(m.name in metrics for m in d.metrics)}
    cells, settings = [], []
    for factor, offset in GRID:
        L = max(2, int(round(half_len * factor)))
        n = max(MIN_GRID_SEQS, n_seqs // 2)
        tokens = build(n, L, seed + offset)
        per_seq = score_inputs(bridge, tokens, registry, dataclasses.replace(meta or BatchMeta(half_len=L), half_len=L), batch_size, None, only=only)
        means: dict[str, np.ndarray] = {}
        for det in registry:
            if det.name in per_seq:
                boot, _ = det.columns(per_seq[det.name])
                means.update({m: v.double().mean(0).numpy() for m, v in boot.items() if m in metrics})
        cells.append(means)
        settings.append({"seq_len": L, "seed": seed + offset, "n_seqs": n})
        if on_cell is not None:
            on_cell()
    return cells, settings


def stability(score: Mapping[str, np.ndarray], lo: Mapping[str, np.ndarray], hi: Mapping[str, np.ndarray],
              held: Mapping[str, np.ndarray], cells: list[Mapping[str, np.ndarray]],
              thresholds: Mapping[str, float], roles: Mapping[str, str]) -> tuple[list[list[str]], list[list[str]]]:
    """(stable roles, borderline roles) per head, flattened in (layer, head) order.

    score, lo, hi, held: {role: [n_layers, n_heads]} (held: bool); cells: {metric: [n_layers, n_heads]} per grid
    cell; roles: {role: its metric}."""
    names = list(thresholds)
    n = next(iter(score.values())).size
    stable: list[list[str]] = [[] for _ in range(n)]
    border: list[list[str]] = [[] for _ in range(n)]
    for r in names:
        t = thresholds[r]
        grid = np.stack([c[roles[r]] for c in cells]).reshape(len(cells), -1) if cells else np.zeros((0, n))
        all_cells = (grid >= t).all(0) if len(cells) else np.ones(n, bool)
        any_cell = (grid >= t).any(0) if len(cells) else np.zeros(n, bool)
        h, s, l_, u = (x[r].reshape(-1) for x in (held, score, lo, hi))
        for i in range(n):
            if h[i] and l_[i] >= t and all_cells[i]:
                stable[i].append(r)
            elif h[i] or any_cell[i] or (s[i] < t <= u[i]):
                border[i].append(r)
    return stable, border
