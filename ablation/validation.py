"""The causal-validation pass: do a role's labelled heads carry the role's behaviour?

For each role with a behavioural signature (:mod:`headwiki.ablation.signature`):

* induction -> the in-context loss drop D on repeated random tokens;
* previous_token -> D and the labelled induction heads' induction score (K-composition);
* duplicate_token -> none known that isolates it: a row says so and nothing is claimed;
* name_mover -> the IOI logit difference on headwiki's IOI prompts (:mod:`headwiki.ablation.ioi_signature`);
* successor, copy_suppression -> next-ordinal accuracy ("Monday, Tuesday, Wednesday," -> " Thursday";
  :mod:`headwiki.ablation.ordinal`). These two have their own prompts (PROMPT_SIGNATURES) and no KV-group /
  BOS-parked groups; a model that cannot do the task gets a row saying so instead of an effect.

The labelled heads (detector `roles`, ranked by the role's score) are ablated together (zero and
mean ablation, separately) as groups top1, top3, top5 and all. Effect = fraction of the clean signature removed
(1 - mean ablated / mean clean, ratio of means over sequences), 95% CI by bootstrap over
sequences. Each group is compared with `n_random` (>= 10) random head sets with the same layer
multiset, drawn from the heads of those layers that hold neither the role nor the signature's
role. p_rank = (1 + #random effects >= effect) / (1 + n_random); p_paired = the largest, over
random sets, two-sided paired sign-flip permutation p (over sequences) of labelled minus random;
significant = the effect beats every random set and p_paired < 0.01.

Two more groups per role, with the same statistics: under grouped-query attention, `kv_groups` — every query head
of the KV groups that hold the labelled heads, against random whole KV groups of the same layers (what a KV-level
intervention removes: an induction head's BOS-only groupmate goes with it); and `bos_parked` — the heads flagged
`<metric>_bos_parked` for the role (raw score below the threshold, BOS-excluded score above it; not labelled), against
random heads of their layers: does the flag point at heads that do the role's job?

Every head is also zero-ablated alone on D (`causal_share_zero`, with CI) — on CPU for models with
many heads (mode auto -> prefilter) only the top `top_k` heads by an attribution-patching estimate
(`causal_share_atp`) plus `top_k` random others are ablated exactly (`causal_share_exact`); the heads with the
largest shares (the labelled induction heads and the top `n_compare` by share) are re-measured
with mean and resample ablation (`causal_share_mean`, `causal_share_resample`), and
`causally_important` marks the top `n_compare` heads whose share CI excludes 0 (labelled or not).

Computed in memory, then ONE transaction writes `role_validation`, the head columns and the runs row.
"""

from __future__ import annotations

import dataclasses

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from headwiki.ablation.prefilter import agreement, expand, resolve_mode, select_heads
from headwiki.ablation.ioi_signature import ioi_signature_rows
from headwiki.ablation.ordinal import ordinal_signature_rows
from headwiki.ablation.signature import SignatureRunner
from headwiki.ablation.sweep import Replica, Spec
from headwiki.db.lock import locked_pass
from headwiki.db.store import (
    connect, ensure_head_rows, head_label, new_run_id, record_run, replace_rows, transaction, utcnow,
    write_head_metrics, write_model,
)
from headwiki.detectors.data import ordinary_token_ids, repeat_sequences, tokens_hash
from headwiki.detectors.induction import ROLE as INDUCTION
from headwiki.kv_group import kv_groups
from headwiki.causal_spec import (  # noqa: F401 (re-exported)
    BOS_PARKED_GROUP,
    KV_GROUPS,
    CAUSAL_SHARE,
    CAUSAL_SHARE_ATP,
    CAUSAL_SHARE_EXACT,
    CAUSAL_SHARE_ZERO,
    CAUSALLY_IMPORTANT,
    DROP,
    IND_SCORE,
    IOI_LD,
    NEXT_ORDINAL,
    SIGNATURE_WORDS,
)
from headwiki.errors import HeadwikiError
from headwiki.spec import bos_parked_name
from headwiki.models import LoadedModel
from headwiki.progress import log, progress_task
from headwiki.resume import SkippedPass, find_finished, fingerprint
from headwiki.stats import bootstrap_ratio_ci, paired_permutation_pvalue

