"""`headwiki ablate`: the negation-ablation pass (thin wrapper over headwiki.ablation.run.ablate_model)."""

from __future__ import annotations

import click
import pandas as pd

from headwiki.cli_options import db_option, emit, model_options


@click.command()
@model_options
@db_option
@click.option("--dataset", default=None, help="english | toy | multinli | path to a JSONL item file  [default: toy for the toy model, english otherwise]")
@click.option("--ablation", "ablation", default="zero,mean,resample", show_default=True,
              help="comma-separated: zero, mean, resample")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="seed for subsetting, bootstrap and permutations")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="sequences per forward before head replication")
@click.option("--max-items", default=None, type=click.IntRange(min=2), help="use a seeded random subset of this many items")
@click.option("--n-boot", default=2000, show_default=True, type=click.IntRange(min=10), help="bootstrap resamples per CI")
@click.option("--no-groups", is_flag=True, help="skip ranked-group and whole-layer ablations")
@click.option("--no-attribution", is_flag=True, help="skip the attribution-patching estimate (exact mode only)")
@click.option("--mode", default="auto", show_default=True, type=click.Choice(["auto", "exact", "prefilter"]),
              help="exact: ablate every head; prefilter: attribution patching for every head, exact ablation of the top-K "
                   "and K random others (64 items unless --max-items); auto: prefilter on CPU for models with > 128 heads")
@click.option("--top-k", default=8, show_default=True, type=click.IntRange(min=1), help="prefilter mode: heads ablated exactly by attribution rank (plus as many random)")
def ablate(model: str, device: str, dtype: str, bos: str, db_path: str, dataset: str | None, ablation: str, seed: int, batch_size: int,
           max_items: int | None, n_boot: int, no_groups: bool, no_attribution: bool, mode: str, top_k: int) -> None:
    """Ablate every attention head (zero / mean / resample) on negation minimal pairs; write Δ accuracies with CIs and q-values."""
    from headwiki.ablation.items import default_dataset, resolve_dataset
    from headwiki.ablation.run import AblateResult, ablate_model, parse_ablations
    from headwiki.models import load_model

    from headwiki.db.lock import check_db_target

    kinds = parse_ablations(ablation.split(","))
    dataset = dataset or default_dataset(model)
    check_db_target(db_path)
    resolve_dataset(dataset, seed=seed, max_items=max_items)  # bad data fails before the model loads
    loaded = load_model(model, device=device, dtype=dtype, bos=bos)
    result = ablate_model(loaded, db_path, dataset=dataset, ablations=kinds, seed=seed, batch_size=batch_size,
                          max_items=max_items, n_boot=n_boot, n_perm=n_boot, groups=not no_groups,
                          attribution=not no_attribution, mode=mode, top_k=top_k)
    assert isinstance(result, AblateResult)  # skip_if_done is off here
    base = result.baselines.copy()
    base["accuracy (95% Wilson CI)"] = [
        "" if pd.isna(a) else f"{a:.3f} [{lo:.3f}, {hi:.3f}]"
        for a, lo, hi in zip(base["accuracy"], base["accuracy_lo"], base["accuracy_hi"])
    ]
    base["mean LD (nats) / R (95% CI)"] = [f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                                    for m, lo, hi in zip(base["mean_ld"], base["mean_ld_lo"], base["mean_ld_hi"])]
    emit(base[["condition", "n_items", "accuracy (95% Wilson CI)", "mean LD (nats) / R (95% CI)"]], "table",
         title=f"{result.model_id} on {result.dataset}: clean baselines (run {result.run_id})")
    for k in result.ablations:
        down, up = result.top_heads(k)
        for frame, way in ((down, "LOWERS"), (up, "RAISES")):
            title = f"{k} ablation: heads whose removal significantly {way} the reversal R (q < 0.05)"
            if frame.empty:
                best = result.heads[f"reversal_delta_{k}_q"].min()
                click.echo(f"{title}: none (smallest q = {best:.3g})")
            else:
                emit(_compact(frame, k, result.provenance.get("reversal_permutation", {})), "table", title=title)
    rho = result.provenance.get("atp_spearman")
    if rho:
        click.echo("attribution patching vs exact sweep, Spearman: " + "; ".join(
            f"{k}: S {v['sens']:+.2f}, LD_neg {v['neg_ld']:+.2f}" for k, v in rho.items()))
    pre = result.provenance.get("prefilter")
    if pre:
        from headwiki.negation_spec import ABLATION_EXACT

        n_exact = int(result.heads[ABLATION_EXACT.name].sum())
        click.echo(f"prefilter mode on {pre['max_items']} items: {n_exact} heads exact ({', '.join(pre['top'])} by attribution; "
                   f"random check {', '.join(pre['random_check'])}), {len(result.heads) - n_exact} heads attribution estimates only")
    click.echo(f"wrote {len(result.heads)} head rows, {len(result.item_effects)} item effects, "
               f"{len(result.groups)} group rows to {db_path}")


