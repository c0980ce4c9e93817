"""Page contexts: turn the database (SiteData) into the plain dicts each template renders.

No I/O here except the read-only SQL-example check in :func:`sql_context`; the renderer writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from headwiki.causal_spec import (
    BOS_PARKED_GROUP, CAUSAL_SHARE, CAUSAL_SHARE_ATP, CAUSAL_SHARE_ZERO, CAUSALLY_IMPORTANT, DROP, KV_GROUPS, SIGNATURE_WORDS,
)
from headwiki.wiki.overlap import role_overlap
from headwiki.negation_spec import ABLATION_EXACT, EFFECT_SPECS, REVERSAL, SELECTED_BY
from headwiki.kv_group import METRIC as KV_GROUP
from headwiki.db.tables import TEXT_MAX_CELLS
from headwiki.label_spec import BORDERLINE
from headwiki.start_token import cli_flag as start_flag, describe as describe_start
from headwiki.wiki import urls
from headwiki.wiki.context import MetricDoc, ModelData, RoleDoc, SiteData, parse_json
from headwiki.wiki import format as fmt
from headwiki.wiki.crossref import NOTABLE_Q, as_float, ci_is_noisy, cross_reference, ordinal, percentile, rank_desc, rank_shown
from headwiki.wiki.headline import Effect, RoleEvidence, head_summary
from headwiki.wiki.figures import distribution_svg, heatmap_html, is_signed, pattern_svg, scatter_html, validation_svg
from headwiki.wiki import circuit
from headwiki.wiki.similarity import most_similar

# the negation_groups columns the group tables show (declared in headwiki.negation_spec), and their units
GROUP_COLUMNS = {
    "neg": EFFECT_SPECS["neg_acc"].name, "aff": EFFECT_SPECS["aff_acc"].name, "ctrl": EFFECT_SPECS["ctrl_acc"].name,
    "sens": EFFECT_SPECS["sens"].name, "rev": REVERSAL.name, "acc_unit": EFFECT_SPECS["neg_acc"].unit,
    "sens_unit": EFFECT_SPECS["sens"].unit, "rev_unit": REVERSAL.unit,
}
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
    """Template filter `num` for values that are not metrics (counts, baseline accuracies): `x|num(".3f")`; the
    decimals of `spec`, '+' when it starts with '+', never '-0', '–' for NULL/NaN."""
    f = _num(v)
    decimals = int(spec.split(".", 1)[1].rstrip("fg") or 0) if "." in spec else None
    return fmt.DASH if f is None else fmt.number(f * scale, decimals, signed=spec.startswith("+"))


def fmt_value(v: Any, doc: MetricDoc | None = None, sig: int = fmt.SIG) -> str:
    """A metric value for display in its unit (accuracy deltas in signed points, log-prob deltas in nats)."""
    if doc is None:
        return fmt.value(v, sig=sig)
    if doc.integer:
        f = _num(v)
        return fmt.DASH if f is None else str(int(round(f)))
    return fmt.value(v, fmt.metric_unit(doc), signed=is_signed(doc), sig=sig)


def fmt_estimate(v: Any, lo: Any, hi: Any, doc: MetricDoc, sig: int = fmt.SIG, prose: bool = False) -> str:
    """'0.96 [0.94, 0.98]', '-12 pts [-16, -8]': a metric value and its CI, one sign convention, one set of decimals."""
    return fmt.estimate(v, lo, hi, fmt.metric_unit(doc), signed=is_signed(doc), sig=sig, prose=prose)


ABLATE_PASS = "ablate"  # runs.pass_name of the negation pass (headwiki.ablation.run.PASS_NAME; the wiki does not import passes)


def _latest_finished(model: ModelData, pass_name: str) -> dict[str, dict[str, Any]]:
    """{'params': ..., 'provenance': ...} of the model's latest finished run of `pass_name` ({} if none)."""
    runs = model.runs
    if runs is None or runs.empty or "pass_name" not in runs:
        return {}
    done = runs[(runs["pass_name"] == pass_name) & (runs["status"] == "finished")]
    if done.empty:
        return {}
    last = done.sort_values("finished_at").iloc[-1]
    return {"params": parse_json(last.get("params")), "provenance": parse_json(last.get("provenance"))}


def permutation_floors(model: ModelData) -> dict[str, dict[str, Any]]:
    """The latest finished ablate run's permutation tests (provenance 'permutation' per ablation kind, and
    'reversal_permutation' under the key 'reversal'): where each p-value's Monte-Carlo floor lies. {} when none."""
    prov = _latest_finished(model, ABLATE_PASS).get("provenance", {})
    out = {str(k): v for k, v in (prov.get("permutation") or {}).items() if isinstance(v, dict)}
    if isinstance(prov.get("reversal_permutation"), dict):
        out["reversal"] = prov["reversal_permutation"]
    return out


def q_text(perm: dict[str, dict[str, Any]], row: dict[str, Any], metric: str) -> str:
    """A metric's BH q for display: '< 0.001', two significant figures, or '≤ q' when its p sits at the
    permutation floor (then q is an upper bound). perm: :func:`permutation_floors` of the head's model."""
    test = perm.get("reversal" if metric.startswith(REVERSAL.name) else metric.rsplit("_", 1)[-1], {})
    return fmt.qvalue(row.get(f"{metric}_q"), row.get(f"{metric}_p"), test.get("p_floor"), bool(test.get("exact")))