PASS_NAME = "validate"
ALPHA = 0.01
GROUP_KS: tuple[int, ...] = (1, 3, 5)
# Groups are ablated both ways: zero ablation can break a head off-distribution (on SmolLM2 zero-ablating
# the unlabelled L1H4 alone removes most of the in-context effect, mean ablation of it nothing), so a
# random set that happens to hold such a head is a misleading control under zero ablation alone.
GROUP_ABLATIONS: tuple[str, ...] = ("zero", "mean")
DEFAULT_N_SEQS = 16
DEFAULT_HALF_LEN = 12
DEFAULT_SINGLE_TOP_K = 24  # prefilter mode: single heads ablated exactly by attribution rank (plus as many random)
DEFAULT_N_RANDOM = 10
DEFAULT_N_COMPARE = 10
SEED_OFFSET = 7919  # validation sequences never coincide with the detector's (seed, seed + 1)

SIGNATURE_TEXT = {
    DROP: "in-context loss drop on repeated random tokens: mean loss on the first copy minus the second copy (nats)",
    IND_SCORE: "mean induction score of the labelled induction heads on the same repeated random tokens",
}
SIGNATURES: tuple[str, ...] = (DROP, IND_SCORE)  # measured on the repeated random tokens (SignatureRunner)
# Signatures with their own prompts and runner: fn(loaded, role, groups, ablations, effect_row, base, n_boot, n_perm, seed)
# -> (role_validation rows, record); the provenance keeps each record under its key.
PROMPT_SIGNATURES: dict[str, tuple[str, Any]] = {IOI_LD: ("ioi", ioi_signature_rows),
                                                NEXT_ORDINAL: ("next_ordinal", ordinal_signature_rows)}


@dataclass
class ValidateResult:
    """What the pass computed and wrote (frames are the rows written)."""

    run_id: str
    model_id: str
    rows: pd.DataFrame  # role_validation
    heads: pd.DataFrame  # per-head causal columns
    provenance: dict[str, Any] = field(default_factory=dict)

    def floors(self) -> pd.DataFrame:
        """The labelled-group rows (group 'all', every ablation) with their verdicts."""
        sel = self.rows[(self.rows.group_name == "all") & self.rows.effect.notna()]
        return sel[["role", "signature", "ablation", "k", "effect", "effect_lo", "effect_hi", "random_mean", "random_max",
                    "p_rank", "p_paired", "significant"]]


@dataclass(frozen=True)
class RoleCheck:
    """What the model's detect run declared for one detector role (`roles` table)."""

    metric: str
    signatures: tuple[str, ...]
    no_signature: str
    flag: str = ""  # the role's BOS-parked flag column when the heads table has it


