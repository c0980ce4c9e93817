"""The closing summary of `headwiki build`, read back from the database (so skipped passes show too)."""

from __future__ import annotations

from typing import Any

import click
import pandas as pd

from headwiki.build import BuildReport
from headwiki.cli_options import emit
from headwiki.db.store import reading
from headwiki.stats import format_qvalue



def _columns(con: Any) -> set[str]:
    return {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'heads'").fetchall()}


def top_heads(con: Any, model_id: str, top: int = 3) -> pd.DataFrame:
    """Top heads per detector role: role, head, score [95% CI], whether the role was assigned."""
    cols = _columns(con)
    frames = []
    declared = con.execute("SELECT role, metric, held_in FROM roles WHERE model_id = ? AND family = 'detector' "
                           "ORDER BY sort_order, role", [model_id]).fetchall()
    for role, metric, held_in in declared:
        if not {metric, f"{metric}_lo", f"{metric}_hi", held_in} <= cols:
            continue
        frame = con.execute(
            f'SELECT label, "{metric}" AS score, "{metric}_lo" AS lo, "{metric}_hi" AS hi, list_contains("{held_in}", ?) AS assigned '
            f'FROM heads WHERE model_id = ? ORDER BY "{metric}" DESC, layer, head LIMIT ?',
            [role, model_id, top],
        ).fetchdf()
        frame.insert(0, "role", role)
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["score [95% CI]"] = [f"{s:.3f} [{lo:.3f}, {hi:.3f}]" for s, lo, hi in zip(out["score"], out["lo"], out["hi"])]
    out["role assigned"] = out["assigned"].map({True: "yes", False: "no"})
    return out[["role", "label", "score [95% CI]", "role assigned"]].rename(columns={"label": "head"})


def baselines(con: Any, model_id: str) -> pd.DataFrame:
    frame = con.execute(
        "SELECT dataset, condition, n_items, accuracy, accuracy_lo, accuracy_hi, mean_ld, mean_ld_lo, mean_ld_hi "
        "FROM negation_baselines WHERE model_id = ? ORDER BY dataset, condition", [model_id]
    ).fetchdf()
    if frame.empty:
        return frame
    frame["accuracy [95% Wilson CI]"] = [
        "" if pd.isna(a) else f"{a:.3f} [{lo:.3f}, {hi:.3f}]"
        for a, lo, hi in zip(frame["accuracy"], frame["accuracy_lo"], frame["accuracy_hi"])
    ]
    frame["mean LD (nats), S (nats) or R [95% CI]"] = [
        f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]" for m, lo, hi in zip(frame["mean_ld"], frame["mean_ld_lo"], frame["mean_ld_hi"])]
    return frame[["dataset", "condition", "n_items", "accuracy [95% Wilson CI]", "mean LD (nats), S (nats) or R [95% CI]"]]


def uninformative_notes(con: Any, model_id: str) -> list[str]:
    """The baselines' warnings (a condition at chance, an undefined reversal), one line each."""
    cols = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'negation_baselines'").fetchall()}
    if "informative" not in cols:
        return []
    rows = con.execute("SELECT dataset, note FROM negation_baselines WHERE model_id = ? AND NOT informative "
                       "ORDER BY dataset, condition", [model_id]).fetchall()
    return [f"{dataset}: {note}" for dataset, note in rows]


def significant_heads(con: Any, model_id: str, ablation: str = "zero", alpha: float = 0.05) -> pd.DataFrame:
    """Heads whose ablation moves the negation-specific reversal R or negated accuracy with q < alpha."""
    from headwiki.negation_spec import EFFECT_SPECS, NEGATION_ROLE, REVERSAL

    cols = _columns(con)
    acc, rev, sens = (m.expand(ablation).name for m in (EFFECT_SPECS["neg_acc"], REVERSAL, EFFECT_SPECS["sens"]))
    if not {f"{acc}_q", f"{rev}_q", sens, NEGATION_ROLE.name} <= cols:
        return pd.DataFrame()
    role = NEGATION_ROLE.name
    frame = con.execute(
        f"SELECT label, {acc} AS dneg, {acc}_lo AS lo, {acc}_hi AS hi, {acc}_q AS q_neg, {rev} AS drev, {rev}_lo AS rlo, "
        f"{rev}_hi AS rhi, {rev}_q AS q_rev, {sens} AS dsens, {role} AS role, {acc}_p AS p_neg, {rev}_p AS p_rev "
        f"FROM heads WHERE model_id = ? AND ({acc}_q < ? OR {rev}_q < ?) ORDER BY {role} IS NULL, abs({rev}) DESC LIMIT 10",
        [model_id, alpha, alpha],
    ).fetchdf()
    if frame.empty:
        return frame
    perm = _permutation(con, model_id).get(ablation, {})  # a q whose p sits at a Monte-Carlo floor shows as '≤ q'
    floor, exact = perm.get("p_floor"), bool(perm.get("exact"))
    rev = _permutation(con, model_id, "reversal_permutation")
    return pd.DataFrame({
        "head": frame["label"],
        "ΔR [95% CI]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in zip(frame["drev"], frame["rlo"], frame["rhi"])],
        "q (R)": [format_qvalue(q, p, rev.get("p_floor"), bool(rev.get("exact"))) for q, p in zip(frame["q_rev"], frame["p_rev"])],
        "Δ negated acc [95% CI]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in zip(frame["dneg"], frame["lo"], frame["hi"])],
        "q (acc)": [format_qvalue(q, p, floor, exact) for q, p in zip(frame["q_neg"], frame["p_neg"])],
        "Δ S (nats)": [f"{d:+.2f}" for d in frame["dsens"]],
        role: frame["role"].fillna(""),
    })


def _permutation(con: Any, model_id: str, key: str = "permutation") -> dict[str, Any]:
    """provenance[key] (a permutation test's method and floor) of the model's latest finished ablate run, or {}."""
    import json

    rows = con.execute("SELECT json_extract(provenance, '$.' || ?) FROM runs WHERE model_id = ? AND pass_name = 'ablate' "
                       "AND status = 'finished' ORDER BY finished_at DESC LIMIT 1", [key, model_id]).fetchall()
    if not rows or not rows[0][0]:
        return {}
    return json.loads(rows[0][0])


def validation(con: Any, model_id: str) -> pd.DataFrame:
    """Causal validation of roles (group 'all' of each role and signature), formatted like `headwiki validate`."""
    from headwiki.ablation.cli import validation_table

    has = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'role_validation'").fetchall()[0][0]
    if not has:
        return pd.DataFrame()
    rows = con.execute("SELECT * FROM role_validation WHERE model_id = ? AND group_name = 'all' ORDER BY role, signature, ablation DESC",
                       [model_id]).fetchdf()
    return validation_table(rows) if len(rows) else rows


def approximations(con: Any, model_id: str) -> list[str]:
    """What the latest ablate and validate runs measured exactly and what they estimated (from runs.provenance)."""
    import json

    lines = []
    for pass_name in ("ablate", "validate"):
        row = con.execute("SELECT provenance, params FROM runs WHERE model_id = ? AND pass_name = ? AND status = 'finished' "
                          "ORDER BY finished_at DESC LIMIT 1", [model_id, pass_name]).fetchall()
        if not row:
            continue
        prov, params = json.loads(row[0][0] or "{}"), json.loads(row[0][1] or "{}")
        if pass_name == "ablate":
            pre = prov.get("prefilter")
            if pre:
                agree = "; ".join(f"{k}: Spearman {a['spearman']:+.2f}, top-{a['k']} recall {a['top_k_recall']:.2f}, "
                                  f"{a['random_check_beating_top_k_floor']}/{a['random_check_size']} random-check heads beat the top-K floor"
                                  for k, a in pre["agreement"].items())
                lines.append(f"ablate: EXACT for {len(pre['top']) + len(pre['random_check'])} heads (top {len(pre['top'])} by attribution "
                             f"+ {len(pre['random_check'])} random) on {pre['max_items']} items; ESTIMATED (attribution patching) for "
                             f"the rest; {pre['groups']}. Attribution vs exact: {agree}")
            else:
                lines.append(f"ablate: EXACT for every head ({prov.get('n_items')} items)")
        else:
            pre = prov.get("single_head_prefilter")
            groups = f"labelled groups vs {params.get('n_random')} matched random sets: EXACT ({params.get('n_seqs')} sequences)"
            if pre:
                a = pre["agreement"]
                lines.append(f"validate: {groups}; single-head shares EXACT for {a['n_measured']} heads (top {a['k']} by attribution "
                             f"+ {len(pre['random_check'])} random), ESTIMATED for the rest (Spearman {a['spearman']:+.2f}, "
                             f"top-{a['k']} recall {a['top_k_recall']:.2f})")
            else:
                lines.append(f"validate: {groups}; single-head shares EXACT for every head")
    return lines


def print_build_summary(report: BuildReport) -> None:
    """Per model: what ran, top heads per role, negation baselines, significant heads; then where things are."""
    with reading(report.db_path) as con:
        for model_id in report.model_ids:
            passes = ", ".join(f"{k} {v}" for k, v in report.passes.get(model_id, {}).items())
            click.echo(f"\n== {model_id} ({passes})")
            for title, frame in (
                ("top heads per role", top_heads(con, model_id)),
                ("causal validation: labelled heads ablated together vs >= 10 matched random sets", validation(con, model_id)),
                ("negation baselines", baselines(con, model_id)),
                ("heads whose zero ablation significantly moves the reversal R or negated accuracy (BH q < 0.05; "
                 "role needs both significance and size, see README)", significant_heads(con, model_id)),
            ):
                if frame.empty:
                    click.echo(f"{title}: none")
                else:
                    emit(frame, "table", title=title)
            for note in uninformative_notes(con, model_id):
                click.echo(f"WARNING {model_id}: {note}")
            for line in approximations(con, model_id):
                click.echo(line)
    click.echo(f"\ndatabase: {report.db_path}   site: {report.out_dir / 'index.html'}   "
               f"({report.seconds:.1f} s, peak RSS {report.peak_rss_mb:.0f} MB)")