PRIMARY_ABLATIONS = ("zero", "mean", "resample")  # where a role's metric is per ablation, the one its rule read first


def role_score_metric(model: ModelData, role: str) -> tuple[str | None, bool]:
    """(metric column that scores a role, sort by magnitude?) — the declared metric of the role: a detector score
    (largest first), or a per-ablation effect read at the primary ablation present (by magnitude)."""
    declared = model.roles.get(role)
    if declared is None:
        return None, False
    doc = model.metric(declared.metric)
    if doc is not None:
        return declared.metric, doc.direction == "signed"
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
        "gcols": GROUP_COLUMNS,
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
            "n_params": fmt.count(m.info.get("n_params")),
        })
    from headwiki.wiki.crosspages import cross_links  # issue 20: the cross-model pages, first thing with >= 2 models

    return {**common(page, "headwiki", site), "models": models, "roles": all_roles(site),
            "search": True, "search_model": "", "links": cross_links(site)}


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
        "overlap": role_overlap([model.roles_of(r) for r in rows], list(role_counts(model))),
        "search": True, "search_model": model.model_id, "built": _last_run(model),
        "n_params": fmt.count(model.info.get("n_params")),
        "circuit_url": urls.circuit_page(model.slug) if len(model.edges) else None,  # issue 18
        "scatter": (sc := scatter_data(model, page)), "scatter_html": scatter_html(sc, "scatter-plot") if sc else "",
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
    value, ci = ("", "") if doc is None else (fmt_value(row.get(doc.name), doc), "") if doc.integer else \
        fmt.estimate_parts(row.get(doc.name), row.get(f"{doc.name}_lo"), row.get(f"{doc.name}_hi"), fmt.metric_unit(doc),
                           signed=is_signed(doc))
    return {
        "label": row["label"], "model": model.model_id, "url": urls.head_page(model.slug, row["layer"], row["head"]),
        "value": value, "ci": ci,
        "q": q_text(permutation_floors(model), row, doc.name) if doc and doc.has_q else "",
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
    perm = permutation_floors(model)
    partners, top_examples = head_partners(model), head_top_examples(model)  # issue 18
    for i, row in enumerate(rows):
        L, H = int(row["layer"]), int(row["head"])
        page = urls.head_page(model.slug, L, H)
        metric_rows = []
        for doc in model.metrics:
            v = _num(row.get(doc.name))
            lo, hi = _num(row.get(f"{doc.name}_lo")), _num(row.get(f"{doc.name}_hi"))
            vals = columns[doc.name]
            value_text, ci_text = (fmt_value(v, doc), "") if doc.integer else \
                fmt.estimate_parts(v, lo, hi, fmt.metric_unit(doc), signed=is_signed(doc))
            metric_rows.append({
                "doc": doc, "value": value_text, "ci": ci_text,
                "noisy": v is not None and doc.has_ci and "delta" in doc.name and ci_is_noisy(v, lo, hi),
                "q": q_text(perm, row, doc.name) if doc.has_q and _num(row.get(f"{doc.name}_q")) is not None else None,
                "pct": None if v is None else percentile(vals, v),
                "rank": None if v is None else _rank_text(vals, v, doc),
                "of": int(np.sum(~np.isnan(vals))),
                "svg": "" if v is None else distribution_svg(vals, v, lo, hi, is_signed(doc)),
            })
        roles = model.roles_of(row)
        statements = cross_reference(row, heads, model.metrics, model.roles, roles)
        summary = head_summary(row["label"], _role_evidence(model, row, roles, columns, perm),
                               _distinctive_effect(model, row, columns, perm), _ablated(model), statements)
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
            "metric_rows": metric_rows, "statements": statements, "summary": summary, "same_role": same_role,
            "neighbours": neighbours, "similar": similar, "examples": examples, "ov_profile": ov_profile(model, L, H),
            "moved": moved.get((L, H), []), "groups": in_groups.get(row["label"], []),
            "templates": templates.get((L, H), []), "profile_metrics": [d.label for d in profile_docs],
            "validation": [(r, b) for r in roles for b in validation_blocks(model, r)],
            "causal": _head_causal(row, columns, bool(roles)),
            "exactness": _exactness(row),
            "kv_peers": kv_peers(model, rows, row),  # issue 23: KV group (see kv_peers below)
            "partners": partners.get((L, H)), "top_examples": top_examples.get((L, H), []),  # issue 18
            "circuit_url": urls.circuit_page(model.slug) if len(model.edges) else None,
            "sandbox_cmd": " ".join(filter(None, [
                f"headwiki sandbox --model {shlex.quote(model.model_id)} --db {shlex.quote(site.db_name)}",
                start_flag(_latest_finished(model, ABLATE_PASS).get("params", {}).get("start_token")), f"--heads {row['label']}"]))
                if model.has_negation else "",
            "borderline": _role_list(row.get(BORDERLINE.name)),
            "prev": urls.head_page(model.slug, *_step(rows, i, -1)), "next": urls.head_page(model.slug, *_step(rows, i, 1)),
        }


