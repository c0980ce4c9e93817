"""Figures: Plotly heatmaps for model pages (plotly.js loaded once from assets/) and small inline SVGs for
head pages (distribution bars, attention patterns) so a head page stays a few tens of KB."""

from __future__ import annotations

import math
from html import escape

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from headwiki.wiki import format as fmt
from headwiki.wiki.context import MetricDoc

SEQUENTIAL = "Viridis"
DIVERGING = "RdBu"
PATTERN_LEVELS = 8
PATTERN_MIN = 0.02
PATTERN_MAX_TOKENS = 40
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def is_signed(doc: MetricDoc) -> bool:
    """Metrics declared "signed" (effects) are centred on zero (diverging colours); scores are not."""
    return doc.direction == "signed"



def colorbar_title(doc: MetricDoc) -> str:
    """A short legend title (the figure caption carries the full label): the unit, Δ for differences."""
    unit = fmt.unit_info(fmt.metric_unit(doc)).short
    if doc.role_kind == "delta":
        return f"Δ {unit}".strip()
    return unit or ("offset" if doc.integer else "score")


def heatmap_html(
    doc: MetricDoc, z: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None, links: list[list[str]], div_id: str,
) -> str:
    """A layer x head Plotly heatmap whose cells carry the relative URL of their head page.

    z, lo, hi: [n_layers, n_heads] (NaN where missing); links: [n_layers][n_heads] relative head-page URLs.
    Returns an HTML fragment (no plotly.js inside); a click handler is attached by assets/site.js.
    """
    n_layers, n_heads = z.shape
    unit = fmt.metric_unit(doc)
    scale = fmt.unit_info(unit).scale
    signed = is_signed(doc)
    shown = z * scale
    text = []
    for L in range(n_layers):
        row = []
        for H in range(n_heads):
            if math.isnan(z[L, H]):
                row.append("n/a")
            elif lo is not None and hi is not None:
                row.append(fmt.estimate(z[L, H], lo[L, H], hi[L, H], unit, signed))
            else:
                row.append(fmt.value(z[L, H], unit, signed))
        text.append(row)
    finite = shown[~np.isnan(shown)]
    kwargs: dict = {"colorscale": SEQUENTIAL}
    if finite.size and doc.unit in ("attention", "norm_entropy") and finite.min() >= 0 and finite.max() <= 1:
        kwargs.update(zmin=0.0, zmax=1.0)  # scores on the 0..1 scale share one colour scale across models
    if is_signed(doc):
        m = float(np.max(np.abs(finite))) if finite.size else 1.0
        kwargs = {"colorscale": DIVERGING, "zmid": 0.0, "zmin": -m or -1.0, "zmax": m or 1.0}
    heat = go.Heatmap(
        z=np.where(np.isnan(shown), None, np.round(shown, 4)).tolist(),
        x=list(range(n_heads)), y=list(range(n_layers)),
        customdata=links, text=text,
        hovertemplate="layer %{y}, head %{x}<br>" + escape(doc.label) + ": %{text}<extra>click: open head</extra>",
        colorbar={"title": {"text": colorbar_title(doc), "side": "top"}, "thickness": 12, "len": 1.0},
        xgap=1, ygap=1, **kwargs,
    )
    fig = go.Figure(heat)
    fig.update_layout(
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        height=max(200, 22 * n_layers + 80),
        xaxis={"title": {"text": "head"}, "dtick": 1 if n_heads <= 16 else 2, "constrain": "domain"},
        yaxis={"title": {"text": "layer"}, "autorange": "reversed", "dtick": 1 if n_layers <= 24 else 2},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#eef0f3",
    )
    return lazy_plot_html(fig, div_id, height=int(fig.layout.height))


_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "/": "\\u002f"}


def lazy_plot_html(fig: go.Figure, div_id: str, height: int) -> str:
    """A placeholder of the figure's height plus its spec as inert JSON; site.js draws it with Plotly when it comes
    near the viewport (IntersectionObserver), loading plotly.js on the first one, so the page paints before the
    4.6 MB library is parsed and only on-screen heatmaps cost time. The JSON escapes '<', '>', '&' and '/'."""
    spec = pio.to_json({"data": fig.to_plotly_json()["data"], "layout": fig.to_plotly_json()["layout"],
                        "config": PLOT_CONFIG}, validate=False)
    spec = "".join(_JSON_ESCAPES.get(c, c) for c in spec)
    return (f'<div id="{div_id}" class="lazy-plot" style="height:{height}px" data-spec="{div_id}-spec" role="img" '
            f'aria-label="heatmap"></div><script type="application/json" id="{div_id}-spec">{spec}</script>')


