"""Page contexts: turn the database (SiteData) into the plain dicts each template renders.

No I/O here except the read-only SQL-example check in :func:`sql_context`; the renderer writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from headwiki.kv_group import METRIC as KV_GROUP
from headwiki.wiki import urls
from headwiki.wiki.context import MetricDoc, ModelData, RoleDoc, SiteData, parse_json
from headwiki.wiki.crossref import as_float, ci_is_noisy, cross_reference, ordinal, percentile, rank_desc
from headwiki.wiki.figures import distribution_svg, heatmap_html, is_signed, pattern_svg, validation_svg
from headwiki.wiki.similarity import most_similar

_FALLBACK = ("#8c510a", "#01665e", "#c51b7d", "#4d9221", "#542788", "#35978f")
TOP_K = 5


def role_color(role: str, roles: Mapping[str, RoleDoc] | None = None) -> str:
    """The role's declared colour; a stable fallback colour for a role nobody declared."""
    declared = (roles or {}).get(role)
    if declared is not None and declared.colour:
        return declared.colour
    return _FALLBACK[int(hashlib.sha256(role.encode()).hexdigest(), 16) % len(_FALLBACK)]


def role_label(role: str, roles: Mapping[str, RoleDoc] | None = None) -> str:
    declared = (roles or {}).get(role)
    return declared.label if declared is not None and declared.label else role.replace("_", "-")


_num = as_float


def fmt_number(v: Any, spec: str = ".3f", scale: float = 1.0) -> str:
    """Template filter: `x|num(".3f")`, '–' for NULL/NaN."""
    f = _num(v)
    return "–" if f is None else format(f * scale, spec)


def fmt_q(q: Any) -> str:
    """A q-value for display: two significant figures, '< 0.001' below that."""
    f = _num(q)
    return "–" if f is None else ("< 0.001" if f < 0.001 else f"{f:.2g}")


def fmt_value(v: Any, doc: MetricDoc | None = None) -> str:
    """A metric value for display (accuracy deltas in signed points)."""
    f = _num(v)
    if f is None:
        return "–"
    if doc is not None and doc.is_accuracy_delta:
        return f"{f * 100:+.1f} pts"
    if doc is not None and doc.integer:
        return f"{int(round(f))}"
    if doc is not None and "delta" in doc.name:
        return f"{f:+.3f}"
    return f"{f:.3f}"


def fmt_ci(lo: Any, hi: Any, doc: MetricDoc | None = None) -> str:
    a, b = _num(lo), _num(hi)
    if a is None or b is None:
        return ""
    if doc is not None and doc.is_accuracy_delta:
        return f"[{a * 100:+.1f}, {b * 100:+.1f}]"
    return f"[{a:.3f}, {b:.3f}]"


PRIMARY_ABLATIONS = ("zero", "mean", "resample")  # where a role's metric is per ablation, the one its rule read first


def role_score_metric(model: ModelData, role: str) -> tuple[str | None, bool]:
    """(metric column that scores a role, sort by magnitude?) — the declared metric of the role: a detector score
    (largest first), or a per-ablation effect read at the primary ablation present (by magnitude)."""
    declared = model.roles.get(role)
    if declared is None:
        return None, False
    if model.metric(declared.metric) is not None:
        return declared.metric, model.metric(declared.metric).direction == "signed"  # type: ignore[union-attr]
    for a in PRIMARY_ABLATIONS:
        if model.metric(f"{declared.metric}_{a}") is not None:
            return f"{declared.metric}_{a}", True
    return None, False


def _grid(model: ModelData, col: str) -> np.ndarray:
    z = np.full((model.n_layers, model.n_heads), np.nan)
    if col in model.heads.columns:
        vals = pd.to_numeric(model.heads[col], errors="coerce").to_numpy(dtype=float)
        z[model.heads["layer"].to_numpy(), model.heads["head"].to_numpy()] = vals
    return z


def common(page: str, title: str, site: SiteData) -> dict[str, Any]:
    """Context shared by all pages: where the page is and how to link from it."""
    return {
        "page": page,
        "title": title,
        "root": urls.root_prefix(page),
        "u": lambda target: urls.relative(page, target),
        "nav_models": [(m.model_id, urls.model_page(m.slug)) for m in site.models],
        "role_color": lambda role: role_color(role, site.roles),
        "role_pages": frozenset(all_roles(site)),
        "role_label": lambda role: role_label(role, site.roles),
        "urls": urls,
    }