def _role_evidence(model: ModelData, row: dict[str, Any], roles: list[str], columns: dict[str, np.ndarray],
                   perm: dict[str, dict[str, Any]]) -> list[RoleEvidence]:
    """Each listed role of the head with the number it was assigned on (score or effect, CI, q, rank as shown)."""
    out = []
    for role in roles:
        metric, by_mag = role_score_metric(model, role)
        doc = model.metric(metric) if metric else None
        if doc is None:
            out.append(RoleEvidence(role, role_label(role, model.roles), "score", fmt.DASH))
            continue
        v = _num(row.get(doc.name))
        est = fmt_estimate(v, row.get(f"{doc.name}_lo"), row.get(f"{doc.name}_hi"), doc, sig=fmt.SIG_PROSE, prose=True)
        rank = ""
        if v is not None and not by_mag:
            rank_, tied = rank_shown(columns[doc.name], v, fmt.decimals_for(v, sig=fmt.SIG_PROSE))
            rank = f"{fmt.rank_phrase(rank_, tied)} of {int(np.sum(~np.isnan(columns[doc.name])))}"
            if tied > 1:
                rank += f", {fmt.tie_note(tied)}"
        measure = f"{doc.label} score" if doc.kind == "detector" else doc.label
        out.append(RoleEvidence(role, role_label(role, model.roles), measure, est,
                                q_text(perm, row, doc.name) if doc.has_q else "", rank))
    return out


def _ablated(model: ModelData) -> bool:
    return any(d.kind in ("causal", "negation") for d in model.metrics)


def _distinctive_effect(model: ModelData, row: dict[str, Any], columns: dict[str, np.ndarray],
                        perm: dict[str, dict[str, Any]]) -> Effect | None:
    """The head's ablation effect (exact ablations only; 95% CI excluding zero and, where tested, BH q < 0.05) that
    ranks highest by magnitude among the model's heads; ties go to the metric listed first. None when none qualifies."""
    best: tuple[float, int, Effect] | None = None
    for order, doc in enumerate(model.metrics):
        if doc.kind not in ("causal", "negation") or not doc.has_ci:
            continue
        v, lo, hi = _num(row.get(doc.name)), _num(row.get(f"{doc.name}_lo")), _num(row.get(f"{doc.name}_hi"))
        q = _num(row.get(f"{doc.name}_q"))
        if v is None or lo is None or hi is None or lo <= 0.0 <= hi or (q is not None and q >= NOTABLE_Q):
            continue
        mags = np.abs(columns[doc.name])
        standing = percentile(mags, abs(v))
        scale = fmt.unit_info(fmt.metric_unit(doc)).scale
        rank, tied = rank_shown(mags * scale, abs(v) * scale, fmt.decimals_for(v * scale, lo * scale, hi * scale, sig=fmt.SIG_PROSE))
        effect = Effect(doc.label, fmt_estimate(v, lo, hi, doc, sig=fmt.SIG_PROSE, prose=True),
                        q_text(perm, row, doc.name) if doc.has_q else "", rank, tied, int(np.sum(~np.isnan(mags))))
        if best is None or standing > best[0]:
            best = (standing, order, effect)
    return None if best is None else best[2]


def _rank_text(vals: np.ndarray, v: float, doc: MetricDoc) -> str:
    """'3rd', or '=1st (3 tied)' when other heads show the same value at the printed precision. vals: [n_heads]."""
    scale = fmt.unit_info(fmt.metric_unit(doc)).scale
    decimals = 0 if doc.integer else fmt.decimals_for(v * scale)
    rank, tied = rank_shown(vals * scale, v * scale, decimals)
    return ordinal(rank) if tied == 1 else f"={ordinal(rank)} ({tied} tied)"


def _head_causal(row: dict[str, Any], columns: dict[str, np.ndarray], labelled: bool) -> str:
    """One sentence on what ablating this head alone does to the in-context loss drop ('' when not measured)."""
    zero = CAUSAL_SHARE_ZERO.name
    z = _num(row.get(zero))
    est = _num(row.get(CAUSAL_SHARE_ATP.name))
    if z is None and est is not None:
        return (f"{row['label']} was not ablated alone exactly (CPU prefilter mode: only the top heads by attribution and a "
                f"random check were); its attribution-patching estimate is {_pct(est)} of the in-context loss drop.")
    if z is None or zero not in columns:
        return ""
    vals = columns[zero]
    text = (f"Zero-ablating {row['label']} alone removes {_pct(z)} [95% CI {_pct(row.get(zero + '_lo'))}, "
            f"{_pct(row.get(zero + '_hi'))}] of the in-context loss drop on repeated random tokens "
            f"({ordinal(rank_desc(vals, z))} of {int(np.sum(~np.isnan(vals)))} heads)")
    m, s = (_num(row.get(CAUSAL_SHARE.expand(k).name)) for k in ("mean", "resample"))
    if m is not None or s is not None:
        text += f"; mean ablation: {_pct(m)}, resample ablation: {_pct(s)}"
    text += "."
    if bool(row.get(CAUSALLY_IMPORTANT.name)) and not labelled:
        text += " It is among the model's causally most important heads for in-context copying, yet carries no detector label."
    return text


def _exactness(row: dict[str, Any]) -> str:
    """Whether this head's negation-ablation numbers are exact or attribution estimates ('' for exact-mode runs)."""
    how = row.get(SELECTED_BY.name)
    if row.get(ABLATION_EXACT.name) is None or how == "all":
        return ""
    if bool(row.get(ABLATION_EXACT.name)):
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
    acc = EFFECT_SPECS["neg_acc"].name
    rows = [g for g in _group_rows(model) if g.get("group_kind") not in ("layer", "all") and _num(g.get(acc)) is not None]
    rows.sort(key=lambda g: (-abs(float(g[acc])), str(g["group_name"]), int(g["k"]), str(g["ablation"])))
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


