"""The circuit view: composition edges between heads (table head_edges) chosen, listed and drawn as a static SVG.

Which edges are drawn: the CIRCUIT_MAX_EDGES strongest by z (the score in sds of the random-matrix baseline) among
those with z >= CIRCUIT_MIN_Z; the page states both numbers. No JavaScript: nodes are links to head pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from typing import Any

import pandas as pd

CIRCUIT_MIN_Z = 5.0
CIRCUIT_MAX_EDGES = 24
PARTNERS = 5
KIND_COLOURS = {"q": "#1f77b4", "k": "#d62728", "v": "#2ca02c"}
KIND_WORDS = {"q": "Q-composition (the upstream head's output feeds the downstream head's queries)",
              "k": "K-composition (… its keys)", "v": "V-composition (… its values)"}


def strongest_edges(edges: pd.DataFrame, min_z: float = CIRCUIT_MIN_Z, max_edges: int = CIRCUIT_MAX_EDGES) -> pd.DataFrame:
    """The edges the circuit view draws: z >= min_z, the max_edges largest z (ties by kind and heads), strongest first."""
    if edges is None or edges.empty:
        return pd.DataFrame()
    keep = edges[edges["z"] >= min_z]
    order = ["z", "kind", "src_layer", "src_head", "dst_layer", "dst_head"]
    return keep.sort_values(order, ascending=[False, True, True, True, True, True]).head(max_edges).reset_index(drop=True)


def partners(edges: pd.DataFrame, n: int = PARTNERS) -> dict[tuple[int, int], dict[str, list[dict[str, Any]]]]:
    """Per head (layer, head): its n strongest upstream partners (edges into it) and downstream partners (edges out of
    it) by z, any kind: {"up": [{kind, layer, head, score, z}], "down": [...]}."""
    out: dict[tuple[int, int], dict[str, list[dict[str, Any]]]] = {}
    if edges is None or edges.empty:
        return out
    ranked = edges.sort_values(["z", "kind"], ascending=[False, True])
    for side, me, other in (("up", "dst", "src"), ("down", "src", "dst")):
        top = ranked.groupby([f"{me}_layer", f"{me}_head"], sort=False).head(n)
        for r in top.itertuples(index=False):
            key = (int(getattr(r, f"{me}_layer")), int(getattr(r, f"{me}_head")))
            out.setdefault(key, {"up": [], "down": []})[side].append({
                "kind": str(r.kind), "layer": int(getattr(r, f"{other}_layer")), "head": int(getattr(r, f"{other}_head")),
                "score": float(r.score), "z": float(r.z)})
    return out


def circuit_svg(n_layers: int, n_heads: int, edges: pd.DataFrame, link: Callable[[int, int], str],
                roles: Mapping[tuple[int, int], list[str]], colour: Callable[[str], str], role_word: Callable[[str], str]) -> str:
    """Heads as nodes (rows = layers, layer 0 at the top; columns = heads), `edges` (rows of head_edges) as curves
    from the upstream to the downstream head, coloured by kind, width by z. Every node is a link (`link(L, H)`, a
    relative URL) labelled with the head and its roles. Returns an inline <svg>."""
    col_w, row_h, left, top = 92, 96, 44, 30
    width, height = left + n_heads * col_w + 10, top + n_layers * row_h

    def xy(layer: int, head: int) -> tuple[float, float]:
        return left + head * col_w + col_w / 2, top + layer * row_h + 18

    zmax = float(edges["z"].max()) if len(edges) else 1.0
    parts = [f'<svg class="circuit" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="composition circuit: {len(edges)} strongest edges between {n_layers * n_heads} heads">']
    for layer in range(n_layers):
        parts.append(f'<text class="layer" x="4" y="{top + layer * row_h + 22}">L{layer}</text>')
    parts.append('<g class="edges">')
    for e in edges.itertuples(index=False):
        (x1, y1), (x2, y2) = xy(int(e.src_layer), int(e.src_head)), xy(int(e.dst_layer), int(e.dst_head))
        bend = (y2 - y1) * 0.5
        w = 1.0 + 4.0 * max(0.0, float(e.z)) / (zmax or 1.0)
        src, dst = f"L{int(e.src_layer)}H{int(e.src_head)}", f"L{int(e.dst_layer)}H{int(e.dst_head)}"
        parts.append(
            f'<path class="edge edge-{escape(str(e.kind))}" data-from="{src}" data-to="{dst}" data-kind="{escape(str(e.kind))}" '
            f'd="M{x1:.0f} {y1 + 40:.0f} C{x1:.0f} {y1 + 40 + bend:.0f} {x2:.0f} {y2 - bend:.0f} {x2:.0f} {y2 - 12:.0f}" '
            f'stroke="{KIND_COLOURS.get(str(e.kind), "#666")}" stroke-width="{w:.1f}" fill="none" stroke-opacity="0.7">'
            f'<title>{src} → {dst}: {str(e.kind).upper()}-composition {e.score:.3f} (z = {e.z:.1f})</title></path>')
    parts.append('</g><g class="nodes">')
    for layer in range(n_layers):
        for head in range(n_heads):
            x, y = xy(layer, head)
            held = roles.get((layer, head), [])
            fill = colour(held[0]) if held else "#ffffff"
            words = ", ".join(role_word(r) for r in held)
            label = f"L{layer}H{head}"
            parts.append(
                f'<a href="{escape(link(layer, head))}" class="node" data-head="{label}"><title>{label}'
                f'{": " + escape(words) if words else ""}</title>'
                f'<circle cx="{x:.0f}" cy="{y:.0f}" r="10" fill="{escape(fill)}" stroke="#333"/>'
                f'<text x="{x:.0f}" y="{y + 24:.0f}" text-anchor="middle">{label}</text>'
                + (f'<text class="role" x="{x:.0f}" y="{y + 36:.0f}" text-anchor="middle">{escape(words[:16])}</text>' if words else "")
                + "</a>")
    parts.append("</g></svg>")
    return "".join(parts)