def read_labelled(db_path: str | Path, model_id: str) -> tuple[pd.DataFrame, dict[str, RoleCheck]]:
    """(layer, head, roles and one score column per detector role, named by the role; the roles' declarations).
    HeadwikiError without a detect run."""
    if not Path(db_path).exists():
        raise HeadwikiError(f"database {db_path} does not exist: run `headwiki detect --model ...` first (validation ablates labelled heads)")
    con = connect(db_path, read_only=True)
    try:
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'heads'").fetchall()}
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        declared = con.execute(
            "SELECT role, metric, signatures, no_signature FROM roles WHERE model_id = ? AND family IN ('detector', 'ioi') "
            "ORDER BY sort_order, role", [model_id]).fetchall() if "roles" in tables else []
        checks = {r: RoleCheck(m, tuple(sig or ()), ns or "", bos_parked_name(m) if bos_parked_name(m) in cols else "")
                  for r, m, sig, ns in declared if m in cols}
        if "roles" not in cols or not checks:
            raise HeadwikiError(f"{db_path} has no detector results for {model_id!r}: run `headwiki detect --model ...` first")
        scores = ", ".join([f'"{c.metric}" AS "{r}"' for r, c in checks.items()]
                           + [f'"{c.flag}"' for c in checks.values() if c.flag])
        frame = con.execute(f"SELECT layer, head, roles, {scores} FROM heads WHERE model_id = ? ORDER BY layer, head",
                            [model_id]).df()
    finally:
        con.close()
    if frame.empty or frame["roles"].isna().all():
        raise HeadwikiError(f"no detector results for model {model_id!r} in {db_path}: run `headwiki detect` on it first")
    frame["roles"] = frame["roles"].map(lambda r: list(r) if r is not None else [])
    return frame, checks


def labelled_heads(frame: pd.DataFrame, role: str) -> list[tuple[int, int]]:
    """Heads holding `role`, best score first."""
    sel = frame[frame["roles"].map(lambda r: role in r)].sort_values([role, "layer", "head"], ascending=[False, True, True])
    return [(int(L), int(h)) for L, h in zip(sel["layer"], sel["head"])]


def flagged_heads(frame: pd.DataFrame, flag: str) -> list[tuple[int, int]]:
    """Heads whose boolean column `flag` is true ([] without the column)."""
    if not flag or flag not in frame:
        return []
    sel = frame[frame[flag].fillna(False).astype(bool)]
    return [(int(L), int(h)) for L, h in zip(sel["layer"], sel["head"])]


def replica(heads: list[tuple[int, int]]) -> Replica:
    out: dict[int, list[int]] = {}
    for L, h in heads:
        out.setdefault(L, []).append(h)
    return {L: tuple(sorted(hs)) for L, hs in out.items()}


def matched_random_sets(group: list[tuple[int, int]], excluded: set[tuple[int, int]], n_heads: int, n_sets: int,
                        rng: np.random.Generator) -> list[list[tuple[int, int]]]:
    """`n_sets` random head sets with the group's layer multiset, avoiding `excluded` where the layer allows."""
    per_layer: dict[int, int] = {}
    for L, _ in group:
        per_layer[L] = per_layer.get(L, 0) + 1
    sets = []
    for _ in range(n_sets):
        chosen: list[tuple[int, int]] = []
        for L, count in sorted(per_layer.items()):
            pool = [h for h in range(n_heads) if (L, h) not in excluded]
            if len(pool) < count:  # not enough unlabelled heads in this layer: fall back to any head outside the group
                pool = [h for h in range(n_heads) if (L, h) not in set(group)] or list(range(n_heads))
            picks = rng.choice(pool, size=min(count, len(pool)), replace=False)
            chosen.extend((L, int(h)) for h in picks)
        sets.append(chosen)
    return sets


def matched_random_kv_sets(groups: list[tuple[int, int]], excluded: set[tuple[int, int]], kv: list[list[int]],
                           n_kv: int, n_sets: int, rng: np.random.Generator) -> list[list[tuple[int, int]]]:
    """`n_sets` random sets of whole KV groups with the layer multiset of `groups` ((layer, kv head) pairs), avoiding KV
    groups that hold an `excluded` head where the layer allows, each expanded to its query heads (layer, head)."""
    per_layer: dict[int, int] = {}
    for L, _ in groups:
        per_layer[L] = per_layer.get(L, 0) + 1
    sets = []
    for _ in range(n_sets):
        chosen: list[tuple[int, int]] = []
        for L, count in sorted(per_layer.items()):
            held = {kv[L][h] for (layer, h) in excluded if layer == L}
            pool = [g for g in range(n_kv) if g not in held]
            if len(pool) < count:  # every group of the layer holds a labelled head: any group outside the set
                pool = [g for g in range(n_kv) if (L, g) not in set(groups)] or list(range(n_kv))
            picks = {int(g) for g in rng.choice(pool, size=min(count, len(pool)), replace=False)}
            chosen.extend((L, h) for h in range(len(kv[L])) if kv[L][h] in picks)
        sets.append(chosen)
    return sets