def role_counts(model: ModelData) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in model.heads.to_dict("records"):
        for r in model.roles_of(row):
            counts[r] = counts.get(r, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (_role_order(model.roles, kv[0]), kv[0])))


def _role_order(roles: Mapping[str, RoleDoc], role: str) -> int:
    return roles[role].order if role in roles else 10**6


def all_roles(site: SiteData) -> list[str]:
    """Every role any head has, in display order (computed once per render)."""
    if "roles" not in site.cache:
        roles: set[str] = set()
        for m in site.models:
            roles.update(role_counts(m))
        site.cache["roles"] = sorted(roles, key=lambda r: (_role_order(site.roles, r), r))
    return site.cache["roles"]


def _last_run(model: ModelData) -> str:
    if model.runs is None or model.runs.empty or "finished_at" not in model.runs:
        return "–"
    ts = pd.to_datetime(model.runs["finished_at"]).max()
    return "–" if pd.isna(ts) else ts.strftime("%Y-%m-%d %H:%M UTC")


def index_context(site: SiteData) -> dict[str, Any]:
    page = urls.INDEX
    models = []
    for m in site.models:
        models.append({
            "id": m.model_id, "url": urls.model_page(m.slug), "info": m.info, "n_heads_total": len(m.heads),
            "roles": role_counts(m), "has_negation": m.has_negation, "built": _last_run(m),
            "passes": sorted(set(m.runs["pass_name"])) if len(m.runs) else [],
            "n_params": _fmt_int(m.info.get("n_params")),
        })
    return {**common(page, "headwiki", site), "models": models, "roles": all_roles(site),
            "search": True, "search_model": ""}


def _fmt_int(v: Any) -> str:
    f = _num(v)
    if f is None:
        return "–"
    f = int(f)
    for unit, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if f >= size:
            return f"{f / size:.3g}{unit}"
    return str(f)


