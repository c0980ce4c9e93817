"""Contexts of the cross-model pages (issue 20): compare, mosaic, universality (seeds), checkpoint timelines, and
the extra blocks cross-model data adds to the index and to head pages. Data only from SiteData (wiki.context)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from headwiki.wiki import crossmodel as cm
from headwiki.wiki import format as fmt
from headwiki.wiki import urls
from headwiki.wiki.context import ModelData, SiteData
from headwiki.wiki.figures import heatmap_html, lazy_plot_html
from headwiki.wiki.pages import _grid, _head_ref, all_roles, common, fmt_value, role_color, role_label, role_score_metric

TOP_PAIRS = 20


def cross_links(site: SiteData) -> list[tuple[str, str]]:
    """(title, site path) of every cross-model page this database has; [] for a single model."""
    if len(site.models) < 2:
        return []
    out = []
    if cm.structure_groups(site):
        out.append(("Seeds and universality: which heads recur", urls.UNIVERSALITY))
    out += [("Compare models: roles by depth, prevalence, similar heads", urls.COMPARE),
            ("Mosaic: one metric across every model", urls.MOSAIC)]
    out += [(f"Training timeline of {s}", urls.series_page(s)) for s in cm.checkpoint_series(site)]
    out += [(f"Diff {d['a']} → {d['b']}", urls.diff_page(d["a"], d["b"])) for d in site.cache.get("diffs", [])]
    return out


def role_metrics(site: SiteData) -> list[tuple[str, str]]:
    """(role, its score metric) for detector-family roles whose metric every model has."""
    shared = set(cm.shared_metrics(site))
    out = []
    for role in site.roles:
        metric, _ = role_score_metric(site.models[0], role)
        if metric in shared:
            out.append((role, metric))
    return out


def compare_context(site: SiteData) -> dict[str, Any]:
    page = urls.COMPARE
    roles = all_roles(site)
    prevalence = [{"id": r["model"].model_id, "url": urls.model_page(r["model"].slug), "n_heads": r["n_heads"],
                   "cells": [f"{c} ({fmt.number(100 * f, 0)}%)" if c else "0" for c, f in r["cells"]]}
                  for r in cm.role_prevalence(site, roles)]
    depth = []
    for role in roles:
        rows = []
        for m in site.models:
            held = cm.role_depths(m, role)
            rows.append({"id": m.model_id, "url": urls.model_page(m.slug),
                         "svg": cm.depth_strip_svg([d for *_, d in held], role_color(role, site.roles)),
                         "heads": [{"label": lab, "url": urls.head_page(m.slug, L, H), "depth": f"{d:.2f}"} for lab, L, H, d in held]})
        depth.append({"role": role, "rows": rows})
    names = cm.shared_metrics(site)
    pairs = []
    for p in cm.similar_across_models(site, names, TOP_PAIRS):
        ma, mb = site.models[p.a], site.models[p.b]
        ra, rb = ma.heads.iloc[p.i].to_dict(), mb.heads.iloc[p.j].to_dict()
        pairs.append({"a": _head_ref(ma, ra, None), "b": _head_ref(mb, rb, None), "cosine": f"{p.cosine:.3f}"})
    return {**common(page, "Compare models — headwiki", site), "roles": roles, "prevalence": prevalence,
            "depth": depth, "pairs": pairs, "profile": [site.models[0].metric(n).label for n in names],
            "links": cross_links(site)}


def mosaic_context(site: SiteData) -> dict[str, Any]:
    page = urls.MOSAIC
    sections = []
    for role, metric in role_metrics(site):
        tiles = []
        for m in site.models:
            doc = m.metric(metric)
            links = [[urls.relative(page, urls.head_page(m.slug, L, H)) for H in range(m.n_heads)] for L in range(m.n_layers)]
            lo = _grid(m, f"{metric}_lo") if doc.has_ci else None
            hi = _grid(m, f"{metric}_hi") if doc.has_ci else None
            tiles.append({"id": m.model_id, "url": urls.model_page(m.slug),
                          "html": heatmap_html(doc, _grid(m, metric), lo, hi, links, div_id=f"mosaic-{metric}-{m.slug}")})
        sections.append({"role": role, "metric": metric, "label": site.models[0].metric(metric).label, "tiles": tiles})
    return {**common(page, "Mosaic — headwiki", site), "sections": sections, "links": cross_links(site)}


def universality_context(site: SiteData) -> dict[str, Any]:
    page = urls.UNIVERSALITY
    groups = []
    for models in cm.structure_groups(site):
        sub = SiteData(site.db_name, site.meta, models, site.runs)
        pairs = role_metrics(sub)
        names = [m for _, m in pairs]
        ref = models[0]
        ref_vec = np.nan_to_num(cm.profile(ref, names))
        matches: dict[str, list[tuple[int, float]]] = {}
        method = ""
        for other in models[1:]:
            sim = cm.cosine_matrix(ref_vec, np.nan_to_num(cm.profile(other, names)))
            pairing, method = cm.match_heads(sim)
            matches[other.model_id] = [(j, float(sim[i, j])) for i, j in pairing]
        ref_rows = ref.heads.to_dict("records")
        table = []
        for i, row in enumerate(ref_rows):
            cells = []
            any_role = bool(ref.roles_of(row))
            for other in models[1:]:
                j, cos = matches[other.model_id][i]
                orow = other.heads.iloc[j].to_dict()
                any_role = any_role or bool(other.roles_of(orow))
                cells.append({**_head_ref(other, orow, None), "cosine": f"{cos:.2f}",
                              "same_role": sorted(set(ref.roles_of(row)) & set(other.roles_of(orow)))})
            if any_role:
                table.append({"ref": _head_ref(ref, row, None), "cells": cells,
                              "scores": ", ".join(f"{role_label(r, site.roles)} {fmt_value(row.get(m), ref.metric(m))}" for r, m in pairs)})
        recur = []
        for role in all_roles(sub):
            counts = [cm.role_prevalence(SiteData(site.db_name, site.meta, [m], site.runs), [role])[0]["cells"][0][0] for m in models]
            matched = 0
            for other in models[1:]:
                matched += sum(1 for i, (j, _) in enumerate(matches[other.model_id])
                               if role in ref.roles_of(ref_rows[i]) and role in other.roles_of(other.heads.iloc[j].to_dict()))
            recur.append({"role": role, "counts": counts, "n_with": sum(1 for c in counts if c),
                          "matched": matched, "ref_count": counts[0] * (len(models) - 1)})
        groups.append({"shape": f"{ref.n_layers} layers × {ref.n_heads} heads",
                       "models": [{"id": m.model_id, "url": urls.model_page(m.slug), "seed": cm.seed_of(m)} for m in models],
                       "ref": ref.model_id, "method": method, "metrics": [ref.metric(n).label for n in names],
                       "table": table, "recur": recur})
    return {**common(page, "Seeds and universality — headwiki", site), "groups": groups, "links": cross_links(site)}


LOG_STEPS_FROM = 10  # a series spanning this factor of steps or more gets a log step axis (early change stays visible)


def step_axis(steps: list[int]) -> dict[str, Any]:
    """The timeline's x axis: log-scaled when the (positive) steps span >= LOG_STEPS_FROM x, else linear."""
    positive = [s for s in steps if s > 0]
    if len(positive) == len(steps) and positive and max(positive) >= LOG_STEPS_FROM * min(positive):
        return {"title": {"text": "training step (log scale)"}, "type": "log"}
    return {"title": {"text": "training step"}}