def _compact(frame: pd.DataFrame, k: str, perm: dict | None = None) -> pd.DataFrame:
    """label, ΔR [CI] q p, ΔS, Δ negated / affirmative accuracy, role — one line per head. A q whose p is a
    Monte-Carlo p at the permutation floor (no null draw reached the observed effect) is an upper bound: '≤ q'."""
    from headwiki.negation_spec import EFFECT_SPECS, NEGATION_ROLE, REVERSAL
    from headwiki.stats import format_pvalue, format_qvalue

    col = REVERSAL.expand(k).name
    delta = {m: EFFECT_SPECS[m].expand(k).name for m in ("sens", "neg_acc", "aff_acc")}
    perm = perm or {}
    floor, exact = perm.get("p_floor"), bool(perm.get("exact"))
    return pd.DataFrame({
        "head": frame["label"],
        "ΔR [95% CI]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in zip(frame[col], frame[f"{col}_lo"], frame[f"{col}_hi"])],
        "q": [format_qvalue(q, p, floor, exact) for q, p in zip(frame[f"{col}_q"], frame[f"{col}_p"])],
        "p": [format_pvalue(p, floor, exact) for p in frame[f"{col}_p"]],
        "ΔS (nats)": [f"{v:+.2f}" for v in frame[delta["sens"]]],
        "Δ neg acc": [f"{v:+.3f}" for v in frame[delta["neg_acc"]]],
        "Δ aff acc": [f"{v:+.3f}" for v in frame[delta["aff_acc"]]],
        "role (zero abl.)": frame[NEGATION_ROLE.name].fillna(""),
    })


@click.command()
@model_options
@db_option
@click.option("--n-seqs", default=16, show_default=True, type=click.IntRange(min=2), help="repeated random-token sequences")
@click.option("--seq-len", default=12, show_default=True, type=click.IntRange(min=3), help="L: sequences are [BOS, x_1..x_L, x_1..x_L]")
@click.option("--mode", default="auto", show_default=True, type=click.Choice(["auto", "exact", "prefilter"]),
              help="single-head ablations: exact for every head, or attribution for all + exact for the top-K and K random; auto: prefilter on CPU for > 128 heads")
@click.option("--top-k", default=24, show_default=True, type=click.IntRange(min=1), help="prefilter mode: single heads ablated exactly by attribution rank (plus as many random)")
@click.option("--n-random", default=10, show_default=True, type=click.IntRange(min=10), help="matched random head sets per labelled group (>= 10)")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="seed for sequences, random sets, bootstrap and permutations")
def validate(model: str, device: str, dtype: str, bos: str, db_path: str, n_seqs: int, seq_len: int, mode: str, top_k: int,
             n_random: int, seed: int) -> None:
    """Causally validate detector roles: ablate the labelled heads vs matched random sets on each role's signature."""
    from headwiki.ablation.validation import ValidateResult, read_labelled, validate_model
    from headwiki.causal_spec import CAUSAL_SHARE, CAUSALLY_IMPORTANT
    from headwiki.db.lock import check_db_target
    from headwiki.models import load_model, resolve_source

    read_labelled(db_path, resolve_source(model)[0])  # no detector results: fail before the model loads
    check_db_target(db_path)  # nor a database it cannot write
    loaded = load_model(model, device=device, dtype=dtype, bos=bos)
    result = validate_model(loaded, db_path, n_seqs=n_seqs, seq_len=seq_len, n_random=n_random, seed=seed, mode=mode, top_k=top_k)
    assert isinstance(result, ValidateResult)  # skip_if_done is off here
    emit(validation_table(result.rows), "table", title=f"{result.model_id}: causal validation of roles (run {result.run_id}, {n_seqs} sequences)")
    share = {k: CAUSAL_SHARE.expand(k).name for k in ("zero", "mean", "resample")}
    heads = result.heads[result.heads[CAUSALLY_IMPORTANT.name]].sort_values(share["zero"], ascending=False)
    click.echo("causally important heads (single zero ablation, share of the in-context loss drop): " + ", ".join(
        f"L{L}H{h} {s:.1%} (mean {m:.1%}, resample {r:.1%})" for L, h, s, m, r in zip(
            heads["layer"], heads["head"], *(heads[c] for c in share.values()))))
    click.echo(f"wrote {len(result.rows)} role_validation rows and {len(result.heads)} head rows to {db_path}")


def validation_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (role, signature, group): effect [CI], random mean [min, max], p-values, verdict."""
    def fmt(r: pd.Series) -> tuple[str, str, str]:
        if pd.isna(r["effect"]):
            return "", "", ""
        eff = f"{r['effect']:.1%} [{r['effect_lo']:.1%}, {r['effect_hi']:.1%}]"
        if not r["n_random"]:
            return eff, "no matched set", ""
        return eff, f"{r['random_mean']:.1%} [{r['random_min']:.1%}, {r['random_max']:.1%}]", f"{r['p_rank']:.2g} / {r['p_paired']:.2g}"

    cells = [fmt(r) for _, r in rows.iterrows()]
    return pd.DataFrame({
        "role": rows["role"], "signature": rows["signature"], "ablation": rows["ablation"], "group": rows["group_name"], "k": rows["k"],
        "effect [95% CI]": [c[0] for c in cells], "random sets: mean [min, max]": [c[1] for c in cells],
        "p rank / paired": [c[2] for c in cells],
        "significant": ["yes" if s else ("-" if pd.isna(e) else "no") for s, e in zip(rows["significant"], rows["effect"])],
    })
