"""What the sandbox reads from the database: head sets (presets), the single-head Δ heatmap, the confound panel.

Pure functions of a :class:`ModelTables` snapshot (read once, read-only). Every role and metric name comes from
the DB's declarations (`roles`, `metrics` tables) or from headwiki.negation_spec: none is spelled here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from headwiki.db.store import head_label, reading
from headwiki.errors import HeadwikiError
from headwiki.negation_spec import EFFECT_SPECS, NEGATION_ROLE, PROMOTER
from headwiki.wiki.context import head_roles

Head = tuple[int, int]

# preset kinds (the app's dropdown): their words are the UI's, their logic below
NO_PRESET = "none (clean model)"
BY_ROLE_SCORE = "top-k by a role's score"
BY_DELTA_DROP = "top-k by single-head Δ (largest drop)"
BY_DELTA_RISE = "top-k by single-head Δ (largest rise)"
WHOLE_LAYER = "a whole layer"
BY_ROLE_LABEL = "heads labelled with a role"
PRESETS: tuple[str, ...] = (NO_PRESET, BY_ROLE_SCORE, BY_DELTA_DROP, BY_DELTA_RISE, WHOLE_LAYER, BY_ROLE_LABEL)
CELLS_TRACE = "cells"  # the heatmap's invisible per-cell markers (what a lasso selects)
HEATMAP_METRIC = "neg_acc"  # the item metric (headwiki.negation_spec.EFFECT_SPECS key) the heatmap and Δ presets rank by


@dataclass(frozen=True)
class ModelTables:
    """One model's `heads` rows (sorted by layer, head) and its declared roles (`roles` rows), read once."""

    model_id: str
    n_layers: int
    n_heads: int
    heads: pd.DataFrame
    roles: pd.DataFrame

    @property
    def holders(self) -> list[str]:
        """The `heads` columns that hold roles (declared `held_in`), present in this DB."""
        held = [] if self.roles.empty else list(dict.fromkeys(self.roles["held_in"].dropna()))
        return [c for c in held if c in self.heads.columns]

    def roles_of(self, layer: int, head: int) -> list[str]:
        row = self.heads[(self.heads["layer"] == layer) & (self.heads["head"] == head)]
        return [] if row.empty else head_roles(row.iloc[0].to_dict(), self.holders)

    def role_label(self, role: str) -> str:
        match = self.roles[self.roles["role"] == role]
        return role if match.empty or not isinstance(match["label"].iloc[0], str) else str(match["label"].iloc[0])


def read_tables(db_path: str | Path, model_id: str) -> ModelTables:
    """Read-only snapshot of `model_id` in `db_path`; one-line HeadwikiError when the DB or the model is missing."""
    check_db_holds_model(db_path, model_id)
    with reading(db_path) as con:
        n_layers, n_heads = con.execute("SELECT n_layers, n_heads FROM models WHERE model_id = ?", [model_id]).fetchall()[0]
        heads = con.execute("SELECT * FROM heads WHERE model_id = ? ORDER BY layer, head", [model_id]).df()
        roles = con.execute("SELECT * FROM roles WHERE model_id = ? ORDER BY sort_order, role", [model_id]).df()
    return ModelTables(model_id, int(n_layers), int(n_heads), heads, roles)


def check_db_holds_model(db_path: str | Path, model_id: str) -> tuple[int, int]:
    """(n_layers, n_heads) of `model_id` in `db_path`; one-line HeadwikiError when the DB or the model row is missing."""
    path = Path(db_path)
    if not path.is_file():
        raise HeadwikiError(f"database {db_path} not found: run `headwiki build --model ... --db {db_path}` first, or pass --db")
    with reading(path) as con:
        rows = {r[0]: (int(r[1]), int(r[2])) for r in con.execute("SELECT model_id, n_layers, n_heads FROM models ORDER BY 1").fetchall()}
    if model_id not in rows:
        have = ", ".join(rows) if rows else "none"
        raise HeadwikiError(f"model {model_id!r} is not in {db_path} (it holds: {have}): run `headwiki build --model ... "
                            f"--db {db_path}` for it, or pick one of those")
    return rows[model_id]


def delta_column(kind: str, metric: str = HEATMAP_METRIC) -> str:
    """The `heads` column of a single-head Δ for one ablation kind, from its declaration."""
    return EFFECT_SPECS[metric].expand(kind).name


