"""Cross-model views (pure functions over SiteData): role prevalence, where roles sit by relative depth, the most
similar heads across models, heads matched across seeds, and checkpoint series (training timelines).

Nothing here queries the database: every input is the SiteData the renderer already read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from headwiki.wiki.context import ModelData, SiteData
from headwiki.wiki.similarity import zscore_columns


def relative_depth(layer: int, n_layers: int) -> float:
    """The middle of layer `layer` as a fraction of the depth: (layer + 0.5) / n_layers, in (0, 1)."""
    return (int(layer) + 0.5) / max(1, int(n_layers))


def role_prevalence(site: SiteData, roles: list[str]) -> list[dict[str, Any]]:
    """One row per model: for each role, the number of heads holding it and their share of the model's heads."""
    out = []
    for m in site.models:
        counts = {r: 0 for r in roles}
        for row in m.heads.to_dict("records"):
            for r in m.roles_of(row):
                if r in counts:
                    counts[r] += 1
        n = len(m.heads)
        out.append({"model": m, "n_heads": n, "cells": [(counts[r], counts[r] / n if n else 0.0) for r in roles]})
    return out


def role_depths(model: ModelData, role: str) -> list[tuple[str, int, int, float]]:
    """(label, layer, head, relative depth) of every head of `model` holding `role`, by layer then head."""
    out = [(str(r["label"]), int(r["layer"]), int(r["head"]), relative_depth(r["layer"], model.n_layers))
           for r in model.heads.to_dict("records") if role in model.roles_of(r)]
    return sorted(out, key=lambda t: (t[1], t[2]))


def depth_strip_svg(depths: list[float], colour: str, width: int = 200, height: int = 18) -> str:
    """A strip from input (left) to output (right) with one dot per head at its relative depth (0..1)."""
    dots = "".join(f'<circle cx="{4 + d * (width - 8):.1f}" cy="{height / 2:.1f}" r="3.5" fill="{colour}" fill-opacity="0.7"/>'
                   for d in depths)
    return (f'<svg class="depth-strip" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="relative depth of {len(depths)} heads"><line x1="4" x2="{width - 4}" y1="{height / 2}" '
            f'y2="{height / 2}" stroke="#bbb"/>{dots}</svg>')


def shared_metrics(site: SiteData, family: str = "detector") -> list[str]:
    """Heatmap metrics of `family` that every model has (the common profile the cross-model similarity reads)."""
    sets = [{d.name for d in m.metrics if d.heatmap and d.kind == family} for m in site.models]
    common = set.intersection(*sets) if sets else set()
    first = [d.name for d in site.models[0].metrics] if site.models else []
    return [n for n in first if n in common]