def kv_group_heads(heads: list[tuple[int, int]], kv: list[list[int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The (layer, kv head) groups holding `heads`, and every query head of those groups (sorted)."""
    groups = sorted({(L, kv[L][h]) for L, h in heads})
    return groups, [(L, h) for L, g in groups for h in range(len(kv[L])) if kv[L][h] == g]


def group_sizes(n_labelled: int, ks: tuple[int, ...] = GROUP_KS) -> list[tuple[str, int]]:
    """(name, k): top-k for each k in `ks` below the label count, then 'all'."""
    return [(f"top{k}", k) for k in ks if k < n_labelled] + ([("all", n_labelled)] if n_labelled else [])


@locked_pass(PASS_NAME)
def validate_model(
    loaded: LoadedModel,
    db_path: str | Path,
    *,
    n_seqs: int = DEFAULT_N_SEQS,
    seq_len: int = DEFAULT_HALF_LEN,
    n_random: int = DEFAULT_N_RANDOM,
    n_compare: int = DEFAULT_N_COMPARE,
    seed: int = 0,
    n_boot: int = 2000,
    n_perm: int = 2000,
    max_rows: int = 64,
    mode: str = "auto",
    top_k: int = DEFAULT_SINGLE_TOP_K,
    ks: tuple[int, ...] = GROUP_KS,
    group_ablations: tuple[str, ...] = GROUP_ABLATIONS,
    skip_if_done: bool = False,
) -> ValidateResult | SkippedPass:
    """Run the causal-validation pass (module docstring) on `loaded`; write it to `db_path` in one transaction."""
    if n_random < 10:
        raise HeadwikiError(f"--n-random {n_random} is too few: the comparison needs at least 10 matched random sets")
    if n_seqs < 2:
        raise HeadwikiError(f"--n-seqs {n_seqs} is too small: a bootstrap CI needs at least 2 sequences")
    bridge, info = loaded.bridge, loaded.info
    if 2 * seq_len + 1 >= info.n_ctx or seq_len < 3:
        raise HeadwikiError(f"--seq-len {seq_len} does not fit: use 3 <= L < {(info.n_ctx - 1) // 2}")
    frame, checks = read_labelled(db_path, info.name)
    signatures = {r: tuple(x for x in c.signatures if x in SIGNATURES) for r, c in checks.items()}
    tokenizer = bridge.tokenizer
    tokens = repeat_sequences(ordinary_token_ids(tokenizer, info.d_vocab), n_seqs, seq_len, loaded.start.id, seed + SEED_OFFSET)
    labelled = {role: labelled_heads(frame, role) for role in checks}
    params = {"n_seqs": n_seqs, "seq_len": seq_len, "n_random": n_random, "n_compare": n_compare, "seed": seed,
              "mode": mode, "top_k": top_k, "ks": list(ks), "group_ablations": list(group_ablations),
              "n_boot": n_boot, "n_perm": n_perm, "labelled": {r: [head_label(*x) for x in v] for r, v in labelled.items()},
              "start_token": loaded.start.record()}
    data_hash = tokens_hash(tokens)
    fp = fingerprint(PASS_NAME, info, params, data_hash)
    if skip_if_done and (done := find_finished(db_path, info.name, PASS_NAME, fp)):
        log(f"validate {info.name}: skipped, finished run {done} has the same parameters, labels and data (--force re-runs)")
        return SkippedPass(info.name, PASS_NAME, done)
    started = utcnow()
    timings: dict[str, float] = {}
    n_layers, n_heads = info.n_layers, info.n_heads
    induction_heads = labelled.get(INDUCTION.name, [])
    runner = SignatureRunner(bridge, tokens, seq_len, induction_heads, max_rows=max_rows)
    t0 = time.perf_counter()
    runner.clean()
    assert runner.clean_drop is not None and runner.clean_target_scores is not None
    timings["clean_s"] = time.perf_counter() - t0
    clean_drop = runner.clean_drop.numpy().astype(np.float64)  # [n]
    clean_ind = runner.clean_target_scores.mean(-1).numpy().astype(np.float64) if induction_heads else None
    if clean_drop.mean() <= 0:
        log(f"[yellow]{info.name} shows no in-context loss drop on repeated random tokens (mean {clean_drop.mean():.3f} nats): "
            "effects are reported but cannot be read as fractions of an in-context effect")

    # ----- group specs: labelled top-k and their matched random sets ------------------------------
    rng = np.random.default_rng(seed)
    plan: list[dict[str, Any]] = []  # one entry per (role, group): spec indices
    specs: list[Spec] = []
    candidates: list[tuple[str, str, list[tuple[int, int]], list[list[tuple[int, int]]]]] = []  # (role, group, heads, randoms)
    for role, sigs in signatures.items():
        heads = labelled[role]
        flagged = flagged_heads(frame, checks[role].flag)
        if sigs and flagged:  # the role's BOS-parked heads (a flag, not a label): do they do its job?
            candidates.append((role, BOS_PARKED_GROUP, flagged,
                               matched_random_sets(flagged, set(heads) | set(flagged) | set(induction_heads), n_heads, n_random, rng)))
        if not sigs or not heads:
            continue
        excluded = set(heads) | set(induction_heads)
        for name, k in group_sizes(len(heads), ks):
            group = heads[:k]
            randoms = matched_random_sets(group, excluded, n_heads, n_random, rng)  # the same sets for every ablation
            candidates.append((role, name, group, randoms))
        if info.n_kv_heads < n_heads:  # grouped-query attention: the labelled heads' whole KV groups vs random KV groups
            kv = kv_groups(n_layers, n_heads, info.n_kv_heads)
            held, group = kv_group_heads(heads, kv)
            candidates.append((role, KV_GROUPS, group, matched_random_kv_sets(held, excluded, kv, info.n_kv_heads, n_random, rng)))
    for role, name, group, randoms in candidates:
        for kind in group_ablations:
            plan.append({"role": role, "name": name, "k": len(group), "heads": group, "spec": len(specs), "ablation": kind,
                         "random": list(range(len(specs) + 1, len(specs) + 1 + n_random)), "random_heads": randoms})
            specs.append((replica(group), kind))
            specs.extend((replica(r), kind) for r in randoms)
    t0 = time.perf_counter()
    with progress_task(f"validate {info.name}: labelled vs random head sets", len(specs)) as bar:
        g_drop, g_scores = runner.measure(specs, progress=bar)
    timings["groups_s"] = time.perf_counter() - t0

    # ----- every head alone (zero): exact, or attribution for all + exact for the top and a random check -----
    m = n_layers * n_heads
    single_mode = resolve_mode(mode, info.device, m)
    t0 = time.perf_counter()
    atp_share = None
    if single_mode == "prefilter":
        atp_share = (-runner.attribution().reshape(-1).numpy() / clean_drop.sum())  # estimated share removed [m]
        selection = select_heads({"zero": torch.tensor(atp_share)}, top_k, seed)
        measured = selection.measured
    else:
        selection, measured = None, list(range(m))
    singles: list[Spec] = [({i // n_heads: (i % n_heads,)}, "zero") for i in measured]
    with progress_task(f"validate {info.name}: {len(singles)} heads alone (zero)", len(singles)) as bar:
        s_drop, _ = runner.measure(singles, progress=bar)
    timings["single_heads_s"] = time.perf_counter() - t0
    removed = clean_drop[None, :] - s_drop.numpy().astype(np.float64)  # [len(measured), n]
    share, share_lo, share_hi = (expand(x, measured, m) for x in bootstrap_ratio_ci(removed.T, clean_drop, n_boot=n_boot, seed=seed))
    ranked = [int(i) for i in np.argsort(-np.nan_to_num(share, nan=-np.inf), kind="stable")]
    important = [i for i in ranked[:n_compare] if share_lo[i] > 0]
    compare = sorted(set(important) | {L * n_heads + h for L, h in induction_heads})
    other_specs: list[Spec] = [({i // n_heads: (i % n_heads,)}, kind) for kind in ("mean", "resample") for i in compare]
    t0 = time.perf_counter()
    with progress_task(f"validate {info.name}: mean/resample on {len(compare)} heads", len(other_specs)) as bar:
        o_drop, _ = runner.measure(other_specs, progress=bar)
    timings["compare_s"] = time.perf_counter() - t0

    run_id = new_run_id()
    rows = _rows(plan, g_drop.numpy().astype(np.float64), g_scores.numpy().astype(np.float64), clean_drop, clean_ind,
                 labelled, checks, info.name, run_id, n_seqs, seq_len, n_boot, n_perm, seed)
    records: dict[str, dict[str, Any]] = {key: {} for key, _ in PROMPT_SIGNATURES.values()}
    for role, check in checks.items():  # signatures with their own prompts (IOI, next ordinal): top-k groups vs random
        for sig in check.signatures:
            if sig not in PROMPT_SIGNATURES:
                continue
            key, rows_fn = PROMPT_SIGNATURES[sig]
            heads_ = labelled[role]
            groups = [(name, heads_[:k], matched_random_sets(heads_[:k], set(heads_), n_heads, n_random, rng))
                      for name, k in group_sizes(len(heads_), ks)]
            t0 = time.perf_counter()
            extra, records[key][role] = rows_fn(loaded, role, groups, group_ablations, _effect_row,
                                                {"model_id": info.name, "run_id": run_id}, n_boot, n_perm, seed + SEED_OFFSET)
            timings[f"{key}_{role}_s"] = time.perf_counter() - t0
            if extra:
                rows = pd.concat([rows, pd.DataFrame(extra)], ignore_index=True)
            elif not records[key][role].get("applicable", True):  # say why nothing is validated (e.g. no IOI ability)
                why = records[key][role]["why"]
                if heads_:  # labelled heads, but the model cannot show this signature: one row says so
                    rows = pd.concat([rows, pd.DataFrame([{
                        "model_id": info.name, "run_id": run_id, "ablation": "zero", "role": role, "signature": sig,
                        "group_name": "all", "k": len(heads_), "heads": [head_label(*x) for x in heads_],
                        "note": f"{SIGNATURE_WORDS[sig]}: {why}", "significant": False}])], ignore_index=True)
                else:
                    rows.loc[(rows.role == role) & (rows.signature == "none"), "note"] = why
    heads = _head_frame(share, share_lo, share_hi, compare, o_drop.numpy().astype(np.float64), clean_drop, important,
                        n_layers, n_heads)
    heads[CAUSAL_SHARE_EXACT.name] = [i in set(measured) for i in range(m)]
    if atp_share is not None and selection is not None:
        heads[CAUSAL_SHARE_ATP.name] = atp_share
        agree = agreement(atp_share, share, selection)
        log(f"validate {info.name}: single-head shares exact for {len(measured)} of {m} heads (top {len(selection.top)} by "
            f"attribution + {len(selection.random)} random); attribution vs exact on them: Spearman {agree['spearman']:+.2f}, "
            f"top-{agree['k']} recall {agree['top_k_recall']:.2f}; the other {m - len(measured)} heads are estimates")
    provenance = {
        "model_revision": info.revision, "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "prefix_reuse": runner.fast, "fast_path_max_diff_nats": runner.fast_path_diff,
        "clean_in_context_loss_drop": float(clean_drop.mean()),
        "clean_induction_heads_score": float(clean_ind.mean()) if clean_ind is not None else None,
        "n_forward_specs": len(specs) + len(singles) + len(other_specs), "single_head_mode": single_mode,
        "single_head_prefilter": None if selection is None else {
            "top": [head_label(i // n_heads, i % n_heads) for i in selection.top],
            "random_check": [head_label(i // n_heads, i % n_heads) for i in selection.random],
            "agreement": agreement(atp_share, share, selection)},
        "important_heads": [head_label(i // n_heads, i % n_heads) for i in important],
        "random_sets": {f"{p['role']}/{p['name']}": [[head_label(*x) for x in r] for r in p["random_heads"]] for p in plan},
        **records,
    }
    docs = _docs(n_seqs, seq_len, n_compare)
    with transaction(db_path) as con:
        if not con.execute("SELECT count(*) FROM models WHERE model_id = ?", [info.name]).fetchall()[0][0]:
            write_model(con, info.as_dict())
        ensure_head_rows(con, info.name, n_layers, n_heads)
        write_head_metrics(con, info.name, heads, docs=docs, run_id=run_id, pass_name=PASS_NAME)
        replace_rows(con, "role_validation", rows, {"model_id": info.name})
        record_run(con, run_id, info.name, PASS_NAME, params, data_hash, seed, n_seqs, info.device, started,
                   provenance=provenance, fingerprint=fp)
    return ValidateResult(run_id, info.name, rows, heads, provenance)


def _effect_row(ablated: np.ndarray, randoms: np.ndarray, clean: np.ndarray, n_boot: int, n_perm: int, seed: int) -> dict[str, Any]:
    """Effect (fraction of the clean signature removed) of one group vs its random sets.

    ablated [n], randoms [R, n], clean [n] per-sequence signature values."""
    removed = clean - ablated
    effect, lo, hi = bootstrap_ratio_ci(removed[:, None], clean, n_boot=n_boot, seed=seed)
    random_effects = (clean[None, :] - randoms).sum(1) / clean.sum()  # [R]
    if np.allclose(randoms, ablated[None, :]):  # the layers hold no other heads: no matched control exists
        return {"effect": float(effect[0]), "effect_lo": float(lo[0]), "effect_hi": float(hi[0]),
                "clean_value": float(clean.mean()), "n_random": 0, "random_effects": [], "significant": False,
                "note_suffix": "; no matched random set exists (every head of these layers is in the group), so no comparison"}
    diff = (randoms - ablated[None, :]).T / abs(clean.mean())  # [n, R]: labelled minus random removed, per sequence
    p_paired = paired_permutation_pvalue(diff, n_perm=n_perm, seed=seed)  # [R]
    beats_all = bool(np.all(effect[0] > random_effects))
    p_max = float(p_paired.max())
    p_rank = float((1 + np.sum(random_effects >= effect[0])) / (1 + len(random_effects)))
    return {"effect": float(effect[0]), "effect_lo": float(lo[0]), "effect_hi": float(hi[0]), "clean_value": float(clean.mean()),
            "random_mean": float(random_effects.mean()), "random_min": float(random_effects.min()),
            "random_max": float(random_effects.max()), "random_effects": [float(x) for x in random_effects],
            "n_random": int(len(random_effects)), "p_rank": p_rank, "p_paired": p_max,
            "significant": bool(beats_all and p_max < ALPHA)}


def _rows(plan: list[dict[str, Any]], g_drop: np.ndarray, g_scores: np.ndarray, clean_drop: np.ndarray,
          clean_ind: np.ndarray | None, labelled: dict[str, list[tuple[int, int]]], checks: dict[str, RoleCheck],
          model_id: str, run_id: str,
          n_seqs: int, seq_len: int, n_boot: int, n_perm: int, seed: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    base = {"model_id": model_id, "n_seqs": n_seqs, "seq_len": seq_len, "run_id": run_id}
    for p in plan:
        for sig in checks[p["role"]].signatures:
            if sig not in SIGNATURES:
                continue
            if sig == DROP:
                ablated, randoms, clean = g_drop[p["spec"]], g_drop[p["random"]], clean_drop
            else:
                if clean_ind is None:
                    continue
                ablated = g_scores[p["spec"]].mean(-1)
                randoms, clean = g_scores[p["random"]].mean(-1), clean_ind
            stats = _effect_row(ablated, randoms, clean, n_boot, n_perm, seed)
            rows.append({**base, "ablation": p["ablation"], "role": p["role"], "signature": sig, "group_name": p["name"], "k": p["k"],
                         "heads": [head_label(*x) for x in p["heads"]], "note": SIGNATURE_TEXT[sig] + stats.pop("note_suffix", ""),
                         **stats})
    for role, check in checks.items():
        if not any(x in SIGNATURES or x in PROMPT_SIGNATURES for x in check.signatures):
            note = check.no_signature or "no behavioural signature defined"
        elif not labelled[role]:
            note = f"no head holds the {role} label: nothing to validate"
        else:
            continue
        rows.append({**base, "ablation": "zero", "role": role, "signature": "none", "group_name": "all", "k": len(labelled[role]),
                     "heads": [head_label(*x) for x in labelled[role]], "note": note, "significant": False})
    frame = pd.DataFrame(rows)
    for col in ("effect", "effect_lo", "effect_hi", "clean_value", "random_mean", "random_min", "random_max", "p_rank", "p_paired"):
        if col not in frame:
            frame[col] = np.nan
    return frame


def _head_frame(share: np.ndarray, lo: np.ndarray, hi: np.ndarray, compare: list[int], o_drop: np.ndarray,
                clean_drop: np.ndarray, important: list[int], n_layers: int, n_heads: int) -> pd.DataFrame:
    grid = [(L, h) for L in range(n_layers) for h in range(n_heads)]
    frame = pd.DataFrame(grid, columns=["layer", "head"])
    zero = CAUSAL_SHARE_ZERO.name
    frame[zero], frame[f"{zero}_lo"], frame[f"{zero}_hi"] = share, lo, hi
    for j, kind in enumerate(("mean", "resample")):
        col = np.full(len(grid), np.nan)
        block = o_drop[j * len(compare):(j + 1) * len(compare)]  # [len(compare), n]
        col[compare] = (clean_drop[None, :] - block).sum(1) / clean_drop.sum()
        frame[CAUSAL_SHARE.expand(kind).name] = col
    frame[CAUSALLY_IMPORTANT.name] = [i in set(important) for i in range(len(grid))]
    return frame


def _docs(n_seqs: int, seq_len: int, n_compare: int) -> dict[str, dict[str, Any]]:
    data = f"{n_seqs} repeated random-token sequences [BOS, x_1..x_{seq_len}, x_1..x_{seq_len}] (validation seed)"
    zero = CAUSAL_SHARE_ZERO.name
    docs = {m.name: {"description": m.description, "data": data, "n": n_seqs, "spec": m}
            for m in (CAUSAL_SHARE_ZERO, CAUSAL_SHARE.expand("mean"), CAUSAL_SHARE.expand("resample"), CAUSAL_SHARE_EXACT,
                      CAUSAL_SHARE_ATP)}
    docs[CAUSALLY_IMPORTANT.name] = {"description": f"among the {n_compare} heads with the largest {zero} and a 95% CI above 0",
                                     "data": data, "n": n_seqs, "spec": CAUSALLY_IMPORTANT}
    for suffix, what in (("_lo", "lower"), ("_hi", "upper")):
        docs[zero + suffix] = {"description": f"{what} bound of the 95% bootstrap CI (over sequences) of {zero}", "data": data, "n": n_seqs}
    return docs