def timeline_context(site: SiteData, series: str, models: list[ModelData]) -> dict[str, Any]:
    page = urls.series_page(series)
    last = models[-1]
    steps = [cm.step_of(m) or 0 for m in models]
    xaxis = step_axis(steps)
    figures = []
    for doc in [d for d in last.metrics if d.heatmap]:
        fig = go.Figure()
        best = []
        values = _series_values(site, series, models, doc.name)
        for L in range(last.n_layers):
            for H in range(last.n_heads):
                pts = cm.head_series(models, doc.name, L, H, values)
                if pts:
                    fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines", name=f"L{L}H{H}",
                                             line={"width": 1}, opacity=0.45, hovertemplate=f"L{L}H{H} step %{{x}}: %{{y:.3f}}<extra></extra>"))
        for m in models:
            vals = pd.to_numeric(m.heads[doc.name], errors="coerce") if doc.name in m.heads.columns else pd.Series(dtype=float)
            best.append(float(vals.max()) if vals.notna().any() else None)
        fig.add_trace(go.Scatter(x=steps, y=best, mode="lines+markers", name="max over heads", line={"width": 3, "color": "#111"}))
        fig.update_layout(height=300, margin={"l": 50, "r": 10, "t": 10, "b": 40}, showlegend=False,
                          xaxis=xaxis, yaxis={"title": {"text": doc.label}},
                          paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#eef0f3")
        figures.append({"doc": doc, "html": lazy_plot_html(fig, f"timeline-{doc.name}", 300),
                        "table": [(s, fmt_value(b, doc)) for s, b in zip(steps, best)]})
    roles = all_roles(SiteData(site.db_name, site.meta, models, site.runs))
    steps_rows = [{"step": cm.step_of(m), "id": m.model_id, "url": urls.model_page(m.slug),
                   "counts": [cm.role_prevalence(SiteData(site.db_name, site.meta, [m], site.runs), [r])[0]["cells"][0][0] for r in roles]}
                  for m in models]
    return {**common(page, f"Timeline {series} — headwiki", site), "series": series, "figures": figures,
            "roles": roles, "steps": steps_rows, "links": cross_links(site)}


def _series_values(site: SiteData, series: str, models: list[ModelData], metric: str) -> tuple[list[int], np.ndarray]:
    """cm.series_values, computed once per render for each (series, metric)."""
    key = ("series_values", series, metric)
    if key not in site.cache:
        site.cache[key] = cm.series_values(models, metric)
    return site.cache[key]


def head_timeline(site: SiteData, model: ModelData, layer: int, head: int) -> dict[str, Any]:
    """The extra context of a head page: the head's role metrics over its checkpoint series ({} keys empty when none)."""
    series = cm.series_of(model)
    members = cm.checkpoint_series(site).get(series, []) if series else []
    rows = []
    if members:
        for doc in [d for d in model.metrics if d.heatmap and d.kind == "detector"]:
            pts = cm.head_series(members, doc.name, layer, head, _series_values(site, series, members, doc.name))
            svg = cm.sparkline_svg(pts, cm.step_of(model))
            if svg:
                rows.append({"label": doc.label, "svg": svg,
                             "text": " → ".join(f"{fmt_value(v, doc)} (step {s})" for s, v in (pts[0], pts[-1]))})
    return {"timeline": rows, "timeline_url": urls.series_page(series) if members else ""}


def _diff_doc(name: str, label: str, description: str, signed: bool, unit: str = "") -> Any:
    from headwiki.wiki.context import metric_doc

    return metric_doc(name, {"label": label, "description": description, "family": "diff", "unit": unit,
                             "direction": "signed" if signed else "up", "heatmap": True}, has_ci=False, has_q=False)


def _diff_grid(frame: pd.DataFrame, col: str, n_layers: int, n_heads: int) -> np.ndarray:
    z = np.full((n_layers, n_heads), np.nan)
    for r in frame.to_dict("records"):
        if r.get(col) is not None and not pd.isna(r[col]) and r["layer"] < n_layers and r["head"] < n_heads:
            z[int(r["layer"]), int(r["head"])] = float(r[col])
    return z


MOVERS_PER_METRIC = 3


def _diff_text_name(summary: dict[str, Any]) -> str:
    """What text a stored diff read, in words (params.text; diffs written before it existed read the English passages)."""
    import json

    try:
        name = json.loads(summary.get("params") or "{}").get("text") or "english_passages"
    except (TypeError, ValueError):
        name = "english_passages"
    return {"english_passages": "the shipped English passages"}.get(name, name.replace("toy_corpus", "the toy corpus "))


def diff_context(site: SiteData, diff: dict[str, Any]) -> dict[str, Any]:
    """The diff page of B vs A (tables written by `headwiki diff`)."""
    from dataclasses import replace

    page = urls.diff_page(diff["a"], diff["b"])
    by_id = {m.model_id: m for m in site.models}
    ma, mb = by_id.get(diff["a"]), by_id.get(diff["b"])
    s = diff["summary"]
    heads, metrics = diff["heads"], diff["metrics"]
    n_layers = int(heads["layer"].max()) + 1 if len(heads) else (int(metrics["layer"].max()) + 1 if len(metrics) else 0)
    n_heads = int(heads["head"].max()) + 1 if len(heads) else (int(metrics["head"].max()) + 1 if len(metrics) else 0)
    target = mb or ma

    def links() -> list[list[str]]:
        return [[urls.relative(page, urls.head_page(target.slug, L, H)) if target else "" for H in range(n_heads)]
                for L in range(n_layers)]

    heatmaps = []
    for col, label, text in (("qk_rel", "ΔW_QK relative", "||W_QK(B) − W_QK(A)||_F / ||W_QK(A)||_F"),
                             ("ov_rel", "ΔW_OV relative", "||W_OV(B) − W_OV(A)||_F / ||W_OV(A)||_F"),
                             ("act_rel", "Δ activation relative", "sqrt(Σ||z_B − z_A||²) / sqrt(Σ||z_A||²) over every token of the passages")):
        if len(heads) and heads[col].notna().any():
            doc = _diff_doc(f"diff-{col}", label, text, False)
            heatmaps.append({"doc": doc, "html": heatmap_html(doc, _diff_grid(heads, col, n_layers, n_heads), None, None, links(),
                                                              div_id=f"diff-{col}")})
    if len(heads) and "dla_delta" in heads and heads["dla_delta"].notna().any():
        doc = _diff_doc("diff-dla_delta", "Δ direct logit attribution", "B − A: each head's direct logit attribution to the "
                        "actual next token (minus the mean logit, final norm's scale frozen), mean over positions and passages; "
                        "95% CI by paired bootstrap over passages", True, "nats")
        lo, hi = (_diff_grid(heads, c, n_layers, n_heads) for c in ("dla_delta_lo", "dla_delta_hi"))
        heatmaps.append({"doc": doc, "html": heatmap_html(doc, _diff_grid(heads, "dla_delta", n_layers, n_heads), lo, hi,
                                                          links(), div_id="diff-dla_delta")})
    patched = []
    if len(heads) and "patch_share" in heads:
        for r in heads[heads["patch_gain"].notna()].sort_values("patch_gain", ascending=False).to_dict("records"):
            patched.append({"label": r["label"], "url": urls.head_page(target.slug, r["layer"], r["head"]) if target else "",
                            "dla": fmt.estimate(r["dla_delta"], r["dla_delta_lo"], r["dla_delta_hi"], "nats", True),
                            "gain": fmt.value(r["patch_gain"], "nats", True), "share": fmt.percent(r["patch_share"])})
    movers = []
    source = ma or mb
    for metric, part in (metrics.groupby("metric", sort=False) if len(metrics) else []):
        base = source.metric(metric) if source else None
        if base is None or not base.heatmap:
            continue
        doc = replace(base, direction="signed", label=f"Δ {base.label}", role_kind="delta")
        lo = _diff_grid(part, "delta_lo", n_layers, n_heads) if part["delta_lo"].notna().any() else None
        hi = _diff_grid(part, "delta_hi", n_layers, n_heads) if part["delta_hi"].notna().any() else None
        heatmaps.append({"doc": doc, "html": heatmap_html(doc, _diff_grid(part, "delta", n_layers, n_heads), lo, hi, links(),
                                                          div_id=f"diff-m-{metric}")})
        top = part.reindex(part["delta"].abs().sort_values(ascending=False, kind="stable").index).head(MOVERS_PER_METRIC)
        for r in top.to_dict("records"):
            movers.append({"metric": base.label, "label": r["label"],
                           "url": urls.head_page(target.slug, r["layer"], r["head"]) if target else "",
                           "a": fmt_value(r["value_a"], base), "b": fmt_value(r["value_b"], base),
                           "delta": fmt.estimate(r["delta"], r["delta_lo"], r["delta_hi"], fmt.metric_unit(base), True)
                           if not pd.isna(r["delta_lo"]) else fmt.value(r["delta"], fmt.metric_unit(base), True),
                           "excludes_zero": bool(not pd.isna(r["delta_lo"]) and (r["delta_lo"] > 0 or r["delta_hi"] < 0))})
    tokens = [{"rank": int(r["rank"]), "passage": int(r["passage"]), "position": int(r["position"]), "token": r["token"],
               "context": r["context"], "a": f"{r['logp_a']:.3f}", "b": f"{r['logp_b']:.3f}", "delta": f"{r['delta']:+.3f}"}
              for r in diff["tokens"].to_dict("records")]
    return {**common(page, f"Diff {diff['a']} → {diff['b']} — headwiki", site), "d": diff, "s": s,
            "model_urls": {k: urls.model_page(m.slug) for k, m in by_id.items() if k in (diff["a"], diff["b"])},
            "mean": fmt.estimate(s["mean_delta"], s["mean_delta_lo"], s["mean_delta_hi"], "nats", True),
            "heatmaps": heatmaps, "movers": movers, "tokens": tokens, "patched": patched,
            "text_name": _diff_text_name(s),
            "baselines": diff["baselines"].to_dict("records") if len(diff["baselines"]) else [], "links": cross_links(site)}


def cross_model_sql(site: SiteData) -> list[tuple[str, str]]:
    """(title, SQL) examples for cross-model questions, only those this database can answer (>= 2 models, a checkpoint
    series, a stored diff); the SQL page runs each one at render time. Written, like every example there, in SQL that
    DuckDB and the page's SQLite console both run with the same rows (explicit tie-breaking ORDER BYs)."""
    if len(site.models) < 2 and not site.cache.get("diffs"):
        return []
    ex: list[tuple[str, str]] = []
    pairs = role_metrics(site) if site.models else []
    if pairs and len(site.models) >= 2:
        role, m = pairs[0]
        ex.append((f"Strongest {role_label(role, site.roles)} head of every model, at its relative depth",
                   f"SELECT h.model_id, h.label, round(h.{m}, 3) AS {m}, round((h.layer + 0.5) / m.n_layers, 2) AS relative_depth "
                   f"FROM heads h JOIN models m ON m.model_id = h.model_id "
                   f"WHERE h.{m} = (SELECT max(x.{m}) FROM heads x WHERE x.model_id = h.model_id) "
                   f"ORDER BY {m} DESC, h.model_id, h.layer, h.head"))
        if cm.checkpoint_series(site):
            ex.append((f"{role_label(role, site.roles).capitalize()} score over training steps (checkpoint series)",
                       f"SELECT m.series, m.step, round(max(h.{m}), 3) AS max_{m} FROM heads h "
                       f"JOIN models m ON m.model_id = h.model_id WHERE m.series IS NOT NULL "
                       f"GROUP BY m.series, m.step ORDER BY m.series, m.step"))
    if site.cache.get("diffs"):
        ex.append(("Model diffs: heads whose weights moved most (relative Frobenius norm of ΔW_QK, ΔW_OV)",
                   "SELECT model_a, model_b, label, round(qk_rel, 3) AS qk_rel, round(ov_rel, 3) AS ov_rel, "
                   "round(act_rel, 3) AS act_rel FROM diff_heads ORDER BY qk_rel DESC, model_a, model_b, layer, head LIMIT 10"))
        ex.append(("Model diffs: per-head metric changes whose 95% CI excludes zero",
                   "SELECT model_a, model_b, label, metric, round(delta, 3) AS delta, round(delta_lo, 3) AS lo, "
                   "round(delta_hi, 3) AS hi FROM diff_head_metrics WHERE delta_lo > 0 OR delta_hi < 0 "
                   "ORDER BY abs(delta) DESC, model_a, model_b, metric, layer, head LIMIT 10"))
        ex.append(("Model diffs: tokens where the two models' log-probs differ most",
                   "SELECT model_a, model_b, rank, token, context, round(delta, 3) AS delta FROM diff_tokens "
                   "ORDER BY model_a, model_b, rank LIMIT 10"))
    return ex
