"""The negation-ablation pass: baselines, exact per-head ablations, attribution estimates, groups, one write.

Everything is computed in memory first (progress bars on stderr); then ONE transaction writes the
model row (if missing), the negation columns of `heads`, `negation_baselines`, `negation_items`,
`negation_item_effects`, `negation_groups` and the `runs` row. A failed or killed pass writes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from headwiki.ablation.attribution import ATP_KINDS, ATP_METRICS, ATP_SPECS, attribution_estimates
from headwiki.ablation.effects import ALPHA, EFFECT_SPECS, METRICS, Effects, cluster_labels, item_values, paired_effects
from headwiki.ablation.groups import HeadGroup, layer_groups, role_groups
from headwiki.ablation.items import CONDITIONS, Dataset, default_dataset, resolve_dataset
from headwiki.ablation.negation_specific import (
    REVERSAL, RULE_TEXT, ReversalEffects, kinds_disagree, negation_roles, reversal_effects,
)
from headwiki.ablation.prefilter import (
    DEFAULT_TOP_K, PREFILTER_MAX_GROUP, PREFILTER_MAX_ITEMS, Selection, agreement, expand, q_over_all_heads,
    resolve_mode, select_heads,
)
from headwiki.ablation.scoring import bridge_encoder, check_known_tokens, encode_items, logit_diffs
from headwiki.ablation.sweep import ABLATIONS, RESAMPLE, RESAMPLE_DRAWS, AblationRunner
from headwiki.db.lock import locked_pass
from headwiki.db.store import (
    assert_same_model, check_model_identity, connect, ensure_head_rows, head_label, new_run_id, record_run, replace_rows, transaction, utcnow,
    write_head_metrics, write_model, write_roles,
)
from headwiki.errors import HeadwikiError
from headwiki.kernels import describe as describe_kernels
from headwiki.models import LoadedModel
from headwiki.negation_rule import CHANCE
from headwiki.progress import log, progress_task
from headwiki.resume import SkippedPass, decide, fingerprint_inputs, fingerprint_of, source_digest
from headwiki.negation_spec import (  # noqa: F401 (re-exported: the label columns this pass writes)
    ABLATION_EXACT,
    DISAGREEMENT,
    KINDS_DISAGREE,
    NEGATION_DATASET,
    NEGATION_ROLE,
    SELECTED_BY,
)
from headwiki.spec import SPEC, Metric
from headwiki.stats import spearman, wilson_interval

PASS_NAME = "ablate"
PASS_VERSION = "1"  # bump when the ablation metrics change meaning (part of the resume fingerprint)
PRIMARY_ABLATION = "zero"
GROUP_EFFECT_SEED = 100  # group effects use seed + this (bootstrap) and + this + 5 (reversal); the sandbox reuses it
MEAN_DEFINITION = (
    "mean ablation sets the head's hook_z (output before W_O) at every position to its mean over all non-pad "
    "prompt tokens of every affirmative, negated and control prompt of the dataset (candidate tokens excluded), "
    "from the clean run"
)
ZERO_DEFINITION = "zero ablation sets the head's hook_z (output before W_O) to 0 at every position; b_O stays"
RESAMPLE_DEFINITION = (
    f"resample ablation sets the head's hook_z, position by position, to its value on another prompt of the dataset (a "
    f"different item, any condition, seeded draw within a batch of similar-length sequences; past the donor's length the "
    f"mean-ablation value); the slot log-probs of {RESAMPLE_DRAWS} donor draws are averaged"
)
DEFINITIONS = {"zero": ZERO_DEFINITION, "mean": MEAN_DEFINITION, RESAMPLE: RESAMPLE_DEFINITION}

def column_spec(col: str) -> Metric | None:
    """The declaration of one column this pass writes (None for CI/test columns, described by their metric's)."""
    found = SPEC.metric(col, ABLATIONS)
    if found is None and col.startswith(f"{NEGATION_ROLE.name}_"):
        kind = col.removeprefix(f"{NEGATION_ROLE.name}_")
        found = dataclasses.replace(NEGATION_ROLE, name=col, label=f"{NEGATION_ROLE.label} ({kind} ablation)",
                                    description=f"{NEGATION_ROLE.name} computed from {kind} ablation instead of zero ablation")
    return found



@dataclass
class AblateResult:
    """What the pass computed and wrote (frames are exactly the rows written)."""

    run_id: str
    model_id: str
    dataset: str
    n_items: int
    ablations: tuple[str, ...]
    heads: pd.DataFrame
    baselines: pd.DataFrame
    items: pd.DataFrame
    item_effects: pd.DataFrame
    groups: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)

    def top_heads(self, ablation: str = PRIMARY_ABLATION, n: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Significant (q < 0.05 on the negation-specific ΔR) heads whose removal LOWERS R (most first), and
        those whose removal RAISES it (most first); each frame holds only heads of its sign."""
        col = REVERSAL.expand(ablation).name
        cols = ["label", col, f"{col}_lo", f"{col}_hi", f"{col}_p", f"{col}_q",
                *(EFFECT_SPECS[m].expand(ablation).name for m in ("sens", "neg_acc", "aff_acc")), NEGATION_ROLE.name]
        sig = self.heads[self.heads[f"{col}_q"] < ALPHA]
        lower, higher = sig[sig[col] < 0], sig[sig[col] > 0]
        return lower.nsmallest(n, col)[cols], higher.nlargest(n, col)[cols]


@locked_pass(PASS_NAME)
def ablate_model(
    loaded: LoadedModel,
    db_path: str | Path,
    *,
    dataset: str = "english",
    ablations: Sequence[str] = ABLATIONS,
    seed: int = 0,
    batch_size: int = 64,
    max_rows: int = 256,
    max_items: int | None = None,
    n_boot: int = 2000,
    n_perm: int = 2000,
    groups: bool = True,
    attribution: bool = True,
    prefix_reuse: bool = True,
    skip_if_done: bool = False,
    mode: str = "auto",
    top_k: int = DEFAULT_TOP_K,
) -> AblateResult | SkippedPass:
    """Run the negation-ablation pass on `loaded` and write it to `db_path` (see module docstring).

    skip_if_done: return a SkippedPass when a finished run with identical parameters, items and
    detector role scores (which pick the ranked groups) exists in the database.
    mode: exact (every head) | prefilter (attribution for every head, exact for the top_k + top_k random
    others; see headwiki.ablation.prefilter) | auto (prefilter on CPU for models with many heads).
    """
    kinds = parse_ablations(ablations)
    mode = resolve_mode(mode, loaded.info.device, loaded.info.n_layers * loaded.info.n_heads)
    if mode == "prefilter" and max_items is None:
        max_items = PREFILTER_MAX_ITEMS
    if mode == "prefilter" and (dropped := [k for k in kinds if k not in ATP_KINDS]):
        # heads are chosen by an attribution estimate, which exists for deterministic replacements only
        kinds = tuple(k for k in kinds if k in ATP_KINDS)
        log(f"ablate {loaded.info.name}: prefilter mode runs {'+'.join(kinds)} only; {'+'.join(dropped)} ablation needs "
            "--mode exact (every head; minutes on a GPU)")
        if not kinds:
            raise HeadwikiError("prefilter mode needs zero or mean ablation: add --ablation zero,mean or use --mode exact")
    if top_k < 1:
        raise HeadwikiError(f"--top-k must be >= 1, got {top_k}")
    if batch_size < 1:
        raise HeadwikiError(f"--batch-size must be >= 1, got {batch_size}")
    if n_boot < 1 or n_perm < 1:
        raise HeadwikiError(f"--n-boot must be >= 1, got {min(n_boot, n_perm)}: a CI needs bootstrap resamples (e.g. --n-boot 2000)")
    started = utcnow()
    torch.manual_seed(seed)
    bridge, info = loaded.bridge, loaded.info
    assert_same_model(db_path, info.as_dict())
    ds = resolve_dataset(dataset, seed=seed, max_items=max_items)
    pad_id = bridge.tokenizer.pad_token_id if getattr(bridge.tokenizer, "pad_token_id", None) is not None else 0
    unk_rate = check_known_tokens(ds.items, bridge_encoder(bridge, loaded.start), getattr(bridge.tokenizer, "unk_token_id", None),
                                  ds.name, info.name, default_dataset(info.source))
    enc = encode_items(ds.items, bridge_encoder(bridge, loaded.start), info.n_ctx, pad_id=pad_id)
    role_scores = _read_role_scores(db_path, info.name) if groups else {}
    params = {"dataset": ds.name, "ablations": list(kinds), "seed": seed, "batch_size": batch_size, "max_items": max_items,
              "n_boot": n_boot, "n_perm": n_perm, "groups": groups, "attribution": attribution,
              "start_token": loaded.start.record()}
    if mode == "prefilter":  # exact-mode fingerprints stay what they were
        params.update(mode=mode, top_k=top_k)
    roles_key = hashlib.sha256("".join(f"{r}:{f.to_json()}" for r, f in sorted(role_scores.items())).encode()).hexdigest()[:16]
    code = {"ablation pass": PASS_VERSION, "ablation pass source": source_digest("headwiki.ablation")}
    fp_inputs = fingerprint_inputs(PASS_NAME, info, params, f"{ds.hash}:{roles_key}", code)
    fp = fingerprint_of(fp_inputs)
    if skip_if_done:
        done, why = decide(db_path, info.name, PASS_NAME, fp_inputs)
        if done:
            log(f"ablate {info.name}: skipped, finished run {done} has the same parameters, data and code (--force re-runs)")
            return SkippedPass(info.name, PASS_NAME, done)
        log(f"ablate {info.name}: {why}")
    if (replaced := _results_replaced(db_path, info.name, ds.name)):
        log(f"ablate {info.name}: {replaced}")
    n_layers, n_heads = info.n_layers, info.n_heads
    timings: dict[str, float] = {}

    runner = AblationRunner(bridge, enc, batch_size=batch_size, max_rows=max_rows, prefix_reuse=prefix_reuse, seed=seed)
    t0 = time.perf_counter()
    clean = runner.clean(keep_z=RESAMPLE in kinds)
    timings["clean_s"] = time.perf_counter() - t0
    base_vals = item_values(clean.slot_lp.cpu()).numpy()  # [n, 5]
    clusters, cluster_unit = cluster_labels([it.template for it in ds.items], [it.id for it in ds.items])

    atp: dict[str, dict[str, torch.Tensor]] | None = None
    if attribution or mode == "prefilter":
        t0 = time.perf_counter()
        atp = attribution_estimates(runner, [k for k in kinds if k in ATP_KINDS])
        timings["attribution_s"] = time.perf_counter() - t0
    selection: Selection | None = None
    t0 = time.perf_counter()
    if mode == "prefilter":
        assert atp is not None
        selection = select_heads(atp["sens"], top_k, seed)
        swept = _sweep_selected(runner, kinds, selection, n_layers, n_heads, enc.n_slots)
    else:
        with progress_task(f"ablating heads ({'+'.join(kinds)})", n_layers * n_heads * len(kinds)) as bar:
            swept = runner.sweep(kinds, progress=bar)
    timings["sweep_s"] = time.perf_counter() - t0

    group_list: list[HeadGroup] = []
    group_lp = torch.zeros(0, enc.n_slots)
    if groups:
        group_list = role_groups(role_scores) + layer_groups(n_layers, n_heads)
        if mode == "prefilter":  # small ranked role groups and the all-heads check; no per-layer groups
            group_list = [g for g in group_list if (g.kind == "role" and g.k <= PREFILTER_MAX_GROUP) or g.kind == "all"]
        specs = [(g.replica, k) for k in kinds for g in group_list]
        t0 = time.perf_counter()
        with progress_task("ablating head groups", len(specs)) as bar:
            group_lp = runner.run_specs(specs, progress=bar)
        timings["groups_s"] = time.perf_counter() - t0

    run_id = new_run_id()
    m = n_layers * n_heads
    effects: dict[str, Effects] = {}
    reversals: dict[str, ReversalEffects] = {}
    base_ld = logit_diffs(clean.slot_lp.cpu().double()).numpy()  # [n, 3]
    measured = selection.measured if selection is not None else list(range(m))
    for i, k in enumerate(kinds):
        ablated = swept[k].reshape(m, -1)[measured]
        e = paired_effects(base_vals, item_values(ablated).numpy(), clusters, n_boot=n_boot, n_perm=n_perm, seed=seed + 10 * i)
        r = reversal_effects(base_ld, logit_diffs(ablated.double()).numpy(), clusters, n_boot=n_boot, n_perm=n_perm,
                             seed=seed + 10 * i + 5)
        if selection is not None:  # back to one row per head: NaN where not measured, q over all heads
            e = dataclasses.replace(e, delta=expand(e.delta, measured, m), lo=expand(e.lo, measured, m),
                                    hi=expand(e.hi, measured, m), p=expand(e.p, measured, m),
                                    q=q_over_all_heads(e.p, measured, m))
            r = dataclasses.replace(r, delta=expand(r.delta, measured, m), lo=expand(r.lo, measured, m),
                                    hi=expand(r.hi, measured, m), p=expand(r.p, measured, m),
                                    q=q_over_all_heads(r.p[:, None], measured, m)[:, 0])
        effects[k], reversals[k] = e, r
    heads = _heads_frame(effects, reversals, atp if attribution or selection is not None else None, kinds, n_layers,
                         n_heads, ds.name)
    heads[ABLATION_EXACT.name] = [selection is None or i in set(measured) for i in range(m)]
    heads[SELECTED_BY.name] = pd.Series([("all" if selection is None else selection.source(i)) for i in range(m)], dtype=object)
    provenance = _provenance(runner, ds, enc, cluster_unit, timings, effects, atp, kinds, role_scores, groups)
    provenance["mode"] = mode
    if selection is not None:
        assert atp is not None
        provenance["prefilter"] = {
            "top_k": len(selection.top), "top": [head_label(i // n_heads, i % n_heads) for i in selection.top],
            "random_check": [head_label(i // n_heads, i % n_heads) for i in selection.random],
            "max_items": max_items, "groups": f"ranked role groups up to k={PREFILTER_MAX_GROUP} and all heads",
            "agreement": {k: agreement(atp["sens"][k].reshape(-1).numpy(), effects[k].delta[:, METRICS.index("sens")], selection)
                          for k in kinds if k in atp["sens"]},
        }
        for k, a in provenance["prefilter"]["agreement"].items():
            log(f"prefilter ({k}): exact ablation of {a['n_measured']} of {m} heads (top {a['k']} by attribution + "
                f"{a['random_check_size']} random); attribution vs exact on them: Spearman {a['spearman']:+.2f}, "
                f"top-{a['k']} recall {a['top_k_recall']:.2f}; the other {m - a['n_measured']} heads are estimates")
    provenance["kernels"] = describe_kernels(bridge)  # stock PyTorch or the opt-in oneDNN route
    provenance["fingerprint_inputs"] = fp_inputs  # lets a later build say why it re-runs
    provenance["permutation"] = {k: {"exact": e.p_exact, "p_floor": e.p_floor, "n_flip_units": e.n_flip_units,
                                     "unit": cluster_unit} for k, e in effects.items()}
    provenance["reversal_permutation"] = {"method": f"clean/ablated swapped within whole {cluster_unit}s, Monte Carlo",
                                          "n_perm": n_perm, "p_floor": 1 / (n_perm + 1), "exact": False}
    provenance["unknown_token_rate"] = unk_rate
    baselines = _baselines_frame(base_vals, base_ld, reversals[kinds[0]], clusters, info.name, ds.name, run_id, n_boot, seed)
    warn_uninformative(baselines, info.name)
    items_frame = _items_frame(ds, clean.slot_lp.cpu(), base_vals, info.name, run_id)
    effects_frame = _item_effects_frame(ds, clean.slot_lp.cpu(), swept, kinds, n_layers, n_heads, info.name)
    groups_frame = _groups_frame(group_list, group_lp, kinds, base_vals, base_ld, clusters, info.name, ds.name, run_id,
                                 n_boot, n_perm, seed)
    docs = _metric_docs(heads, ds, cluster_unit)

    with transaction(db_path) as con:
        check_model_identity(con, info.as_dict())
        exists = con.execute("SELECT count(*) FROM models WHERE model_id = ?", [info.name]).fetchall()[0][0]
        if not exists:
            write_model(con, info.as_dict())
        ensure_head_rows(con, info.name, n_layers, n_heads)
        write_head_metrics(con, info.name, heads, docs=docs, run_id=run_id, pass_name=PASS_NAME)
        write_roles(con, info.name, [{**r.row(), "held_in": NEGATION_ROLE.name} for r in SPEC.roles_of("negation")], family="negation", run_id=run_id)
        where = {"model_id": info.name, "dataset": ds.name}
        replace_rows(con, "negation_baselines", baselines, where)
        replace_rows(con, "negation_items", items_frame, where)
        replace_rows(con, "negation_item_effects", effects_frame, where)
        replace_rows(con, "negation_groups", groups_frame, where)
        record_run(con, run_id, info.name, PASS_NAME, params, ds.hash, seed, len(ds.items), info.device, started,
                   provenance=provenance, fingerprint=fp)
    return AblateResult(run_id, info.name, ds.name, len(ds.items), kinds, heads, baselines, items_frame, effects_frame,
                        groups_frame, provenance)


def _sweep_selected(runner: AblationRunner, kinds: tuple[str, ...], selection: Selection, n_layers: int, n_heads: int,
                    n_slots: int) -> dict[str, torch.Tensor]:
    """Exact single-head ablations of the selected heads only: {kind: [n_layers, n_heads, n_slots]}, NaN elsewhere."""
    measured = selection.measured
    specs = [({i // n_heads: (i % n_heads,)}, k) for k in kinds for i in measured]
    with progress_task(f"ablating {len(measured)} selected heads ({'+'.join(kinds)})", len(specs)) as bar:
        lp = runner.run_specs(specs, progress=bar)
    out = {k: torch.full((n_layers, n_heads, n_slots), float("nan")) for k in kinds}
    for j, (replica, k) in enumerate(specs):
        (layer, heads_), = replica.items()
        out[k][layer, heads_[0]] = lp[j]
    return out


def parse_ablations(ablations: Sequence[str]) -> tuple[str, ...]:
    """Validate and de-duplicate ablation names (zero, mean); one-line HeadwikiError otherwise."""
    kinds = tuple(dict.fromkeys(a.strip() for a in ablations if a.strip()))
    bad = [a for a in kinds if a not in ABLATIONS]
    if not kinds or bad:
        raise HeadwikiError(f"unknown ablation {bad[0] if bad else '(none)'!r}: use --ablation with one or more of {','.join(ABLATIONS)}")
    return kinds


def _read_role_scores(db_path: str | Path, model_id: str) -> dict[str, pd.DataFrame]:
    """Detector role scores (layer, head, score) per role the model's detect run declared (`roles` table); absent
    ones are logged."""
    if not Path(db_path).exists():
        log("[dim]no database yet: role-ranked group ablations skipped (run `headwiki detect` first)")
        return {}
    con = connect(db_path, read_only=True)
    try:
        cols = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'heads'").fetchall()}
        declared = con.execute("SELECT role, metric FROM roles WHERE model_id = ? AND family = 'detector' "
                               "ORDER BY sort_order, role", [model_id]).fetchall()
        if not declared:
            log("[dim]no detector roles recorded for this model: role-ranked group ablations skipped (run `headwiki detect` first)")
        out: dict[str, pd.DataFrame] = {}
        for role, metric in declared:
            if metric not in cols:
                log(f"[dim]heads has no {metric!r} column: {role} group ablations skipped (run `headwiki detect` first)")
                continue
            frame = con.execute(f'SELECT layer, head, "{metric}" AS score FROM heads WHERE model_id = ? ORDER BY layer, head',
                                [model_id]).df()
            if frame.empty or frame["score"].isna().all():
                log(f"[dim]no {role} scores for {model_id}: {role} group ablations skipped")
                continue
            out[role] = frame
        return out
    finally:
        con.close()


def _roles(e: Effects, r: ReversalEffects) -> pd.Series:
    """negation_role per head from one ablation kind (rule: headwiki.ablation.negation_specific)."""
    col = {metric: j for j, metric in enumerate(METRICS)}
    roles = negation_roles(r.delta, r.q, e.delta[:, col["sens"]], e.q[:, col["sens"]], e.delta[:, col["neg_acc"]],
                           e.q[:, col["neg_acc"]], e.delta[:, col["aff_acc"]], e.q[:, col["aff_acc"]])
    return pd.Series(roles, dtype=object)


def _heads_frame(effects: dict[str, Effects], reversals: dict[str, ReversalEffects],
                 atp: dict[str, dict[str, torch.Tensor]] | None, kinds: tuple[str, ...],
                 n_layers: int, n_heads: int, dataset: str) -> pd.DataFrame:
    grid = [(L, h) for L in range(n_layers) for h in range(n_heads)]
    cols: dict[str, Any] = {"layer": [L for L, _ in grid], "head": [h for _, h in grid],
                            "label": [head_label(L, h) for L, h in grid]}
    for k in kinds:
        e = effects[k]
        for j, metric in enumerate(METRICS):
            col = EFFECT_SPECS[metric].expand(k).name
            cols[col], cols[f"{col}_lo"], cols[f"{col}_hi"] = e.delta[:, j], e.lo[:, j], e.hi[:, j]
            cols[f"{col}_p"], cols[f"{col}_q"] = e.p[:, j], e.q[:, j]
        r, col = reversals[k], REVERSAL.expand(k).name
        cols[col], cols[f"{col}_lo"], cols[f"{col}_hi"], cols[f"{col}_p"], cols[f"{col}_q"] = r.delta, r.lo, r.hi, r.p, r.q
        if atp is not None and k in ATP_KINDS:
            for metric in ATP_METRICS:
                cols[ATP_SPECS[metric].expand(k).name] = atp[metric][k].reshape(-1).numpy()
    primary = PRIMARY_ABLATION if PRIMARY_ABLATION in kinds else kinds[0]
    cols[NEGATION_ROLE.name] = _roles(effects[primary], reversals[primary])
    for k in kinds:
        if k != PRIMARY_ABLATION:
            cols[f"{NEGATION_ROLE.name}_{k}"] = _roles(effects[k], reversals[k])
    frame = pd.DataFrame(cols)
    if len(kinds) > 1:
        frame[KINDS_DISAGREE.name], frame[DISAGREEMENT.name] = kinds_disagree(frame, kinds)
    frame[NEGATION_DATASET.name] = dataset
    return frame


def _metric_docs(heads: pd.DataFrame, ds: Dataset, cluster_unit: str) -> dict[str, dict[str, Any]]:
    """{column: description, data, n and its declaration} for every column the pass writes."""
    n = len(ds.items)
    data = f"{ds.name}: {ds.description}; {n} items"
    docs: dict[str, dict[str, Any]] = {}
    for col in heads.columns:
        if col in ("layer", "head", "label"):
            continue
        spec = column_spec(col)
        docs[col] = {"description": _describe(col, spec, cluster_unit), "data": data, "n": n, "spec": spec}
    return docs


def _describe(col: str, spec: Metric | None, cluster_unit: str) -> str:
    if spec is not None:
        kind = next((k for k in DEFINITIONS if col.endswith(f"_{k}")), None)
        if spec.kind in ("delta", "estimate") and kind is not None:
            return f"{spec.description} ({kind} ablation); {DEFINITIONS[kind]}" if spec.kind == "delta" else f"{spec.description} ({kind} ablation)"
        return spec.description
    for suffix, what in (("_lo", "lower bound of the 95% bootstrap CI of"), ("_hi", "upper bound of the 95% bootstrap CI of")):
        if col.endswith(suffix):
            return f"{what} {col[: -len(suffix)]} (resampling {cluster_unit}s as clusters)"
    if col.endswith("_p") and col.startswith(REVERSAL.name):
        return (f"two-sided paired permutation p-value of {col[:-2]}: clean and ablated swapped within whole "
                f"{cluster_unit}s (a ratio of means has no per-item sign flip)")
    if col.endswith("_p"):
        return (f"two-sided paired sign-flip permutation p-value of {col[:-2]}, flipping the bootstrap's clusters "
                "(exact or adaptive Monte Carlo; provenance.permutation gives the method and its resolution floor)")
    if col.endswith("_q"):
        return f"Benjamini-Hochberg q-value of {col[:-2]} across all heads of the model (per metric and ablation)"
    return col


def _baselines_frame(vals: np.ndarray, lds: np.ndarray, rev: ReversalEffects, clusters: np.ndarray, model_id: str,
                     dataset: str, run_id: str, n_boot: int, seed: int) -> pd.DataFrame:
    """Rows per condition: accuracy with its Wilson 95% CI and mean LD with a cluster-bootstrap 95% CI; plus a
    'sensitivity' row (accuracy NULL, mean_ld = mean S with its CI) and a 'reversal' row (mean_ld = R with its CI).
    `informative` is False, with a `note`, where the condition's accuracy is within noise of chance (its Wilson
    CI holds 0.5) or R is undefined. vals [n, k] (METRICS), lds [n, 3] (CONDITIONS)."""
    from headwiki.stats import cluster_bootstrap_mean_ci

    n = vals.shape[0]
    correct_col = {"affirmative": METRICS.index("aff_acc"), "negated": METRICS.index("neg_acc"), "control": METRICS.index("ctrl_acc")}
    with_s = np.concatenate([lds, (lds[:, 2] - lds[:, 1])[:, None]], axis=1)
    mean, lo, hi = cluster_bootstrap_mean_ci(with_s, clusters, n_boot=n_boot, seed=seed)
    rows = []
    for c, cond in enumerate(CONDITIONS):
        k = int(round(vals[:, correct_col[cond]].sum()))
        a_lo, a_hi = wilson_interval(k, n)
        at_chance = a_lo <= CHANCE <= a_hi
        rows.append({"condition": cond, "accuracy": k / n, "accuracy_lo": a_lo, "accuracy_hi": a_hi,
                     "mean_ld": mean[c], "mean_ld_lo": lo[c], "mean_ld_hi": hi[c], "informative": not at_chance,
                     "note": (f"{cond} accuracy {k / n:.3f} [{a_lo:.3f}, {a_hi:.3f}] is within noise of chance ({CHANCE}): "
                              f"ablation effects on this condition are uninformative") if at_chance else None})
    rows.append({"condition": "sensitivity", "accuracy": np.nan, "accuracy_lo": np.nan, "accuracy_hi": np.nan,
                 "mean_ld": mean[3], "mean_ld_lo": lo[3], "mean_ld_hi": hi[3], "informative": True, "note": None})
    rows.append({"condition": "reversal", "accuracy": np.nan, "accuracy_lo": np.nan, "accuracy_hi": np.nan,
                 "mean_ld": rev.clean, "mean_ld_lo": rev.clean_lo, "mean_ld_hi": rev.clean_hi, "informative": rev.defined,
                 "note": None if rev.defined else ("mean LD_ctrl is not clearly positive (its 95% CI holds 0): the model does not "
                                                   "prefer the targets on control prompts, so the reversal R and every "
                                                   "negation-specific effect are undefined (NULL) on this dataset: its ablation "
                                                   "effects are uninformative")})
    frame = pd.DataFrame(rows)
    frame["model_id"], frame["dataset"], frame["n_items"], frame["run_id"] = model_id, dataset, n, run_id
    return frame


def warn_uninformative(baselines: pd.DataFrame, model_id: str) -> None:
    """Say loudly, on stderr, which baselines cannot carry ablation effects (the DB and model page keep the note)."""
    for note in baselines.loc[~baselines["informative"].astype(bool), "note"]:
        log(f"[bold yellow]warning[/bold yellow] {model_id}: {note}")


def _items_frame(ds: Dataset, slot_lp: torch.Tensor, vals: np.ndarray, model_id: str, run_id: str) -> pd.DataFrame:
    ld = logit_diffs(slot_lp.double()).numpy()
    frame = pd.DataFrame([it.as_dict() for it in ds.items]).rename(columns={"id": "item_id"})
    frame["ld_aff"], frame["ld_neg"], frame["ld_ctrl"] = ld[:, 0], ld[:, 1], ld[:, 2]
    frame["sensitivity"] = ld[:, 2] - ld[:, 1]
    frame["aff_correct"], frame["neg_correct"], frame["ctrl_correct"] = vals[:, 1] > 0, vals[:, 0] > 0, vals[:, 2] > 0
    frame["model_id"], frame["dataset"], frame["run_id"] = model_id, ds.name, run_id
    return frame


def _item_effects_frame(ds: Dataset, clean_lp: torch.Tensor, swept: dict[str, torch.Tensor], kinds: tuple[str, ...],
                        n_layers: int, n_heads: int, model_id: str) -> pd.DataFrame:
    base = logit_diffs(clean_lp.double())  # [n, 3]
    ids = np.array([it.id for it in ds.items])
    parts = []
    for k in kinds:
        d = (logit_diffs(swept[k].double()) - base).numpy()  # [nL, nH, n, 3]
        nL, nH, n, _ = d.shape
        layer, head, item = np.meshgrid(np.arange(nL), np.arange(nH), np.arange(n), indexing="ij")
        parts.append(pd.DataFrame({
            "layer": layer.ravel().astype(np.int32), "head": head.ravel().astype(np.int32), "ablation": k,
            "item_id": ids[item.ravel()], "d_ld_aff": d[..., 0].ravel(), "d_ld_neg": d[..., 1].ravel(),
            "d_ld_ctrl": d[..., 2].ravel(), "d_sensitivity": (d[..., 2] - d[..., 1]).ravel(),
        }))
    frame = pd.concat(parts, ignore_index=True).dropna(subset=["d_ld_neg"]).reset_index(drop=True)  # prefilter: measured heads only
    frame["model_id"], frame["dataset"] = model_id, ds.name
    return frame


def _groups_frame(group_list: list[HeadGroup], group_lp: torch.Tensor, kinds: tuple[str, ...], base_vals: np.ndarray,
                  base_ld: np.ndarray, clusters: np.ndarray, model_id: str, dataset: str, run_id: str, n_boot: int,
                  n_perm: int, seed: int) -> pd.DataFrame:
    if not group_list:
        return pd.DataFrame()
    vals = item_values(group_lp).numpy()  # [len(kinds) * G, n, k]
    e = paired_effects(base_vals, vals, clusters, n_boot=n_boot, n_perm=n_perm, seed=seed + GROUP_EFFECT_SEED)
    r = reversal_effects(base_ld, logit_diffs(group_lp.double()).numpy(), clusters, n_boot=n_boot, n_perm=n_perm,
                         seed=seed + GROUP_EFFECT_SEED + 5)
    rows = []
    for i, (k, g) in enumerate((k, g) for k in kinds for g in group_list):
        row: dict[str, Any] = {"group_kind": g.kind, "group_name": g.name, "k": g.k, "heads": g.labels, "ablation": k}
        for j, metric in enumerate(METRICS[:4]):
            col = EFFECT_SPECS[metric].name
            row[col], row[f"{col}_lo"], row[f"{col}_hi"], row[f"{col}_p"] = e.delta[i, j], e.lo[i, j], e.hi[i, j], e.p[i, j]
        rev = REVERSAL.name
        row[rev], row[f"{rev}_lo"], row[f"{rev}_hi"], row[f"{rev}_p"] = r.delta[i], r.lo[i], r.hi[i], r.p[i]
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["model_id"], frame["dataset"], frame["n_items"], frame["run_id"] = model_id, dataset, base_vals.shape[0], run_id
    return frame


def _results_replaced(db_path: str | Path, model_id: str, dataset: str) -> str | None:
    """What this run will replace: the model's negation columns come from one dataset at a time."""
    from headwiki.db.store import reading

    if not Path(db_path).exists():
        return None
    with reading(db_path) as con:
        rows = con.execute(
            "SELECT run_id, params->>'$.dataset', n, finished_at FROM runs WHERE model_id = ? AND pass_name = ? "
            "AND status = 'finished' ORDER BY finished_at DESC LIMIT 1", [model_id, PASS_NAME]).fetchall()
    if not rows:
        return None
    run_id, old_dataset, n, finished = rows[0]
    same = "" if old_dataset == dataset else f" with dataset {dataset}"
    return (f"replacing the negation results of run {run_id} (dataset {old_dataset}, {n} items, finished {finished:%Y-%m-%d %H:%M})"
            f"{same}")