def model_context(site: SiteData, model: ModelData) -> dict[str, Any]:
    page = urls.model_page(model.slug)
    heads = model.heads
    links = [[urls.relative(page, urls.head_page(model.slug, L, H)) for H in range(model.n_heads)]
             for L in range(model.n_layers)]
    heatmaps = []
    for doc in model.metrics:
        if not doc.heatmap:
            continue
        lo = _grid(model, f"{doc.name}_lo") if doc.has_ci else None
        hi = _grid(model, f"{doc.name}_hi") if doc.has_ci else None
        heatmaps.append({
            "doc": doc, "anchor": f"m-{doc.name}",
            "html": heatmap_html(doc, _grid(model, doc.name), lo, hi, links, div_id=f"heat-{doc.name}"),
        })
    rows = heads.to_dict("records")
    role_tables = []
    for role, count in role_counts(model).items():
        metric, by_mag = role_score_metric(model, role)
        doc = model.metric(metric) if metric else None
        members = [r for r in rows if role in model.roles_of(r)]
        members.sort(key=lambda r: _sort_score(r, metric, by_mag))
        role_tables.append({
            "role": role, "count": count, "metric": doc, "url": urls.role_page(role),
            "text": model.roles[role].text if role in model.roles else "",
            "heads": [_head_ref(model, r, doc) for r in members],
        })
    top = []
    for doc in model.metrics:
        if doc.kind != "detector" or not (doc.confound or doc.name in {r.metric for r in model.roles.values()}):
            continue  # the top heads of each role's score and of each metric the confound panel names
        ordered = sorted(rows, key=lambda r: _sort_score(r, doc.name, False))[:TOP_K]
        top.append({"doc": doc, "heads": [_head_ref(model, r, doc) for r in ordered]})
    return {
        **common(page, f"{model.model_id} — headwiki", site),
        "model": model, "info": model.info, "heatmaps": heatmaps, "role_tables": role_tables, "top": top,
        "metrics": model.metrics, "baselines": _records(model.baselines), "groups": _group_rows(model),
        "key_groups": _key_groups(model),
        "search": True, "search_model": model.model_id, "built": _last_run(model),
        "n_params": _fmt_int(model.info.get("n_params")),
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [] if frame is None or frame.empty else frame.to_dict("records")


def _group_rows(model: ModelData) -> list[dict[str, Any]]:
    out = []
    for g in _records(model.groups):
        g = dict(g)
        labels = [str(h) for h in (g.get("heads") if g.get("heads") is not None else [])]
        g["head_links"] = [(lab, _label_url(model, lab)) for lab in labels]
        out.append(g)
    return out


def _label_url(model: ModelData, label: str) -> str | None:
    """Head page of a label like 'L3H7' in this model, None if it is not one of its heads."""
    m = re.fullmatch(r"L(\d+)H(\d+)", label)
    if not m or int(m.group(1)) >= model.n_layers or int(m.group(2)) >= model.n_heads:
        return None
    return urls.head_page(model.slug, int(m.group(1)), int(m.group(2)))


def _sort_score(row: dict[str, Any], metric: str | None, by_magnitude: bool) -> tuple[float, int, int]:
    v = _num(row.get(metric)) if metric else None
    key = -math.inf if v is None else (abs(v) if by_magnitude else v)
    return (-key, int(row["layer"]), int(row["head"]))


def _head_ref(model: ModelData, row: dict[str, Any], doc: MetricDoc | None) -> dict[str, Any]:
    return {
        "label": row["label"], "model": model.model_id, "url": urls.head_page(model.slug, row["layer"], row["head"]),
        "value": fmt_value(row.get(doc.name), doc) if doc else "",
        "ci": fmt_ci(row.get(f"{doc.name}_lo"), row.get(f"{doc.name}_hi"), doc) if doc else "",
        "q": fmt_q(row.get(f"{doc.name}_q")) if doc and doc.has_q else "",
        "roles": model.roles_of(row),
    }


def head_contexts(site: SiteData, model: ModelData) -> Iterator[tuple[str, dict[str, Any]]]:
    """(page path, context) for every head of the model."""
    heads = model.heads
    rows = heads.to_dict("records")
    by_pos = {(int(r["layer"]), int(r["head"])): i for i, r in enumerate(rows)}
    profile_docs = [d for d in model.metrics if d.heatmap]
    profile = heads[[d.name for d in profile_docs]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float) \
        if profile_docs else np.zeros((len(rows), 0))
    columns = {d.name: pd.to_numeric(heads[d.name], errors="coerce").to_numpy(dtype=float) for d in model.metrics}
    moved = _moved_by_head(model)
    in_groups = _groups_by_head(model)
    templates = _templates_by_head(model)
    for i, row in enumerate(rows):
        L, H = int(row["layer"]), int(row["head"])
        page = urls.head_page(model.slug, L, H)
        metric_rows = []
        for doc in model.metrics:
            v = _num(row.get(doc.name))
            lo, hi = _num(row.get(f"{doc.name}_lo")), _num(row.get(f"{doc.name}_hi"))
            vals = columns[doc.name]
            metric_rows.append({
                "doc": doc, "value": fmt_value(v, doc), "ci": fmt_ci(lo, hi, doc),
                "noisy": v is not None and doc.has_ci and "delta" in doc.name and ci_is_noisy(v, lo, hi),
                "q": _num(row.get(f"{doc.name}_q")),
                "pct": None if v is None else percentile(vals, v),
                "rank": None if v is None else ordinal(rank_desc(vals, v)),
                "of": int(np.sum(~np.isnan(vals))),
                "svg": "" if v is None else distribution_svg(vals, v, lo, hi, is_signed(doc)),
            })
        roles = model.roles_of(row)
        statements = cross_reference(row, heads, model.metrics, model.roles, roles)
        linked_roles = sorted({r for s in statements for r in s.roles} | set(roles),
                              key=lambda r: (_role_order(model.roles, r), r))
        same_role = {}
        for r in linked_roles:
            metric, by_mag = role_score_metric(model, r)
            doc = model.metric(metric) if metric else None
            members = [x for x in rows if r in model.roles_of(x) and x["label"] != row["label"]]
            if not members and r in columns:  # a strong-but-unlisted function: link the strongest heads instead
                members = [x for x in sorted(rows, key=lambda x: _sort_score(x, r, False))[:TOP_K + 1]
                           if x["label"] != row["label"]][:TOP_K]
            members.sort(key=lambda x: _sort_score(x, metric, by_mag))
            same_role[r] = [_head_ref(model, x, doc) for x in members]
        neighbours = []
        for dl in (-1, 0, 1):
            layer = L + dl
            if 0 <= layer < model.n_layers:
                neighbours.append({"layer": layer, "heads": [
                    {**_head_ref(model, rows[by_pos[(layer, h)]], None), "self": (layer, h) == (L, H)}
                    for h in range(model.n_heads) if (layer, h) in by_pos]})
        similar = [{**_head_ref(model, rows[j], None), "distance": f"{d:.2f}"}
                   for j, d in most_similar(profile, i, TOP_K)] if profile.shape[1] else []
        examples = [{"kind": e["kind"], "svg": pattern_svg(e["tokens"], e["pattern"], f"{row['label']} on the {e['kind']} example"),
                     "n_tokens": len(e["tokens"])} for e in model.examples.get((L, H), [])]
        yield page, {
            **common(page, f"{row['label']} · {model.model_id} — headwiki", site),
            "model": model, "row": row, "label": row["label"], "layer": L, "head": H, "roles": roles,
            "metric_rows": metric_rows, "statements": statements, "same_role": same_role,
            "neighbours": neighbours, "similar": similar, "examples": examples,
            "moved": moved.get((L, H), []), "groups": in_groups.get(row["label"], []),
            "templates": templates.get((L, H), []), "profile_metrics": [d.label for d in profile_docs],
            "validation": [(r, b) for r in roles for b in validation_blocks(model, r)],
            "causal": _head_causal(row, columns, bool(roles)),
            "exactness": _exactness(row),
            "kv_peers": kv_peers(model, rows, row),  # issue 23: KV group (see kv_peers below)
            "prev": urls.head_page(model.slug, *_step(rows, i, -1)), "next": urls.head_page(model.slug, *_step(rows, i, 1)),
        }


def _head_causal(row: dict[str, Any], columns: dict[str, np.ndarray], labelled: bool) -> str:
    """One sentence on what ablating this head alone does to the in-context loss drop ('' when not measured)."""
    z = _num(row.get("causal_share_zero"))
    est = _num(row.get("causal_share_atp"))
    if z is None and est is not None:
        return (f"{row['label']} was not ablated alone exactly (CPU prefilter mode: only the top heads by attribution and a "
                f"random check were); its attribution-patching estimate is {_pct(est)} of the in-context loss drop.")
    if z is None or "causal_share_zero" not in columns:
        return ""
    vals = columns["causal_share_zero"]
    text = (f"Zero-ablating {row['label']} alone removes {_pct(z)} [95% CI {_pct(row.get('causal_share_zero_lo'))}, "
            f"{_pct(row.get('causal_share_zero_hi'))}] of the in-context loss drop on repeated random tokens "
            f"({ordinal(rank_desc(vals, z))} of {int(np.sum(~np.isnan(vals)))} heads)")
    m, s = _num(row.get("causal_share_mean")), _num(row.get("causal_share_resample"))
    if m is not None or s is not None:
        text += f"; mean ablation: {_pct(m)}, resample ablation: {_pct(s)}"
    text += "."
    if bool(row.get("causally_important")) and not labelled:
        text += " It is among the model's causally most important heads for in-context copying, yet carries no detector label."
    return text


def _exactness(row: dict[str, Any]) -> str:
    """Whether this head's negation-ablation numbers are exact or attribution estimates ('' for exact-mode runs)."""
    how = row.get("ablation_selected_by")
    if row.get("ablation_exact") is None or how == "all":
        return ""
    if bool(row.get("ablation_exact")):
        why = "it ranked in the attribution top-K" if how == "attribution_top_k" else "it was drawn as a random check of the prefilter"
        return f"Negation numbers for {row['label']} are exact ablations ({why}; CPU prefilter mode)."
    return (f"Negation numbers for {row['label']} are attribution-patching estimates only (the _atp_ rows): the CPU prefilter "
            "mode ablated exactly only the top-K heads by attribution and as many random ones.")


def _step(rows: list[dict[str, Any]], i: int, d: int) -> tuple[int, int]:
    r = rows[(i + d) % len(rows)]
    return int(r["layer"]), int(r["head"])


def _moved_by_head(model: ModelData, k: int = TOP_K) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Per head and ablation, the k items whose negation sensitivity the ablation changes most (one sort)."""
    eff = model.effects
    if eff is None or eff.empty:
        return {}
    items = {(r["dataset"], r["item_id"]): r for r in _records(model.items)}
    n_items = eff.groupby(["layer", "head", "ablation"]).size().to_dict()
    ranked = (eff.assign(_mag=eff["d_sensitivity"].abs(), _zero=eff["ablation"] != "zero")
              .sort_values(["layer", "head", "_zero", "ablation", "_mag", "item_id"],
                           ascending=[True, True, True, True, False, True])
              .groupby(["layer", "head", "ablation"], sort=False).head(k))
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in ranked.to_dict("records"):
        key = (int(r["layer"]), int(r["head"]))
        blocks = out.setdefault(key, [])
        if not blocks or blocks[-1]["ablation"] != r["ablation"]:
            blocks.append({"ablation": r["ablation"], "n_items": int(n_items[(r["layer"], r["head"], r["ablation"])]),
                           "items": []})
        item = items.get((r["dataset"], r["item_id"]), {})
        blocks[-1]["items"].append({
            "item_id": r["item_id"], "dataset": r["dataset"], "negated": item.get("negated", ""),
            "target": item.get("target", ""), "foil": item.get("foil", ""),
            "d_ld_neg": r["d_ld_neg"], "d_ld_aff": r["d_ld_aff"], "d_ld_ctrl": r["d_ld_ctrl"],
            "d_sensitivity": r["d_sensitivity"]})
    return out


def _key_groups(model: ModelData, k: int = 3) -> list[dict[str, Any]]:
    """The k group ablations (below whole layers) that move negated accuracy most, for the model page's first screen."""
    rows = [g for g in _group_rows(model) if g.get("group_kind") not in ("layer", "all") and _num(g.get("neg_acc_delta")) is not None]
    rows.sort(key=lambda g: (-abs(float(g["neg_acc_delta"])), str(g["group_name"]), int(g["k"]), str(g["ablation"])))
    return rows[:k]


def _groups_by_head(model: ModelData) -> dict[str, list[dict[str, Any]]]:
    """Per head label, the ablated groups that contain it, with their effects: for each group family (a role's
    ranked groups, the head's layer, all heads) and ablation kind, only the smallest group holding the head."""
    out: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {}
    for g in _group_rows(model):
        key = (str(g["group_kind"]), str(g["group_name"]), str(g["ablation"]))
        for lab, _ in g["head_links"]:
            best = out.setdefault(lab, {})
            if key not in best or int(g["k"]) < int(best[key]["k"]):
                best[key] = g
    return {lab: [rows[k] for k in sorted(rows)] for lab, rows in out.items()}


def _templates_by_head(model: ModelData, k: int = TOP_K) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Per head, the k templates whose items carry most of its zero-ablation effect: mean Δ LD per condition and
    mean Δ sensitivity over the template's items (the first ablation run when zero was not)."""
    eff, items = model.effects, model.items
    if eff is None or eff.empty or items is None or items.empty or "template" not in items:
        return {}
    kind = "zero" if (eff["ablation"] == "zero").any() else str(eff["ablation"].iloc[0])
    merged = eff[eff["ablation"] == kind].merge(items[["dataset", "item_id", "template"]], on=["dataset", "item_id"])
    per = (merged.groupby(["layer", "head", "template"], sort=False)
           .agg(n=("item_id", "size"), d_ld_aff=("d_ld_aff", "mean"), d_ld_neg=("d_ld_neg", "mean"),
                d_ld_ctrl=("d_ld_ctrl", "mean"), d_sensitivity=("d_sensitivity", "mean")).reset_index())
    per["_mag"] = per["d_sensitivity"].abs()
    per = per.sort_values(["layer", "head", "_mag", "template"], ascending=[True, True, False, True])
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in per.groupby(["layer", "head"], sort=False).head(k).to_dict("records"):
        out.setdefault((int(r["layer"]), int(r["head"])), []).append({**r, "ablation": kind})
    return out


def _role_rule(site: SiteData, role: str) -> str:
    """The rule a role is assigned by, as its declaration words it."""
    declared = site.roles.get(role)
    return declared.rule if declared is not None else ""


def role_context(site: SiteData, role: str) -> dict[str, Any]:
    page = urls.role_page(role)
    groups = []
    for m in site.models:
        metric, by_mag = role_score_metric(m, role)
        doc = m.metric(metric) if metric else None
        members = [r for r in m.heads.to_dict("records") if role in m.roles_of(r)]
        members.sort(key=lambda r: _sort_score(r, metric, by_mag))
        if members:
            groups.append({"model": m.model_id, "model_url": urls.model_page(m.slug), "metric": doc,
                           "heads": [_head_ref(m, r, doc) for r in members],
                           "validation": validation_blocks(m, role),
                           "causal": causal_heads(m) if role in m.roles and m.roles[role].signatures[:1] == (DROP_SIGNATURE,) else []})
    declared = site.roles.get(role)
    return {**common(page, f"role: {role_label(role, site.roles)} — headwiki", site), "role": role, "declared": declared,
            "text": declared.text if declared else "", "groups": groups, "rule": _role_rule(site, role)}


DROP_SIGNATURE = "in_context_loss_drop"  # the signature the per-head causal shares measure
SIGNATURE_WORDS = {
    DROP_SIGNATURE: "the in-context loss drop on repeated random tokens (first-copy minus second-copy loss)",
    "induction_heads_score": "the labelled induction heads' induction score (K-composition)",
}
GROUP_ORDER = {"top1": 0, "top3": 1, "top5": 2, "all": 3}


def _pct(v: Any) -> str:
    f = _num(v)
    return "–" if f is None else f"{f:.0%}" if abs(f) >= 0.1 else f"{f:.1%}"


def validation_blocks(model: ModelData, role: str) -> list[dict[str, Any]]:
    """The causal validation of `role` in `model`: one block per signature and ablation (a sentence, a strip plot, the rows),
    or one block with the stored note when the role has no signature or no labelled head. [] when never validated."""
    v = model.validation
    if v is None or v.empty:
        return []
    rows = v[v["role"] == role]
    blocks = []
    for (sig, ablation), part in rows.groupby(["signature", "ablation"], sort=True):
        recs = sorted(part.to_dict("records"), key=lambda r: GROUP_ORDER.get(str(r["group_name"]), 9))
        if sig == "none" or all(_num(r.get("effect")) is None for r in recs):
            blocks.append({"signature": sig, "note": recs[0].get("note") or "", "sentence": "", "svg": "", "rows": []})
            continue
        full = next((r for r in recs if r["group_name"] == "all"), recs[-1])
        k = int(full["k"])
        what = SIGNATURE_WORDS.get(str(sig), str(sig))
        randoms = [float(x) for x in (full.get("random_effects") if full.get("random_effects") is not None else [])]
        sentence = (f"{str(ablation).capitalize()}-ablating the {k} labelled {role_label(role, model.roles)} head{'s' if k != 1 else ''} together removes "
                    f"{_pct(full['effect'])} [95% CI {_pct(full['effect_lo'])}, {_pct(full['effect_hi'])}] of {what}")
        if randoms:
            sentence += (f"; {len(randoms)} random {k}-head sets from the same layers remove {_pct(full['random_mean'])} on average "
                         f"[range {_pct(full['random_min'])} to {_pct(full['random_max'])}]. ")
            sentence += ("Significant: the labelled heads beat every random set "
                         f"(paired permutation p ≤ {_num(full['p_paired']):.2g} against each, rank p = {_num(full['p_rank']):.2g})."
                         if bool(full["significant"]) else
                         f"Not significant (rank p = {_num(full['p_rank']):.2g}, largest paired p = {_num(full['p_paired']):.2g}): "
                         "the labelled heads do not carry this behaviour more than random heads of the same layers.")
        else:
            sentence += ". No matched random set exists (the group fills its layers), so nothing is claimed."
        groups = [{"name": str(r["group_name"]), "k": int(r["k"]), "effect": _num(r["effect"]), "lo": _num(r["effect_lo"]),
                   "hi": _num(r["effect_hi"]),
                   "random": [float(x) for x in (r.get("random_effects") if r.get("random_effects") is not None else [])]}
                  for r in recs if _num(r.get("effect")) is not None]
        table = [{"group": str(r["group_name"]), "k": int(r["k"]),
                  "heads": [(str(h), _label_url(model, str(h))) for h in (r["heads"] if r.get("heads") is not None else [])],
                  "effect": f"{_pct(r['effect'])} [{_pct(r['effect_lo'])}, {_pct(r['effect_hi'])}]",
                  "random": (f"{_pct(r['random_mean'])} [{_pct(r['random_min'])}, {_pct(r['random_max'])}]"
                             if _num(r.get("random_mean")) is not None else "no matched set"),
                  "p": (f"{_num(r['p_rank']):.2g} / {_num(r['p_paired']):.2g}" if _num(r.get("p_rank")) is not None else "–"),
                  "significant": bool(r["significant"])} for r in recs]
        blocks.append({"signature": str(sig), "ablation": str(ablation), "what": what, "sentence": sentence, "note": full.get("note") or "",
                       "n_seqs": full.get("n_seqs"), "seq_len": full.get("seq_len"),
                       "svg": validation_svg(groups, role_color(role, model.roles), f"{role_label(role, model.roles)}: fraction of {sig} removed ({ablation} ablation)"),
                       "rows": table})
    return blocks


def causal_heads(model: ModelData) -> list[dict[str, Any]]:
    """Heads marked causally_important (single zero ablation), with their three ablations and whether they agree."""
    h = model.heads
    if "causally_important" not in h.columns:
        return []
    out = []
    for r in h[h["causally_important"].fillna(False).astype(bool)].sort_values("causal_share_zero", ascending=False).to_dict("records"):
        z, m, s = _num(r.get("causal_share_zero")), _num(r.get("causal_share_mean")), _num(r.get("causal_share_resample"))
        others = [x for x in (m, s) if x is not None]
        if z is None or not others:
            agree = "–"
        elif all(x >= 0.5 * z for x in others):
            agree = "yes: mean and resample ablation also remove a comparable share"
        elif all(x < 0.5 * z for x in others):
            agree = "no: only zero ablation shows it (zero ablation may break this head in a way the others do not)"
        else:
            agree = "partly: " + ("mean agrees, resample does not" if m is not None and m >= 0.5 * z else "resample agrees, mean does not")
        out.append({**_head_ref(model, r, None), "zero": f"{_pct(z)} [{_pct(r.get('causal_share_zero_lo'))}, {_pct(r.get('causal_share_zero_hi'))}]",
                    "mean": _pct(m), "resample": _pct(s), "agree": agree, "labelled": bool(model.roles_of(r))})
    return out


def sql_examples(site: SiteData) -> list[tuple[str, str]]:
    """(title, SQL) pairs chosen for the columns and roles this database actually has (read from its declarations)."""
    cols = set(site.metric_columns)
    roles = site.roles
    holders = [c for c in dict.fromkeys(r.held_in for r in roles.values()) if c in cols]
    ex = [
        ("Models in the database", "SELECT model_id, architecture, n_layers, n_heads, n_params FROM models ORDER BY model_id"),
        ("Roles declared per model (metric, threshold, what they mean)",
         "SELECT model_id, role, family, metric, threshold, text FROM roles ORDER BY model_id, sort_order"),
        ("What each metric means (label, unit, data, n), for the first model",
         "SELECT metric, label, unit, family, description, data, n FROM metrics "
         "WHERE model_id = (SELECT min(model_id) FROM models) AND family IS NOT NULL ORDER BY family, sort_order"),
    ]
    detector = [r for r in roles.values() if r.family == "detector" and r.metric in cols]
    if detector:
        m = detector[0].metric
        ex.append((f"Top {detector[0].label} heads with their 95% CI",
                   f"SELECT model_id, label, round({m}, 3) AS {m}, round({m}_lo, 3) AS lo, "
                   f"round({m}_hi, 3) AS hi FROM heads WHERE {m} IS NOT NULL ORDER BY {m} DESC LIMIT 10"))
    if holders:
        count = " + ".join(f"coalesce(len({c}), 0)" if site.column_types.get(c, "").endswith("[]") else f"({c} IS NOT NULL)::INT"
                           for c in holders)
        ex.append(("Heads with more than one role, detector and negation alike (possible confounds)",
                   f"SELECT model_id, label, {', '.join(holders)} FROM heads WHERE {count} >= 2 ORDER BY model_id, layer, head"))
    negation = [r for r in roles.values() if r.family == "negation"]
    effect = next((f"{r.metric}_zero" for r in negation if f"{r.metric}_zero" in cols and f"{r.metric}_zero_q" in cols), None)
    if effect:
        ex.append(("Heads whose zero ablation changes a negation role's metric (BH q < 0.05)",
                   f"SELECT model_id, label, round({effect}, 3) AS delta, round({effect}_q, 4) AS q, {', '.join(holders)} "
                   f"FROM heads WHERE {effect}_q < 0.05 ORDER BY abs({effect}) DESC"))
        if detector:
            m = detector[-1].metric
            ex.append((f"Negation effect next to {detector[-1].label} score (the confound the wiki flags)",
                       f"SELECT model_id, label, round({effect}, 3) AS delta, round({m}, 3) AS {m} "
                       f"FROM heads WHERE {effect} IS NOT NULL ORDER BY abs({effect}) DESC LIMIT 10"))
        ex.append(("Negation baselines with CIs",
                   "SELECT model_id, dataset, condition, n_items, round(accuracy, 3) AS acc, round(accuracy_lo, 3) AS lo, "
                   "round(accuracy_hi, 3) AS hi FROM negation_baselines ORDER BY ALL"))
    ex.append(("Any metric in long form, with its CI and q where it has them",
               "SELECT model_id, label, metric, round(value, 4) AS value, round(lo, 4) AS lo, round(hi, 4) AS hi, q "
               "FROM head_metrics_long WHERE metric = (SELECT min(metric) FROM metrics WHERE family = 'detector') "
               "ORDER BY value DESC LIMIT 5"))
    ex.append(("Runs and their parameters", "SELECT run_id, model_id, pass_name, seed, n, status FROM runs ORDER BY started_at"))
    return ex


def sql_context(site: SiteData, con: Any, db_arg: str) -> dict[str, Any]:
    """Run every example read-only (an example that fails is a bug: it raises) and show a preview."""
    page = urls.SQL
    examples = []
    for title, sql in sql_examples(site):
        cur = con.cursor()
        try:
            rel = cur.execute(sql)
            names = [d[0] for d in rel.description]
            rows = rel.fetchall()
        finally:
            cur.close()
        examples.append({
            "title": title, "sql": sql,
            "command": f"headwiki query {shlex.quote(sql)} --db {shlex.quote(db_arg)}",
            "columns": names, "rows": [[_cell(v) for v in r] for r in rows[:5]], "n_rows": len(rows),
        })
    return {**common(page, "SQL — headwiki", site), "examples": examples, "db_arg": db_arg}


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return "NULL" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def provenance_context(site: SiteData) -> dict[str, Any]:
    page = urls.PROVENANCE
    runs = []
    for r in _records(site.runs):
        r = dict(r)
        r["params_pretty"] = json.dumps(parse_json(r.get("params")), indent=2, sort_keys=True)
        r["provenance_pretty"] = json.dumps(parse_json(r.get("provenance")), indent=2, sort_keys=True)
        runs.append(r)
    return {**common(page, "Provenance — headwiki", site), "runs": runs, "meta": site.meta,
            "models": [m.info for m in site.models], "db_name": site.db_name}


def search_index(site: SiteData) -> list[dict[str, Any]]:
    """One compact entry per head for the client-side search (URLs relative to the site root)."""
    out = []
    for m in site.models:
        docs = [d for d in m.metrics if d.heatmap]
        for r in m.heads.to_dict("records"):
            vals = {d.name: round(v, 4) for d in docs if (v := _num(r.get(d.name))) is not None}
            out.append({"m": m.model_id, "l": r["label"], "u": urls.head_page(m.slug, r["layer"], r["head"]),
                        "r": m.roles_of(r), "v": vals})
    return out


# --- issue 23: KV groups on head pages (kept separate: the grouped-query attention block of a head page) ---

def kv_peers(model: ModelData, rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The head's KV group and the other query heads of its layer that read the same KV head (None when the
    database has no kv_group column for the model)."""
    group = row.get(KV_GROUP.name)
    if group is None or pd.isna(group):
        return None
    peers = [_head_ref(model, x, None) for x in rows
             if x["layer"] == row["layer"] and x.get(KV_GROUP.name) == group and x["label"] != row["label"]]
    return {"group": int(group), "peers": peers, "size": len(peers) + 1}