def ov_profile(model: Any, layer: int, head: int) -> list[dict[str, Any]]:
    """The head's OV profile (table head_ov_profile): per input token, the tokens its OV output boosts and suppresses
    most, as [{input, boosted: "'tok' +1.23, ...", suppressed: "..."}] (tokens quoted: leading spaces show)."""
    p = model.ov_profile
    if p.empty:
        return []
    rows = p[(p["layer"] == layer) & (p["head"] == head)]
    out: dict[int, dict[str, Any]] = {}
    for r in rows.to_dict("records"):
        entry = out.setdefault(int(r["input_rank"]), {"input": r["input_token"], "boosted": [], "suppressed": []})
        entry[r["direction"]].append(f"{r['token']!r} {r['logit']:+.1f}")
    return [{**out[k], "boosted": ", ".join(out[k]["boosted"]), "suppressed": ", ".join(out[k]["suppressed"])}
            for k in sorted(out)]


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
                           "causal": causal_heads(m) if role in m.roles and m.roles[role].signatures[:1] == (DROP,) else []})
    declared = site.roles.get(role)
    return {**common(page, f"role: {role_label(role, site.roles)} — headwiki", site), "role": role, "declared": declared,
            "text": declared.text if declared else "", "groups": groups, "rule": _role_rule(site, role)}


GROUP_ORDER = {"top1": 0, "top3": 1, "top5": 2, "all": 3, KV_GROUPS: 4, BOS_PARKED_GROUP: 5}


_pct = fmt.percent
EXTRA_GROUPS = (KV_GROUPS, BOS_PARKED_GROUP)  # validation groups beside the labelled top-k (their own sentence)


def _versus_random(r: dict[str, Any]) -> str:
    """"; random ... remove X on average [range ...] (significant | not significant, p ...)" for one group row."""
    n = len(r.get("random_effects") if r.get("random_effects") is not None else [])
    if not n:
        return "; no matched random set exists (the group fills its layers), so nothing is claimed"
    verdict = (f"significant: beats every random set, paired p ≤ {fmt.pvalue(r['p_paired'])}" if bool(r["significant"]) else
               f"not significant: rank p = {fmt.pvalue(r['p_rank'])}, largest paired p = {fmt.pvalue(r['p_paired'])}")
    return (f"; {n} random sets from the same layers remove {_pct(r['random_mean'])} on average "
            f"[range {_pct(r['random_min'])} to {_pct(r['random_max'])}] ({verdict})")


def _labelled_sentence(full: dict[str, Any], ablation: str, label: str, what: str) -> str:
    """The validation sentence of the labelled heads (group 'all')."""
    k = int(full["k"])
    sentence = (f"{ablation.capitalize()}-ablating the {k} labelled {label} head{'s' if k != 1 else ''} together removes "
                f"{_pct(full['effect'])} [95% CI {_pct(full['effect_lo'])}, {_pct(full['effect_hi'])}] of {what}")
    randoms = full.get("random_effects") if full.get("random_effects") is not None else []
    if not len(randoms):
        return sentence + ". No matched random set exists (the group fills its layers), so nothing is claimed."
    sentence += (f"; {len(randoms)} random {k}-head sets from the same layers remove {_pct(full['random_mean'])} on average "
                 f"[range {_pct(full['random_min'])} to {_pct(full['random_max'])}]. ")
    return sentence + ("Significant: the labelled heads beat every random set "
                       f"(paired permutation p ≤ {fmt.pvalue(full['p_paired'])} against each, rank p = {fmt.pvalue(full['p_rank'])})."
                       if bool(full["significant"]) else
                       f"Not significant (rank p = {fmt.pvalue(full['p_rank'])}, largest paired p = {fmt.pvalue(full['p_paired'])}): "
                       "the labelled heads do not carry this behaviour more than random heads of the same layers.")