def score_roles(t: ModelTables) -> list[str]:
    """Roles whose declared score column holds numbers in this DB (the role-score preset's choices)."""
    if t.roles.empty:
        return []
    out = []
    for role, metric in zip(t.roles["role"], t.roles["metric"]):
        if isinstance(metric, str) and metric in t.heads.columns and pd.to_numeric(t.heads[metric], errors="coerce").notna().any():
            out.append(str(role))
    return out


def label_roles(t: ModelTables) -> list[str]:
    """Declared roles that at least one head holds (the role-label preset's choices), declaration order."""
    held = {r for L, h in zip(t.heads["layer"], t.heads["head"]) for r in t.roles_of(int(L), int(h))}
    return [str(r) for r in t.roles["role"] if r in held] if not t.roles.empty else []


def _ranked(t: ModelTables, score: pd.Series, k: int) -> list[Head]:
    from headwiki.ablation.groups import rank_heads  # the pass's ranking (ties by layer, head; NaN last)

    frame = pd.DataFrame({"layer": t.heads["layer"], "head": t.heads["head"], "score": pd.to_numeric(score, errors="coerce")})
    return rank_heads(frame)[:max(0, k)]


def top_by_role_score(t: ModelTables, role: str, k: int) -> list[Head]:
    """The k heads with the highest score of `role`'s declared metric (like the pass's ranked role groups)."""
    match = t.roles[t.roles["role"] == role] if not t.roles.empty else t.roles
    if match.empty or match["metric"].iloc[0] not in t.heads.columns:
        raise HeadwikiError(f"role {role!r} has no score column in this database: pick one of {', '.join(score_roles(t)) or 'none'}")
    return _ranked(t, t.heads[match["metric"].iloc[0]], k)


def top_by_delta(t: ModelTables, kind: str, k: int, rise: bool = False, metric: str = HEATMAP_METRIC) -> list[Head]:
    """The k heads whose single-head ablation (of `kind`) moved `metric` most down (or up, with rise) in the DB."""
    col = delta_column(kind, metric)
    if col not in t.heads.columns:
        raise HeadwikiError(f"no single-head {kind} ablation in this database ({col} missing): run `headwiki ablate --ablation {kind}`")
    d = pd.to_numeric(t.heads[col], errors="coerce")
    return _ranked(t, d if rise else -d, k)


def layer_heads(t: ModelTables, layer: int) -> list[Head]:
    if not 0 <= layer < t.n_layers:
        raise HeadwikiError(f"layer {layer} is outside {t.model_id} (layers 0..{t.n_layers - 1})")
    return [(layer, h) for h in range(t.n_heads)]


def heads_with_role(t: ModelTables, role: str) -> list[Head]:
    """Every head whose role columns hold `role`."""
    return [(int(L), int(h)) for L, h in zip(t.heads["layer"], t.heads["head"]) if role in t.roles_of(int(L), int(h))]


def preset_heads(t: ModelTables, preset: str, *, k: int = 1, role: str | None = None, layer: int = 0,
                 kind: str = "zero") -> list[Head]:
    """The head set of one preset (PRESETS); `role` for the role presets, `layer` for WHOLE_LAYER, `k` for top-k."""
    if preset == NO_PRESET:
        return []
    if preset == BY_ROLE_SCORE:
        return top_by_role_score(t, role or "", k) if role else []
    if preset in (BY_DELTA_DROP, BY_DELTA_RISE):
        return top_by_delta(t, kind, k, rise=preset == BY_DELTA_RISE)
    if preset == WHOLE_LAYER:
        return layer_heads(t, layer)
    if preset == BY_ROLE_LABEL:
        return heads_with_role(t, role) if role else []
    raise HeadwikiError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")


def promoters(t: ModelTables, kind: str = "zero") -> list[Head]:
    """Heads the pass labelled shortcut promoters (removing them strengthens negation) for `kind`'s role column."""
    col = NEGATION_ROLE.name if kind == "zero" else f"{NEGATION_ROLE.name}_{kind}"
    if col not in t.heads.columns:
        return []
    return [(int(L), int(h)) for L, h, r in zip(t.heads["layer"], t.heads["head"], t.heads[col]) if r == PROMOTER.name]


def delta_grid(t: ModelTables, kind: str, metric: str = HEATMAP_METRIC) -> np.ndarray:
    """[n_layers, n_heads] single-head Δ from the DB (NaN where absent)."""
    grid = np.full((t.n_layers, t.n_heads), np.nan)
    col = delta_column(kind, metric)
    if col in t.heads.columns:
        for L, h, v in zip(t.heads["layer"], t.heads["head"], pd.to_numeric(t.heads[col], errors="coerce")):
            grid[int(L), int(h)] = v
    return grid