def _provenance(runner: AblationRunner, ds: Dataset, enc: Any, cluster_unit: str, timings: dict[str, float],
                effects: dict[str, Effects], atp: dict[str, dict[str, torch.Tensor]] | None, kinds: tuple[str, ...],
                role_scores: dict[str, pd.DataFrame], groups: bool) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "dataset": ds.name, "dataset_source": ds.source, "n_items": len(ds.items),
        "n_templates": len({it.template for it in ds.items}), "bootstrap_cluster_unit": cluster_unit,
        "n_units": enc.n_units, "prefix_reuse": runner.fast, "prefix_reuse_max_abs_diff": runner.fast_path_diff,
        "replicas_per_forward": runner.replicas_per_forward, "timings_s": timings,
        **{f"{k}_ablation": d for k, d in DEFINITIONS.items() if k in kinds}, "primary_ablation_for_role": PRIMARY_ABLATION,
        "alpha": ALPHA, "role_groups": sorted(role_scores) if groups else [],
    }
    if atp is not None:
        prov["atp_spearman"] = {
            k: {metric: spearman(atp[metric][k].reshape(-1).numpy(), effects[k].delta[:, METRICS.index(metric)])
                for metric in ATP_METRICS}
            for k in kinds if k in ATP_KINDS
        }
    return prov
