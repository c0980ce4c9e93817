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
@click.option("--seed", default=0, show_default=True, type=int, help="seed for subsetting, bootstrap and permutations")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="sequences per forward before head replication")
@click.option("--max-items", default=None, type=click.IntRange(min=2), help="use a seeded random subset of this many items")
@click.option("--n-boot", default=2000, show_default=True, type=click.IntRange(min=10), help="bootstrap resamples per CI")
@click.option("--no-groups", is_flag=True, help="skip ranked-group and whole-layer ablations")
@click.option("--no-attribution", is_flag=True, help="skip the attribution-patching estimate")
def ablate(model: str, device: str, dtype: str, db_path: str, dataset: str | None, ablation: str, seed: int, batch_size: int,
           max_items: int | None, n_boot: int, no_groups: bool, no_attribution: bool) -> None:
    """Ablate every attention head (zero / mean / resample) on negation minimal pairs; write Δ accuracies with CIs and q-values."""
    from headwiki.ablation.items import default_dataset, resolve_dataset
    from headwiki.ablation.run import AblateResult, ablate_model, parse_ablations
    from headwiki.models import load_model

    from headwiki.db.lock import check_db_target

    kinds = parse_ablations(ablation.split(","))
    dataset = dataset or default_dataset(model)
    check_db_target(db_path)
    resolve_dataset(dataset, seed=seed, max_items=max_items)  # bad data fails before the model loads
    loaded = load_model(model, device=device, dtype=dtype)
    result = ablate_model(loaded, db_path, dataset=dataset, ablations=kinds, seed=seed, batch_size=batch_size,
                          max_items=max_items, n_boot=n_boot, n_perm=n_boot, groups=not no_groups,
                          attribution=not no_attribution)
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
    click.echo(f"wrote {len(result.heads)} head rows, {len(result.item_effects)} item effects, "
               f"{len(result.groups)} group rows to {db_path}")


def _compact(frame: pd.DataFrame, k: str, perm: dict | None = None) -> pd.DataFrame:
    """label, ΔR [CI] q p, ΔS, Δ negated / affirmative accuracy, role — one line per head. A q whose p is a
    Monte-Carlo p at the permutation floor (no null draw reached the observed effect) is an upper bound: '≤ q'."""
    from headwiki.stats import format_pvalue, format_qvalue

    col = f"reversal_delta_{k}"
    perm = perm or {}
    floor, exact = perm.get("p_floor"), bool(perm.get("exact"))
    return pd.DataFrame({
        "head": frame["label"],
        "ΔR [95% CI]": [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in zip(frame[col], frame[f"{col}_lo"], frame[f"{col}_hi"])],
        "q": [format_qvalue(q, p, floor, exact) for q, p in zip(frame[f"{col}_q"], frame[f"{col}_p"])],
        "p": [format_pvalue(p, floor, exact) for p in frame[f"{col}_p"]],
        "ΔS (nats)": [f"{v:+.2f}" for v in frame[f"sens_delta_{k}"]],
        "Δ neg acc": [f"{v:+.3f}" for v in frame[f"neg_acc_delta_{k}"]],
        "Δ aff acc": [f"{v:+.3f}" for v in frame[f"aff_acc_delta_{k}"]],
        "role (zero abl.)": frame["negation_role"].fillna(""),
    })