def heatmap(t: ModelTables, kind: str, toggled: Iterable[Head], metric: str = HEATMAP_METRIC):  # -> plotly Figure
    """Layer x head heatmap of the single-head Δ (points for accuracies), toggled heads outlined, shortcut promoters starred."""
    import plotly.graph_objects as go

    spec = EFFECT_SPECS[metric]
    scale = 100.0 if spec.unit == "points" else 1.0
    z = delta_grid(t, kind, metric) * scale
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    text = [[head_label(L, h) for h in range(t.n_heads)] for L in range(t.n_layers)]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(t.n_heads)), y=list(range(t.n_layers)), colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
        text=text, hovertemplate="%{text}: %{z:+.1f}<extra></extra>", colorbar={"title": f"{spec.label} ({spec.unit})"}))
    for L, h in toggled:
        fig.add_shape(type="rect", x0=h - 0.5, x1=h + 0.5, y0=L - 0.5, y1=L + 0.5, line={"color": "black", "width": 3})
    # one invisible marker per cell centre, on top: plotly's box and lasso selections pick markers (a heatmap alone
    # only reports a box's range), so a lasso over the cells selects their heads too (selected_heads reads them)
    fig.add_trace(go.Scatter(x=[h for L in range(t.n_layers) for h in range(t.n_heads)],
                             y=[L for L in range(t.n_layers) for _ in range(t.n_heads)], mode="markers", name=CELLS_TRACE,
                             marker={"size": 18, "opacity": 0}, selected={"marker": {"opacity": 0}},
                             unselected={"marker": {"opacity": 0}}, hoverinfo="skip", showlegend=False))
    prom = promoters(t, kind)
    if prom:
        fig.add_trace(go.Scatter(x=[h for _, h in prom], y=[L for L, _ in prom], mode="markers", name=PROMOTER.label,
                                 marker={"symbol": "star", "size": 14, "color": PROMOTER.colour, "line": {"color": "white", "width": 1}},
                                 hovertemplate=f"%{{x}}: {PROMOTER.label}<extra></extra>"))
    fig.update_layout(title=f"single-head {kind} ablation: {spec.label} (from the DB)", xaxis_title="head", yaxis_title="layer",
                      yaxis={"autorange": "reversed", "dtick": 1}, xaxis={"dtick": 1}, height=120 + 40 * t.n_layers,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, showlegend=bool(prom), legend={"orientation": "h", "y": -0.2})
    return fig


def selected_heads(points: Iterable[Mapping[str, Any]], n_layers: int, n_heads: int) -> frozenset[Head]:
    """The heads a heatmap selection names: each point's (y, x) = (layer, head) as `mo.ui.plotly(heatmap(...)).value`
    gives them (a clicked cell, the cells and markers of a box, the markers of a lasso); points off the grid are dropped."""
    out = set()
    for p in points:
        try:
            L, h = int(round(float(p["y"]))), int(round(float(p["x"])))
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= L < n_layers and 0 <= h < n_heads:
            out.add((L, h))
    return frozenset(out)


def toggle(heads: Iterable[Head], selected: Iterable[Head]) -> frozenset[Head]:
    """A click or a box/lasso selection toggles: selected heads that were on go off, the others go on (symmetric difference)."""
    return frozenset(heads) ^ frozenset(selected)


def confound_lines(t: ModelTables, toggled: Sequence[Head], kind: str = "zero") -> list[str]:
    """One sentence per toggled head: its roles from the DB and its own single-head Δ, flagging multi-role heads."""
    col = delta_column(kind)
    lines = []
    for L, h in sorted(toggled):
        roles = t.roles_of(L, h)
        words = ", ".join(t.role_label(r) for r in roles) if roles else "no role in the DB"
        row = t.heads[(t.heads["layer"] == L) & (t.heads["head"] == h)]
        own = ""
        if col in t.heads.columns and not row.empty and pd.notna(row[col].iloc[0]):
            lo, hi = row.get(f"{col}_lo"), row.get(f"{col}_hi")
            ci = (f" [{100 * float(lo.iloc[0]):+.1f}, {100 * float(hi.iloc[0]):+.1f}]"
                  if lo is not None and hi is not None and pd.notna(lo.iloc[0]) and pd.notna(hi.iloc[0]) else "")
            own = f"; alone its {kind} ablation moves negated accuracy {100 * float(row[col].iloc[0]):+.1f}{ci} points"
        flag = (" — more than one role: an effect of removing it may come from any of them (possible confound)"
                if len(roles) > 1 else "")
        lines.append(f"{head_label(L, h)}: {words}{own}{flag}")
    return lines