def distribution_svg(values: np.ndarray, value: float, lo: float | None, hi: float | None, signed: bool,
                     width: int = 180, height: int = 30, bins: int = 24) -> str:
    """A small histogram of the model's values [n_heads] with this head's value (dot) and CI (whisker)."""
    v = values[~np.isnan(values)]
    if v.size == 0 or math.isnan(value):
        return ""
    pts = [*v.tolist(), value] + [x for x in (lo, hi) if x is not None and not math.isnan(x)]
    a, b = min(pts), max(pts)
    if signed:
        m = max(abs(a), abs(b)) or 1.0
        a, b = -m, m
    if b - a < 1e-12:
        a, b = a - 0.5, b + 0.5
    counts, _ = np.histogram(v, bins=bins, range=(a, b))
    top = max(1, int(counts.max()))
    bw = width / bins
    hist_h = height - 10

    def x(t: float) -> float:
        return (t - a) / (b - a) * width

    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{hist_h - c / top * hist_h:.1f}" width="{bw - 0.5:.1f}" height="{c / top * hist_h:.1f}"/>'
        for i, c in enumerate(counts) if c)
    whisker = ""
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        whisker = f'<line class="ci" x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{height - 4}" y2="{height - 4}"/>'
    zero = f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="0" y2="{height}"/>' if signed else ""
    return (
        f'<svg class="dist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="distribution over the model\'s {v.size} heads; range {a:.3g} to {b:.3g}">'
        f'<g class="bars">{bars}</g>{zero}{whisker}'
        f'<circle class="me" cx="{x(value):.1f}" cy="{height - 4}" r="3.2"/></svg>'
    )


def _runs(levels: np.ndarray) -> dict[int, list[str]]:
    """Path segments per quantised level, merging horizontal runs. levels: [q, k] ints (0 = empty)."""
    out: dict[int, list[str]] = {}
    for i in range(levels.shape[0]):
        j = 0
        while j < levels.shape[1]:
            lev = int(levels[i, j])
            k = j
            while k + 1 < levels.shape[1] and levels[i, k + 1] == lev:
                k += 1
            if lev:
                out.setdefault(lev, []).append(f"M{j} {i}h{k - j + 1}v1h-{k - j + 1}z")
            j = k + 1
    return out


def pattern_svg(tokens: list[str], pattern: list[list[float]], title: str) -> str:
    """An attention pattern [query, key] as an inline SVG heatmap (quantised to PATTERN_LEVELS shades).

    Rows are query positions, columns key positions, both labelled with the tokens; the first
    PATTERN_MAX_TOKENS tokens are shown.
    """
    p = np.asarray(pattern, dtype=float)
    if p.ndim != 2 or p.size == 0:
        return ""
    n = min(p.shape[0], p.shape[1], PATTERN_MAX_TOKENS)
    p = np.nan_to_num(p[:n, :n])
    toks = [str(t) for t in tokens[:n]] + [""] * max(0, n - len(tokens))
    levels = np.where(p >= PATTERN_MIN, np.ceil(np.clip(p, 0, 1) * PATTERN_LEVELS), 0).astype(int)
    cell = 12 if n <= 24 else 9
    label_w = 7 * min(10, max((len(t) for t in toks), default=1)) + 8
    size = n * cell
    paths = "".join(
        f'<path fill-opacity="{lev / PATTERN_LEVELS:.3f}" d="{"".join(segs)}"/>'
        for lev, segs in sorted(_runs(levels).items()))
    fs = 10 if cell >= 12 else 8
    ylab = "".join(
        f'<text x="{label_w - 4}" y="{(i + 0.75) * cell:.1f}" text-anchor="end">{escape(t[:10])}</text>'
        for i, t in enumerate(toks))
    xlab = "".join(
        f'<text transform="translate({label_w + (j + 0.7) * cell:.1f},{size + 4}) rotate(60)">{escape(t[:10])}</text>'
        for j, t in enumerate(toks))
    w, h = max(label_w + size + 8, label_w + PATTERN_LEVELS * 14 + 110), size + label_w + 4
    legend = (f'<g class="legend" transform="translate({label_w},{h + 4})">'
              + "".join(f'<rect x="{i * 14}" y="0" width="14" height="8" fill-opacity="{(i + 1) / PATTERN_LEVELS:.3f}"/>'
                        for i in range(PATTERN_LEVELS))
              + f'<text x="0" y="19">{PATTERN_MIN:g}</text><text x="{PATTERN_LEVELS * 14}" y="19" text-anchor="end">1.0</text>'
              + f'<text x="{PATTERN_LEVELS * 14 + 6}" y="8">attention weight</text></g>')
    return (
        f'<svg class="pattern" viewBox="0 0 {w} {h + 24}" width="{w}" height="{h + 24}" role="img" '
        f'aria-label="{escape(title)}: rows are query tokens, columns key tokens" font-size="{fs}">'
        f'<title>{escape(title)}</title>'
        f'<rect class="frame" x="{label_w}" y="0" width="{size}" height="{size}"/>'
        f'<g class="cells" transform="translate({label_w},0) scale({cell})">{paths}</g>'
        f'<g class="ylab">{ylab}</g><g class="xlab">{xlab}</g>{legend}</svg>'
    )