def profile(model: ModelData, names: list[str]) -> np.ndarray:
    """[n_heads, len(names)] metric values of the model's heads (rows in (layer, head) order; NaN where missing)."""
    return model.heads[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float) if names else \
        np.zeros((len(model.heads), 0))


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of a [n, k] with every row of b [m, k] -> [n, m] (0 for a zero row)."""
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.where(na > 0, na, 1.0)) @ (b / np.where(nb > 0, nb, 1.0)).T


@dataclass(frozen=True)
class HeadPair:
    a: int  # model index in site.models
    i: int  # row in that model's heads
    b: int
    j: int
    cosine: float


def similar_across_models(site: SiteData, names: list[str], k: int = 20) -> list[HeadPair]:
    """The k most similar pairs of heads in different models: cosine over metric vectors standardized (z-scored)
    over the pooled heads of all models, so each metric counts equally and a pair is similar relative to all heads."""
    if not names or len(site.models) < 2:
        return []
    blocks = [profile(m, names) for m in site.models]
    z = zscore_columns(np.vstack(blocks))
    starts = np.cumsum([0] + [len(x) for x in blocks])
    pairs: list[HeadPair] = []
    for a in range(len(blocks)):
        for b in range(a + 1, len(blocks)):
            cos = cosine_matrix(z[starts[a]:starts[a + 1]], z[starts[b]:starts[b + 1]])
            flat = np.argsort(-cos, axis=None, kind="stable")[:k]
            pairs += [HeadPair(a, int(f // cos.shape[1]), b, int(f % cos.shape[1]), float(cos.flat[f])) for f in flat]
    return sorted(pairs, key=lambda p: (-round(p.cosine, 12), p.a, p.i, p.b, p.j))[:k]


def match_heads(sim: np.ndarray) -> tuple[list[tuple[int, int]], str]:
    """A one-to-one matching of rows to columns of a similarity matrix [n, m] maximizing total similarity.

    Hungarian (scipy.optimize.linear_sum_assignment) when scipy is installed, else greedy (highest pair first).
    -> ([(row, col)] sorted by row, method name)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # scipy is optional (extra `universality`): greedy matching
        taken_r: set[int] = set()
        taken_c: set[int] = set()
        out = []
        for f in np.argsort(-sim, axis=None, kind="stable"):
            r, c = int(f // sim.shape[1]), int(f % sim.shape[1])
            if r not in taken_r and c not in taken_c:
                taken_r.add(r)
                taken_c.add(c)
                out.append((r, c))
        return sorted(out), "greedy (highest similarity first)"
    rows, cols = linear_sum_assignment(-sim)
    return sorted(zip(rows.tolist(), cols.tolist())), "Hungarian (scipy linear_sum_assignment)"


def structure_groups(site: SiteData) -> list[list[ModelData]]:
    """Models grouped by shape (n_layers, n_heads), groups of >= 2 only; checkpoints of a series are left out
    (the timeline shows them), unless a group would otherwise be empty. Seeds first (models that declare a seed)."""
    groups: dict[tuple[int, int], list[ModelData]] = {}
    for m in site.models:
        groups.setdefault((m.n_layers, m.n_heads), []).append(m)
    out = []
    for members in groups.values():
        finals = [m for m in members if not series_of(m)]
        chosen = finals if len(finals) >= 2 else members
        if len(chosen) >= 2:
            out.append(sorted(chosen, key=lambda m: (_seed(m) is None, _seed(m) or 0, m.model_id)))
    return out


def _seed(model: ModelData) -> int | None:
    v = model.info.get("seed")
    return None if v is None or pd.isna(v) else int(v)


def seed_of(model: ModelData) -> int | None:
    return _seed(model)


def series_of(model: ModelData) -> str:
    v = model.info.get("series")
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)


def step_of(model: ModelData) -> int | None:
    v = model.info.get("step")
    return None if v is None or pd.isna(v) else int(v)


def checkpoint_series(site: SiteData) -> dict[str, list[ModelData]]:
    """{series: its models sorted by step} for every series with >= 2 steps in the database."""
    out: dict[str, list[ModelData]] = {}
    for m in site.models:
        if series_of(m) and step_of(m) is not None:
            out.setdefault(series_of(m), []).append(m)
    return {s: sorted(ms, key=lambda m: step_of(m) or 0) for s, ms in sorted(out.items()) if len(ms) >= 2}


def series_values(models: list[ModelData], metric: str) -> tuple[list[int], np.ndarray]:
    """(steps, values [n_steps, n_layers, n_heads]) of `metric` over a checkpoint series (NaN where missing)."""
    n_layers, n_heads = max(m.n_layers for m in models), max(m.n_heads for m in models)
    out = np.full((len(models), n_layers, n_heads), np.nan)
    for i, m in enumerate(models):
        if metric in m.heads.columns:
            out[i, m.heads["layer"].to_numpy(), m.heads["head"].to_numpy()] = \
                pd.to_numeric(m.heads[metric], errors="coerce").to_numpy(dtype=float)
    return [step_of(m) or 0 for m in models], out


def head_series(models: list[ModelData], metric: str, layer: int, head: int,
                values: tuple[list[int], np.ndarray] | None = None) -> list[tuple[int, float]]:
    """(step, value) of one head's `metric` over a checkpoint series (steps where it is missing left out);
    `values`: :func:`series_values` computed once for many heads."""
    steps, grid = values if values is not None else series_values(models, metric)
    if layer >= grid.shape[1] or head >= grid.shape[2]:
        return []
    return [(s, float(v)) for s, v in zip(steps, grid[:, layer, head]) if not np.isnan(v)]


def sparkline_svg(points: list[tuple[int, float]], current: int | None, colour: str = "#3b6ea5",
                  width: int = 220, height: int = 44) -> str:
    """A line of (step, value) points with a dot at the step `current`; y from min(0, values) to max(1, values)."""
    if len(points) < 2:
        return ""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(0.0, min(ys)), max(1.0, max(ys))
    sx = lambda x: 4 + (x - x0) / max(1e-12, x1 - x0) * (width - 8)  # noqa: E731
    sy = lambda y: height - 4 - (y - y0) / max(1e-12, y1 - y0) * (height - 8)  # noqa: E731
    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dot = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#d62728"/>' for x, y in points if x == current)
    return (f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="value over training steps {x0} to {x1}"><polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{line}"/>{dot}</svg>')