def _extra_group_sentence(r: dict[str, Any], label: str, what: str) -> str:
    """The sentence of a KV-group or BOS-parked validation row."""
    heads = ", ".join(str(h) for h in (r["heads"] if r.get("heads") is not None else []))
    effect = f"{_pct(r['effect'])} [{_pct(r['effect_lo'])}, {_pct(r['effect_hi'])}]"
    if r["group_name"] == KV_GROUPS:
        lead = (f"Ablating the labelled heads' whole KV groups ({int(r['k'])} query heads sharing their keys and values) "
                f"removes {effect}")
    else:
        lead = (f"The head{'s' if int(r['k']) != 1 else ''} flagged BOS-parked for {label} ({heads}: below the threshold only "
                f"because of attention parked on BOS; not labelled) remove{'' if int(r['k']) != 1 else 's'} {effect} of {what} "
                "when ablated")
    return lead + _versus_random(r) + "."


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
        labelled = [r for r in recs if r["group_name"] not in EXTRA_GROUPS and _num(r.get("effect")) is not None]
        full = next((r for r in labelled if r["group_name"] == "all"), labelled[-1] if labelled else recs[-1])
        what = SIGNATURE_WORDS.get(str(sig), str(sig))
        sentence = _labelled_sentence(full, str(ablation), role_label(role, model.roles), what) if labelled else ""
        for r in recs:
            if r["group_name"] in EXTRA_GROUPS and _num(r.get("effect")) is not None:
                sentence += " " + _extra_group_sentence(r, role_label(role, model.roles), what)
        sentence = sentence.strip()
        groups = [{"name": str(r["group_name"]), "k": int(r["k"]), "effect": _num(r["effect"]), "lo": _num(r["effect_lo"]),
                   "hi": _num(r["effect_hi"]),
                   "random": [float(x) for x in (r.get("random_effects") if r.get("random_effects") is not None else [])]}
                  for r in recs if _num(r.get("effect")) is not None]
        table = [{"group": str(r["group_name"]), "k": int(r["k"]),
                  "heads": [(str(h), _label_url(model, str(h))) for h in (r["heads"] if r.get("heads") is not None else [])],
                  "effect": f"{_pct(r['effect'])} [{_pct(r['effect_lo'])}, {_pct(r['effect_hi'])}]",
                  "random": (f"{_pct(r['random_mean'])} [{_pct(r['random_min'])}, {_pct(r['random_max'])}]"
                             if _num(r.get("random_mean")) is not None else "no matched set"),
                  "p": (f"{fmt.pvalue(r['p_rank'])} / {fmt.pvalue(r['p_paired'])}" if _num(r.get("p_rank")) is not None else fmt.DASH),
                  "significant": bool(r["significant"])} for r in recs]
        blocks.append({"signature": str(sig), "ablation": str(ablation), "what": what, "sentence": sentence, "note": full.get("note") or "",
                       "n_seqs": full.get("n_seqs"), "seq_len": full.get("seq_len"),
                       "svg": validation_svg(groups, role_color(role, model.roles), f"{role_label(role, model.roles)}: fraction of {sig} removed ({ablation} ablation)"),
                       "rows": table})
    return blocks


def causal_heads(model: ModelData) -> list[dict[str, Any]]:
    """Heads marked causally important (single zero ablation), with their three ablations and whether they agree."""
    h = model.heads
    flag, zero = CAUSALLY_IMPORTANT.name, CAUSAL_SHARE_ZERO.name
    if flag not in h.columns:
        return []
    out = []
    for r in h[h[flag].fillna(False).astype(bool)].sort_values(zero, ascending=False).to_dict("records"):
        z, m, s = (_num(r.get(CAUSAL_SHARE.expand(k).name)) for k in ("zero", "mean", "resample"))
        others = [x for x in (m, s) if x is not None]
        if z is None or not others:
            agree = "–"
        elif all(x >= 0.5 * z for x in others):
            agree = "yes: mean and resample ablation also remove a comparable share"
        elif all(x < 0.5 * z for x in others):
            agree = "no: only zero ablation shows it (zero ablation may break this head in a way the others do not)"
        else:
            agree = "partly: " + ("mean agrees, resample does not" if m is not None and m >= 0.5 * z else "resample agrees, mean does not")
        out.append({**_head_ref(model, r, None), "zero": f"{_pct(z)} [{_pct(r.get(zero + '_lo'))}, {_pct(r.get(zero + '_hi'))}]",
                    "mean": _pct(m), "resample": _pct(s), "agree": agree, "labelled": bool(model.roles_of(r))})
    return out


MULTI_ROLE_TITLE = "Heads with more than one role, detector and negation alike (possible confounds)"

# The examples are written in SQL that DuckDB (`headwiki query`) and SQLite (the page's console, sql.js) both run
# with the same rows (tests/test_wiki_browser.py checks every one): explicit NULLS LAST and tie-breaking ORDER BYs
# (the engines place NULLs and ties differently), no ORDER BY ALL, lists compared through list_contains / len
# (DuckDB built-ins; the console defines them over the list's text form) and printed with CAST(x AS VARCHAR).
_ORDER_HEADS = "model_id, layer, head"


def _role_holders(site: SiteData) -> list[str]:
    """The `heads` columns that hold roles (a list such as `roles`, or one name such as `negation_role`)."""
    return [c for c in dict.fromkeys(r.held_in for r in site.roles.values()) if c in site.column_types]


def _is_list(site: SiteData, column: str) -> bool:
    return site.column_types[column].endswith("[]")


def _role_count(site: SiteData, prefix: str = "") -> str:
    """SQL (common to DuckDB and SQLite) counting a head's roles over every role-holding column."""
    parts = [f"coalesce(len({prefix}{c}), 0)" if _is_list(site, c) else f"(CASE WHEN {prefix}{c} IS NULL THEN 0 ELSE 1 END)"
             for c in _role_holders(site)]
    return " + ".join(parts)


def multi_role_sql(site: SiteData) -> str | None:
    """The heads the wiki calls multi-role (ModelData.roles_of: every role-holding column, two or more roles), in SQL
    over the columns the declarations name; None when the database holds no roles."""
    holders = _role_holders(site)
    if not holders:
        return None
    shown = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" if _is_list(site, c) else c for c in holders)
    count = _role_count(site)
    return (f"SELECT model_id, label, {shown}, {count} AS n_all_roles FROM heads WHERE {count} >= 2 "
            f"ORDER BY {_ORDER_HEADS}")


def _holds_role(site: SiteData, role_sql: str, prefix: str = "") -> str:
    """SQL: the head (columns under `prefix`) holds the role named by the SQL expression `role_sql`."""
    return " OR ".join(f"list_contains({prefix}{c}, {role_sql})" if _is_list(site, c) else f"{prefix}{c} = {role_sql}"
                       for c in _role_holders(site))