def validation_svg(groups: list[dict], color: str, title: str) -> str:
    """A strip plot of one role's causal validation on one signature, one row per labelled group.

    groups: [{"name": "all", "k": 8, "effect": 0.79, "lo": 0.7, "hi": 0.85, "random": [0.05, ...]}] (fractions of
    the clean signature removed). Grey dots: the matched random sets; coloured dot + whisker: the labelled
    group and its 95% CI; dashed line: 0 (nothing removed). Returns an inline <svg>.
    """
    width, left, right, row_h, top = 460, 92, 16, 22, 18
    values = [0.0, 1.0] + [v for g in groups for v in (g["effect"], g["lo"], g["hi"], *g["random"]) if v is not None and math.isfinite(v)]
    lo_x, hi_x = min(values), max(values)
    span = hi_x - lo_x or 1.0

    def x(v: float) -> float:
        return left + (v - lo_x) / span * (width - left - right)

    height = top + row_h * len(groups) + 24
    parts = [f'<svg class="validation" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top - 8}" y2="{height - 20}"/>']
    for i, g in enumerate(groups):
        y = top + row_h * i + row_h / 2
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(g["name"])} ({g["k"]})</text>')
        for r in g["random"]:
            parts.append(f'<circle class="random" cx="{x(r):.1f}" cy="{y:.1f}" r="3"><title>random set: {fmt.percent(r)}</title></circle>')
        if g["lo"] is not None and g["hi"] is not None:
            parts.append(f'<line class="ci" style="stroke:{color}" x1="{x(g["lo"]):.1f}" x2="{x(g["hi"]):.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<circle class="me" style="fill:{color}" cx="{x(g["effect"]):.1f}" cy="{y:.1f}" r="5">'
                     f'<title>labelled heads: {fmt.percent(g["effect"])} [{fmt.percent(g["lo"])}, {fmt.percent(g["hi"])}]</title></circle>')
    for tick in (0.0, 0.5, 1.0):
        if lo_x <= tick <= hi_x:
            parts.append(f'<text class="tick" x="{x(tick):.1f}" y="{height - 6}" text-anchor="middle">{tick:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter_trace(data: dict, x: str, y: str) -> dict:
    """One Plotly scatter trace of every head: metric `x` against metric `y` (values from pages.scatter_data, in the
    units shown), coloured by the head's first role, each point carrying its head page's relative URL. site.js
    builds the same trace when the reader picks other axes (keep the two in step)."""
    return {"type": "scatter", "mode": "markers", "x": data["values"][x], "y": data["values"][y], "text": [f"{lab} · {r}" for lab, r in zip(data["label"], data["roles"])],
            "customdata": data["url"],
            "marker": {"size": 9, "color": data["colour"], "line": {"width": 1, "color": "#333"}},
            "hovertemplate": "%{text}<br>x: %{x}<br>y: %{y}<extra>click: open head</extra>"}


def _axis_title(data: dict, name: str) -> str:
    m = next(d for d in data["metrics"] if d["name"] == name)
    return f"{m['label']} ({m['unit']})" if m["unit"] else m["label"]


def scatter_html(data: dict, div_id: str) -> str:
    """The all-heads scatter as a lazy Plotly figure (drawn near the viewport like the heatmaps; a click opens the
    head). data: pages.scatter_data."""
    x, y = data["x"], data["y"]
    fig = go.Figure(scatter_trace(data, x, y))
    fig.update_layout(
        margin={"l": 60, "r": 10, "t": 10, "b": 50}, height=420,
        xaxis={"title": {"text": _axis_title(data, x)}, "zeroline": True},
        yaxis={"title": {"text": _axis_title(data, y)}, "zeroline": True},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#eef0f3", hovermode="closest",
    )
    return lazy_plot_html(fig, div_id, height=420)