def cross_role_examples(site: SiteData, tables: Mapping[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """Questions across roles: heads per role, labelled heads ranked by their negation effect, the K-composition edges
    between role-holding heads (when the database has them; on the toy: previous-token -> induction)."""
    ex: list[tuple[str, str]] = []
    if not _role_holders(site):
        return ex
    ex.append(("How many heads hold each declared role, per model (detector and negation roles)",
               f"SELECT r.model_id, r.role, r.family, count(h.label) AS n_heads FROM roles r "
               f"LEFT JOIN heads h ON h.model_id = r.model_id AND ({_holds_role(site, 'r.role', 'h.')}) "
               f"GROUP BY r.model_id, r.role, r.family ORDER BY r.model_id, r.role"))
    acc = EFFECT_SPECS["neg_acc"].expand("zero").name
    lists = [c for c in _role_holders(site) if _is_list(site, c)]
    if acc in site.column_types and lists:
        c = lists[0]
        ex.append(("Heads with a detector role, ranked by how far their zero ablation moves negated accuracy",
                   f"SELECT model_id, label, CAST({c} AS VARCHAR) AS {c}, round(100 * {acc}, 1) AS neg_delta_pts, "
                   f"round({acc}_q, 4) AS q FROM heads WHERE len({c}) > 0 AND {acc} IS NOT NULL "
                   f"ORDER BY abs({acc}) DESC, {_ORDER_HEADS} LIMIT 10"))
    edges = set(tables.get("head_edges", ()))
    if {"kind", "src_layer", "src_head", "dst_layer", "dst_head", "z"} <= edges and lists:
        c = lists[0]
        ex.append(("Role-holding heads that feed other role-holding heads (K-composition edges, strongest first)",
                   f"SELECT e.model_id, s.label AS writer, CAST(s.{c} AS VARCHAR) AS writer_roles, d.label AS reader, "
                   f"CAST(d.{c} AS VARCHAR) AS reader_roles, round(e.score, 4) AS score, round(e.z, 1) AS z "
                   "FROM head_edges e "
                   "JOIN heads s ON s.model_id = e.model_id AND s.layer = e.src_layer AND s.head = e.src_head "
                   "JOIN heads d ON d.model_id = e.model_id AND d.layer = e.dst_layer AND d.head = e.dst_head "
                   f"WHERE e.kind = 'k' AND len(s.{c}) > 0 AND len(d.{c}) > 0 "
                   "ORDER BY e.z DESC, e.model_id, writer, reader LIMIT 10"))
    return ex


def sql_examples(site: SiteData, tables: Mapping[str, tuple[str, ...]] | None = None) -> list[tuple[str, str]]:
    """(title, SQL) pairs chosen for the columns and roles this database actually has (read from its declarations);
    `tables`: every exported table -> its columns. Each runs in DuckDB and in the page's SQLite console alike."""
    tables = tables or {}
    cols = set(site.metric_columns)
    roles = site.roles
    ex = [
        ("Models in the database", "SELECT model_id, architecture, n_layers, n_heads, n_params FROM models ORDER BY model_id"),
        ("Roles declared per model (metric, threshold, what they mean)",
         "SELECT model_id, role, family, metric, threshold, text FROM roles ORDER BY model_id, sort_order, role"),
        ("What each metric means (label, unit, data, n), for the first model",
         "SELECT metric, label, unit, family, description, data, n FROM metrics "
         "WHERE model_id = (SELECT min(model_id) FROM models) AND family IS NOT NULL ORDER BY family, sort_order, metric"),
    ]
    detector = [r for r in roles.values() if r.family == "detector" and r.metric in cols]
    if detector:
        m = detector[0].metric
        ex.append((f"Top {detector[0].label} heads with their 95% CI",
                   f"SELECT model_id, label, round({m}, 3) AS {m}, round({m}_lo, 3) AS lo, "
                   f"round({m}_hi, 3) AS hi FROM heads WHERE {m} IS NOT NULL ORDER BY {m} DESC, {_ORDER_HEADS} LIMIT 10"))
    multi = multi_role_sql(site)
    if multi:
        ex.append((MULTI_ROLE_TITLE, multi))
    ex.extend(cross_role_examples(site, tables))
    acc = EFFECT_SPECS["neg_acc"].expand("zero").name
    if acc in cols:
        ex.append(("Heads whose zero ablation changes negated accuracy (BH q < 0.05)",
                   f"SELECT model_id, label, round(100 * {acc}, 1) AS delta_pts, round({acc}_q, 4) AS q "
                   f"FROM heads WHERE {acc}_q < 0.05 ORDER BY {acc}, {_ORDER_HEADS}"))
        rev = REVERSAL.expand("zero").name
        if rev in cols:
            ex.append(("Heads whose zero ablation changes the negation-specific reversal R (BH q < 0.05)",
                       f"SELECT model_id, label, round({rev}, 3) AS delta_r, round({rev}_q, 4) AS q "
                       f"FROM heads WHERE {rev}_q < 0.05 ORDER BY abs({rev}) DESC, {_ORDER_HEADS}"))
        if detector:
            m = detector[-1].metric
            ex.append((f"Negation effect next to {detector[-1].label} score (the confound the wiki flags)",
                       f"SELECT model_id, label, round(100 * {acc}, 1) AS neg_delta_pts, round({m}, 3) AS {m} "
                       f"FROM heads WHERE {acc} IS NOT NULL ORDER BY {acc}, {_ORDER_HEADS} LIMIT 10"))
        ex.append(("Negation baselines with CIs",
                   "SELECT model_id, dataset, condition, n_items, round(accuracy, 3) AS acc, round(accuracy_lo, 3) AS lo, "
                   "round(accuracy_hi, 3) AS hi FROM negation_baselines ORDER BY model_id, dataset, condition"))
    ex.append(("Any metric in long form, with its CI and q where it has them",
               "SELECT model_id, label, metric, round(value, 4) AS value, round(lo, 4) AS lo, round(hi, 4) AS hi, q "
               "FROM head_metrics_long WHERE metric = (SELECT min(metric) FROM metrics WHERE family = 'detector') "
               f"ORDER BY value DESC NULLS LAST, {_ORDER_HEADS} LIMIT 5"))
    from headwiki.wiki.crosspages import cross_model_sql  # issue 20: cross-model examples (data in one place)

    ex += cross_model_sql(site)
    ex.append(("Runs and their parameters",
               "SELECT run_id, model_id, pass_name, seed, n, status FROM runs ORDER BY started_at, run_id"))
    return ex


def sql_context(site: SiteData, con: Any, db_arg: str, tables: list[Any] | None = None) -> dict[str, Any]:
    """Run every example read-only (an example that fails is a bug: it raises) and show a preview; `tables`: the
    exported tables (headwiki.db.tables.SiteTable) offered as downloads and loaded by the in-page console."""
    page = urls.SQL
    tables = tables or []
    examples = []
    for title, sql in sql_examples(site, {t.name: t.columns for t in tables}):
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
    data = urls.relative(page, urls.DATA_DIR)
    downloads = [{"name": t.name, "n_rows": t.n_rows, "n_columns": len(t.columns), "in_console": t.in_console,
                  "files": {fmt_: f"{data}/{rel}" for fmt_, rel in t.files.items()}} for t in tables]
    console_tables = {t.name: (f"{data}/{t.console}" if t.console else None) for t in tables}
    return {**common(page, "SQL — headwiki", site), "examples": examples, "db_arg": db_arg, "downloads": downloads,
            "console_tables": json.dumps(console_tables, sort_keys=True), "text_max_cells": TEXT_MAX_CELLS,
            "engine_js": urls.relative(page, urls.SQL_ENGINE_JS), "console_js": urls.relative(page, urls.SQL_CONSOLE_JS)}


def _cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return "NULL" if math.isnan(v) else fmt.number(v, sig=4)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def provenance_context(site: SiteData) -> dict[str, Any]:
    page = urls.PROVENANCE
    runs = []
    for r in _records(site.runs):
        r = dict(r)
        r["params_pretty"] = json.dumps(parse_json(r.get("params")), indent=2, sort_keys=True)
        start = parse_json(r.get("params")).get("start_token")
        r["start_token"] = describe_start(start) if start else ""
        r["provenance_pretty"] = json.dumps(parse_json(r.get("provenance")), indent=2, sort_keys=True)
        runs.append(r)
    return {**common(page, "Provenance — headwiki", site), "runs": runs, "meta": site.meta,
            "models": [m.info for m in site.models], "db_name": site.db_name}


def search_index(site: SiteData) -> dict[str, Any]:
    """The client-side search's data: one compact entry per head (URLs relative to the site root) with its heatmap
    metrics IN THE UNITS THE PAGES SHOW (accuracy deltas in points), and each metric's unit per model, so that
    `neg_acc_delta_zero<-5` means -5 points and the box can say why nothing matched."""
    out = []
    units: dict[str, dict[str, dict[str, str]]] = {}
    for m in site.models:
        docs = [d for d in m.metrics if d.heatmap]
        scale = {d.name: fmt.unit_info(fmt.metric_unit(d)).scale for d in docs}
        units[m.model_id] = {d.name: {"unit": fmt.metric_unit(d), "short": fmt.unit_info(fmt.metric_unit(d)).short,
                                      "label": d.label} for d in docs}
        for r in m.heads.to_dict("records"):
            vals = {d.name: round(v * scale[d.name], 4) for d in docs if (v := _num(r.get(d.name))) is not None}
            out.append({"m": m.model_id, "l": r["label"], "u": urls.head_page(m.slug, r["layer"], r["head"]),
                        "r": m.roles_of(r), "v": vals})
    return {"entries": out, "units": units}



# --- issue 23: KV groups on head pages (kept separate: the grouped-query attention block of a head page) ---

def _role_list(v: Any) -> list[str]:
    return [] if v is None or isinstance(v, (float, str)) else [str(x) for x in list(v)]


def kv_peers(model: ModelData, rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The head's KV group and the other query heads of its layer that read the same KV head (None when the
    database has no kv_group column for the model)."""
    group = row.get(KV_GROUP.name)
    if group is None or pd.isna(group):
        return None
    peers = [_head_ref(model, x, None) for x in rows
             if x["layer"] == row["layer"] and x.get(KV_GROUP.name) == group and x["label"] != row["label"]]
    return {"group": int(group), "peers": peers, "size": len(peers) + 1}


# --- issue 18: the circuit view, composition partners, top-activating examples, the all-heads scatter ---

def _roles_by_pos(model: ModelData) -> dict[tuple[int, int], list[str]]:
    return {(int(r["layer"]), int(r["head"])): model.roles_of(r) for r in model.heads.to_dict("records")}


def circuit_context(site: SiteData, model: ModelData) -> dict[str, Any]:
    """The circuit page: the strongest composition edges drawn over the model's heads, and listed."""
    page = urls.circuit_page(model.slug)
    shown = circuit.strongest_edges(model.edges)
    roles = _roles_by_pos(model)
    svg = circuit.circuit_svg(
        model.n_layers, model.n_heads, shown, lambda L, H: urls.relative(page, urls.head_page(model.slug, L, H)), roles,
        lambda r: role_color(r, site.roles), lambda r: role_label(r, model.roles)) if len(model.edges) else ""
    rows = [{"kind": str(e["kind"]), "src": _pos_ref(model, int(e["src_layer"]), int(e["src_head"]), roles),
             "dst": _pos_ref(model, int(e["dst_layer"]), int(e["dst_head"]), roles),
             "score": fmt.number(float(e["score"]), sig=3), "z": fmt.number(float(e["z"]), 1)}
            for e in shown.to_dict("records")]
    base = model.edges.iloc[0] if len(model.edges) else None
    counts = ({k: int((model.edges["kind"] == k).sum()) for k in circuit.KIND_COLOURS} if len(model.edges) else {})
    return {**common(page, f"Circuit · {model.model_id} — headwiki", site), "model": model, "svg": svg, "edges": rows,
            "min_z": circuit.CIRCUIT_MIN_Z, "max_edges": circuit.CIRCUIT_MAX_EDGES, "kinds": circuit.KIND_WORDS,
            "colours": circuit.KIND_COLOURS, "counts": counts, "n_pairs": len(model.edges),
            "baseline": None if base is None else {"mean": fmt.number(float(base["baseline"]), sig=3),
                                                   "sd": fmt.number(float(base["baseline_sd"]), sig=2),
                                                   "n": int(base["n_draws"])}}


def _pos_ref(model: ModelData, layer: int, head: int, roles: Mapping[tuple[int, int], list[str]]) -> dict[str, Any]:
    return {"label": f"L{layer}H{head}", "url": urls.head_page(model.slug, layer, head), "roles": roles.get((layer, head), []),
            "model": model.model_id}


def head_partners(model: ModelData) -> dict[tuple[int, int], dict[str, list[dict[str, Any]]]]:
    """Per head: its strongest upstream and downstream composition partners, ready for the head page."""
    roles = _roles_by_pos(model)
    out = {}
    for key, sides in circuit.partners(model.edges).items():
        out[key] = {side: [{**_pos_ref(model, p["layer"], p["head"], roles), "kind": p["kind"],
                            "score": fmt.number(p["score"], sig=3), "z": fmt.number(p["z"], 1)} for p in ps]
                    for side, ps in sides.items()}
    return out


def head_top_examples(model: ModelData) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Per head: its top-activating positions as token strips (token, attention weight, query?, most attended?)."""
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    if model.top_examples is None or model.top_examples.empty:
        return out
    for r in model.top_examples.to_dict("records"):
        toks = [str(t) for t in r["tokens"]]
        att = [float(a) for a in r["attention"]]
        strip = [{"text": t, "w": a, "query": i == int(r["query"]), "top": i == int(r["top_key"])}
                 for i, (t, a) in enumerate(zip(toks, att))]
        out.setdefault((int(r["layer"]), int(r["head"])), []).append({
            "rank": int(r["rank"]), "value": fmt.number(float(r["value"]), sig=3), "strip": strip,
            "seq": int(r["seq"]), "position": int(r["position"]),
            "source": str(r["source"]), "statistic": str(r["statistic"])})
    return out


def scatter_data(model: ModelData, page: str) -> dict[str, Any] | None:
    """The all-heads scatter's data: every numeric metric (values in the units the pages show), each head's label,
    relative URL and colour, and the default axes (a role score vs a negation effect, else two role scores)."""
    docs = [d for d in model.metrics]
    if len(docs) < 2:
        return None
    rows = model.heads.to_dict("records")
    values = {}
    for d in docs:
        scale = fmt.unit_info(fmt.metric_unit(d)).scale
        values[d.name] = [None if (v := _num(r.get(d.name))) is None else round(v * scale, 5) for r in rows]
    role_metrics = [r.metric for r in model.roles.values() if r.family == "detector" and model.metric(r.metric)]
    effects = [d.name for d in docs if d.kind == "negation" and d.role_kind == "delta"]
    x = role_metrics[0] if role_metrics else docs[0].name
    y = effects[0] if effects else next((m for m in role_metrics[1:]), docs[1].name if docs[1].name != x else docs[0].name)
    return {
        "metrics": [{"name": d.name, "label": d.label, "unit": fmt.unit_info(fmt.metric_unit(d)).short} for d in docs],
        "label": [str(r["label"]) for r in rows],
        "url": [urls.relative(page, urls.head_page(model.slug, r["layer"], r["head"])) for r in rows],
        "colour": [role_color(rs[0], model.roles) if (rs := model.roles_of(r)) else "#9aa3b2" for r in rows],
        "roles": [", ".join(role_label(x_, model.roles) for x_ in model.roles_of(r)) or "no role" for r in rows],
        "values": values, "x": x, "y": y,
    }
