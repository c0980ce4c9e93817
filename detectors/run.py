"""The detector pass: score every head of one model and write one row per head to DuckDB.

Everything is computed in memory first (progress bar on stderr); then ONE transaction writes the
model row, the head rows and metric columns, the example patterns, the random-init controls (when
newly computed) and the `runs` row. A pass that dies before the commit leaves the file untouched.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from headwiki.db.store import (
    assert_same_model,
    ensure_head_rows,
    new_run_id,
    record_run,
    replace_rows,
    transaction,
    utcnow,
    write_head_metrics,
    write_roles,
    write_model,
)
from headwiki.db.lock import locked_pass
from headwiki.detectors import controls as control_mod
from headwiki.detectors.data import (
    ordinary_token_ids,
    random_sequences,
    repeat_sequences,
    resolve_text,
    text_windows,
    tokens_hash,
)
from headwiki.composition import VERSION as COMPOSITION_VERSION
from headwiki.detectors.edges import edge_frame
from headwiki.detectors.examples import TOP_STATISTIC_TEXT, example_frame, example_sequences, top_example_frame
from headwiki.detectors.delimiter import delimiter_mask
from headwiki.detectors import ioi_roles
from headwiki.detectors import successor_attn
from headwiki.detectors.registry import INPUT_DESCRIPTIONS, BatchMeta, InputKind, Registry, default_registry
from headwiki.detectors.roles import (
    MULTI_ROLE,
    N_ROLES,
    ROLES_COLUMN,
    assign_roles,
    bos_parked,
    bos_parked_flag,
    control_metric,
    detector_roles,
    positional_flag,
    resolve_thresholds,
)
from headwiki.detectors import stability as stab
from headwiki.detectors import weights as weight_mod
from headwiki.detectors.scoring import _device, n_forward_batches, score_inputs
from headwiki.checkpoints import is_toy_run
from headwiki.errors import HeadwikiError
from headwiki.hooks import pattern_hook, require_hooks
from headwiki.kernels import describe as describe_kernels
from headwiki.kv_group import METRIC as KV_GROUP
from headwiki.kv_group import kv_groups
from headwiki.models import LoadedModel
from headwiki.progress import log, progress_task
from headwiki.resume import SkippedPass, decide, file_digest, fingerprint_inputs, fingerprint_of, source_digest
from headwiki.spec import SPEC
from headwiki.stats import bootstrap_mean_ci

PASS_NAME = "detect"
DEFAULT_N_SEQS = 64
DEFAULT_HALF_LEN = 32
DEFAULT_BATCH_SIZE = 16
DEFAULT_N_BOOT = 1000
MIN_TEXT_WINDOWS = 2


@dataclass
class DetectInputs:
    """The token sequences of one pass, each [n_kind, 2L+1] starting with BOS."""

    tokens: dict[InputKind, torch.Tensor]
    half_len: int
    text_source: str

    @property
    def data_hash(self) -> str:
        return tokens_hash(*(self.tokens[k] for k in sorted(self.tokens)))


@dataclass
class Detections:
    """In-memory results of a pass, ready to write."""

    frame: pd.DataFrame  # one row per head: layer, head, metric columns
    docs: dict[str, dict[str, Any]]
    controls: dict[str, torch.Tensor]
    control_key: str
    control_computed: bool
    examples: pd.DataFrame
    params: dict[str, Any]
    data_hash: str
    n: int
    edges: pd.DataFrame = field(default_factory=pd.DataFrame)  # head_edges rows (composition, from the weights)
    top_examples: pd.DataFrame = field(default_factory=pd.DataFrame)  # head_top_examples rows
    ov_profile: pd.DataFrame = field(default_factory=pd.DataFrame)  # head_ov_profile rows (detectors/weights.py)


@dataclass
class DetectResult:
    """What `detect_model` did: the run, the per-head frame and the summary table."""

    model_id: str
    run_id: str
    db_path: str
    frame: pd.DataFrame
    summary: pd.DataFrame
    thresholds: dict[str, float]
    control_key: str
    control_reused: bool
    n_seqs: dict[str, int] = field(default_factory=dict)


def default_half_len(n_ctx: int) -> int:
    """L such that [BOS, x, x] (2L+1 tokens) fits strictly inside the context (TL's detect_head needs < n_ctx)."""
    return max(2, min(DEFAULT_HALF_LEN, (n_ctx - 2) // 2))


def build_inputs(loaded: LoadedModel, n_seqs: int, half_len: int, seed: int, text: str | None) -> DetectInputs:
    """Repeat, natural-text and random-token sequences for a pass (deterministic in `seed`)."""
    bridge, info = loaded.bridge, loaded.info
    tokenizer = getattr(bridge, "tokenizer", None)
    if tokenizer is None:
        raise HeadwikiError(f"model {info.name!r} has no tokenizer: detectors need one; save the tokenizer files beside the model")
    length = 2 * half_len + 1
    if length >= info.n_ctx:
        raise HeadwikiError(f"--seq-len {half_len} gives sequences of {length} tokens, not below the context {info.n_ctx}: use --seq-len {(info.n_ctx - 2) // 2} or less")
    bos = loaded.start.id
    vocab = ordinary_token_ids(tokenizer, info.d_vocab)
    source = resolve_text(text, info.source == "toy" or is_toy_run(info.path), n_seqs * length)  # toy runs: toy text
    windows = text_windows(tokenizer, source.passages, n_seqs, length, bos)
    if len(windows) < MIN_TEXT_WINDOWS:
        raise HeadwikiError(f"natural text {source.name} gives only {len(windows)} windows of {length} tokens: use a shorter --seq-len or more text")
    if len(windows) < n_seqs:
        log(f"note: natural text {source.name} holds {len(windows)} non-overlapping windows of {length} tokens; text metrics use n={len(windows)}")
    return DetectInputs(
        tokens={
            "repeat": repeat_sequences(vocab, n_seqs, half_len, bos, seed),
            "text": windows,
            "random": random_sequences(vocab, n_seqs, length, bos, seed + 1),
        },
        half_len=half_len,
        text_source=source.name,
    )


def compute_detections(
    loaded: LoadedModel,
    *,
    n_seqs: int = DEFAULT_N_SEQS,
    seq_len: int | None = None,
    seed: int = 0,
    text: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    n_boot: int = DEFAULT_N_BOOT,
    db_path: str | Path | None = None,
    registry: Registry | None = None,
) -> Detections:
    """Score every head (no database writes); reuse stored controls from `db_path` when present."""
    bridge, info = loaded.bridge, loaded.info
    if n_seqs < 2:
        raise HeadwikiError(f"--n-seqs {n_seqs} is too small: a bootstrap CI needs at least 2 sequences")
    if batch_size < 1:
        raise HeadwikiError(f"--batch-size {batch_size} must be at least 1")
    if n_boot < 1:
        raise HeadwikiError(f"n_boot {n_boot} must be at least 1: a CI needs bootstrap resamples")
    require_hooks(bridge, [pattern_hook(layer) for layer in range(info.n_layers)], "attention-pattern detectors")
    registry = registry or default_registry()
    limits = resolve_thresholds(thresholds)
    half_len = seq_len if seq_len is not None else default_half_len(info.n_ctx)
    if half_len < 2:
        raise HeadwikiError(f"--seq-len {half_len} is too small: use 2 or more")
    inputs = build_inputs(loaded, n_seqs, half_len, seed, text)
    meta = BatchMeta(half_len=half_len, delimiters=delimiter_mask(bridge.tokenizer, info.d_vocab))
    data_hash = inputs.data_hash
    key = control_mod.control_key(control_mod.arch_signature(bridge), data_hash, seed)
    stored = control_mod.read_controls(db_path, key, info.n_layers, info.n_heads) if db_path is not None else None

    device = _device(bridge)
    with progress_task(f"detect {info.name}", n_forward_batches(inputs.tokens, registry, batch_size)) as bar:
        per_seq = score_inputs(bridge, inputs.tokens, registry, meta, batch_size, bar.advance)
    weight_cols, ov_profile, weight_ctx = _weight_pass(loaded, seed)
    if stored is None:
        n_control = n_forward_batches(inputs.tokens, registry, batch_size, only=control_mod.control_detectors(registry))
        gc.collect()
        with progress_task(f"control {info.name} (random init)", n_control) as bar:
            control_bridge = control_mod.build_control_bridge(
                info.path, bridge.tokenizer, device, seed,
                hf_config=bridge.original_model.config if info.source == "gguf" else None)
            ctrl = control_mod.compute_controls(control_bridge, inputs.tokens, registry, meta, batch_size, bar.advance)
            ctrl.update(weight_mod.weight_controls(control_bridge, weight_ctx))
            del control_bridge
        gc.collect()
    else:
        log(f"control {key} reused from {db_path}")
        ctrl = stored
    frame, docs = _metric_frame(per_seq, registry, inputs, n_boot, seed, info.n_layers, info.n_heads)
    docs.update(weight_mod.add_weight_columns(frame, weight_cols, weight_ctx, ctrl))
    frame[KV_GROUP.name] = fixed_column(torch.tensor(kv_groups(info.n_layers, info.n_heads, info.n_kv_heads)), KV_GROUP)
    docs[KV_GROUP.name] = {"description": f"{KV_GROUP.description} ({info.n_heads} query heads, {info.n_kv_heads} KV heads)",
                           "data": KV_GROUP.data, "n": 1, "spec": KV_GROUP}
    docs.update(_add_roles(frame, ctrl, limits, info.n_layers, info.n_heads, n_seqs, key))
    frame = frame.copy()  # one block per dtype again: the steps below add columns one at a time
    ioi = ioi_roles.ioi_scores(loaded, seed=seed, n_boot=n_boot)  # IOI family: NULL columns where not applicable
    docs.update(ioi_roles.add_to_frame(frame, ioi))
    succ_attn = successor_attn.successor_attn_scores(loaded, seed=seed, n_boot=n_boot)  # spd's score: NaN where no ordinals
    docs.update(successor_attn.add_to_frame(frame, succ_attn))
    frame = frame.copy()
    grid_settings = _add_stability(frame, docs, loaded, registry, limits, n_seqs, half_len, seed, text, batch_size, meta)
    examples = example_frame(bridge, info.name, example_sequences(inputs.tokens["repeat"], inputs.tokens["text"]), device)
    edges = edge_frame(bridge, info.name, seed=seed)  # issue 18: Q/K/V composition from the weights
    top = top_example_frame(bridge, info.name, inputs.tokens["text"], inputs.text_source, device)
    params = {
        "n_seqs": n_seqs, "seq_len": half_len, "sequence_tokens": 2 * half_len + 1, "seed": seed,
        "text": inputs.text_source, "thresholds": limits, "batch_size": batch_size, "n_boot": n_boot,
        "detectors": {d.name: d.version for d in registry}, "control_key": key,
        "n_by_input": {k: int(len(v)) for k, v in inputs.tokens.items()},
        "stability_grid": grid_settings, "start_token": loaded.start.record(), "ioi": ioi.record,
        "spd_successor_attention": succ_attn.record,
        "composition": {"baseline": "iid Gaussian matrices of the same shapes", "n_draws": int(edges["n_draws"].iloc[0])
                        if len(edges) else 0, "seed": seed},
        "top_examples": {"statistic": TOP_STATISTIC_TEXT, "windows": int(min(len(inputs.tokens["text"]), top["seq"].max() + 1))
                         if len(top) else 0, "source": inputs.text_source},
    }
    params["weight_detectors"] = {d.name: d.version for d in weight_mod.WEIGHT_DETECTORS.values()}
    return Detections(frame, docs, ctrl, key, stored is None, examples, params, data_hash, n_seqs, edges, top,
                      ov_profile)


def _weight_pass(loaded: LoadedModel, seed: int) -> tuple[dict[str, torch.Tensor], pd.DataFrame, Any]:
    """The weight detectors' columns, the OV profile rows and the weight context (headwiki.detectors.weights)."""
    ordinary = ordinary_token_ids(loaded.bridge.tokenizer, loaded.info.d_vocab)
    with progress_task(f"OV circuits {loaded.info.name} (weights)", 1) as bar:
        ctx = weight_mod.weight_context(loaded.bridge.tokenizer, ordinary, seed)
        weights = weight_mod.ov_weights(loaded.bridge)
        cols = weight_mod.weight_scores(weights, ctx)
        inputs = weight_mod.profile_inputs(loaded.bridge.tokenizer, ordinary)
        profile = weight_mod.ov_profile_frame(loaded.info.name, weights, loaded.bridge.tokenizer, inputs)
        bar.advance()
    return cols, profile, ctx


def _metric_frame(
    per_seq: Mapping[str, torch.Tensor], registry: Registry, inputs: DetectInputs, n_boot: int, seed: int,
    n_layers: int, n_heads: int,
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Bootstrap every per-sequence column into <m>, <m>_lo, <m>_hi; fixed columns as they are."""
    grid = pd.MultiIndex.from_product([range(n_layers), range(n_heads)], names=["layer", "head"]).to_frame(index=False)
    docs: dict[str, dict[str, Any]] = {}
    length = 2 * inputs.half_len + 1
    for det in registry:
        if det.name not in per_seq:
            continue
        n = int(per_seq[det.name].shape[0])
        data = f"{INPUT_DESCRIPTIONS[det.needs]}; L={inputs.half_len}, {length} tokens"
        if det.needs == "text":
            data += f"; source {inputs.text_source}"
        boot_cols, fixed_cols = det.columns(per_seq[det.name])
        specs = {m.name: m for m in det.metrics}
        if set(boot_cols) | set(fixed_cols) != set(specs):
            raise ValueError(f"detector {det.name!r} produced {sorted({*boot_cols, *fixed_cols})} but declares {sorted(specs)}")
        for name, values in boot_cols.items():
            mean, lo, hi = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed)
            grid[name] = mean.reshape(-1).numpy()
            grid[f"{name}_lo"] = lo.reshape(-1).numpy()
            grid[f"{name}_hi"] = hi.reshape(-1).numpy()
            docs[name] = {"description": specs[name].description + f" [detector {det.name} v{det.version}; 95% bootstrap CI over sequences in {name}_lo/{name}_hi]",
                          "data": data, "n": n, "spec": specs[name]}
        for name, values in fixed_cols.items():
            grid[name] = fixed_column(values, specs[name])
            docs[name] = {"description": specs[name].description + f" [detector {det.name} v{det.version}]", "data": data, "n": n,
                          "spec": specs[name]}
    return grid, docs


def fixed_column(values: torch.Tensor, spec: Any) -> Any:
    """A fixed (not bootstrapped) column [n_layers, n_heads] as the declared dtype: BOOLEAN -> bool, BIGINT ->
    nullable Int64 (NaN -> NULL: a value the detector declines to give), else float."""
    flat = values.reshape(-1).double().numpy()
    if spec.dtype == "BOOLEAN":
        return flat.astype(bool)
    if spec.dtype == "BIGINT":
        return pd.array([None if v != v else int(v) for v in flat], dtype="Int64")
    return flat


def _add_roles(
    frame: pd.DataFrame, ctrl: Mapping[str, torch.Tensor], limits: Mapping[str, float], n_layers: int, n_heads: int,
    n: int, key: str,
) -> dict[str, dict[str, Any]]:
    """Add each role's <metric>_control, roles, n_roles, multi_role and each <metric>_positional flag to `frame`;
    return their docs. limits: {role: threshold} for every detector role."""
    def grid(col: str) -> torch.Tensor:
        return torch.tensor(frame[col].to_numpy(), dtype=torch.float64).reshape(n_layers, n_heads)

    declared = {r.name: r for r in detector_roles()}
    docs: dict[str, dict[str, Any]] = {}
    for r in declared.values():
        spec = control_metric(r)
        frame[spec.name] = ctrl[r.metric].double().reshape(-1).numpy()
        docs[spec.name] = {"description": f"{spec.description} (control {key})", "data": spec.data, "n": n, "spec": spec}
    roles = assign_roles({r: grid(declared[r].metric) for r in limits}, {r: grid(f"{declared[r].metric}_lo") for r in limits},
                         {r: ctrl[declared[r].metric].double() for r in limits}, limits)
    frame[ROLES_COLUMN.name] = [roles[layer][head] for layer, head in zip(frame["layer"], frame["head"])]
    frame[N_ROLES.name] = frame[ROLES_COLUMN.name].map(len).astype("int64")
    frame[MULTI_ROLE.name] = frame[N_ROLES.name] >= 2
    rule = ", ".join(f"{declared[r].metric} >= {limits[r]}" for r in limits)
    docs[ROLES_COLUMN.name] = {"description": f"roles held: score >= threshold ({rule}) AND 95% CI lower bound > the random-init control",
                               "data": "detector scores", "n": n, "spec": ROLES_COLUMN}
    docs[N_ROLES.name] = {"description": N_ROLES.description, "data": "roles", "n": n, "spec": N_ROLES}
    docs[MULTI_ROLE.name] = {"description": MULTI_ROLE.description, "data": "roles", "n": n, "spec": MULTI_ROLE}
    for m in list(SPEC.metrics.values()):
        scored = [r for r in limits if declared[r].metric == m.bos_excluded_for]  # the role(s) the raw score scores
        if m.bos_excluded_for and m.name in frame and m.bos_share in frame and scored:
            flag = bos_parked_flag(m)
            threshold = limits[scored[0]]
            frame[flag.name] = bos_parked(frame[m.bos_excluded_for].to_numpy(), frame[m.name].to_numpy(),
                                          frame[m.bos_share].to_numpy(), threshold)
            docs[flag.name] = {"description": f"{flag.description} (threshold {threshold})", "data": m.data, "n": n,
                               "spec": flag}
    for m in list(SPEC.metrics.values()):
        if m.control_for and m.name in frame and m.control_for in limits:
            flag = positional_flag(m)
            frame[flag.name] = frame[m.name] >= limits[m.control_for]
            docs[flag.name] = {"description": f"{m.name} >= {limits[m.control_for]}: {m.control_for} whatever the tokens (positional)",
                               "data": m.data, "n": n, "spec": flag}
    return docs


def _add_stability(frame: pd.DataFrame, docs: dict[str, dict[str, Any]], loaded: LoadedModel, registry: Registry,
                   limits: Mapping[str, float], n_seqs: int, half_len: int, seed: int, text: str | None,
                   batch_size: int, meta: BatchMeta | None = None) -> list[dict[str, Any]]:
    """Re-score the role metrics on the stability grid (headwiki.detectors.stability) and add roles_stable /
    roles_borderline to `frame`; returns the grid's settings (recorded in the run's params)."""
    declared = {r.name: r for r in detector_roles() if r.name in limits}

    def build(n: int, length: int, s: int) -> dict[str, torch.Tensor]:
        return dict(build_inputs(loaded, n, length, s, text).tokens)

    n_cells = len(stab.GRID)
    with progress_task(f"label stability {loaded.info.name} (settings)", n_cells) as bar:
        cells, settings = stab.grid_scores(build, loaded.bridge, registry, list(declared.values()), n_seqs, half_len,
                                           seed, batch_size, bar.advance, meta=meta)
    held_lists = frame[ROLES_COLUMN.name].tolist()
    shape = (loaded.info.n_layers, loaded.info.n_heads)
    fixed = {d.metric: frame[d.metric].to_numpy(dtype=float).reshape(shape) for d in declared.values()
             if d.metric in weight_mod.weight_metric_names()}  # weights-only scores: the same in every cell
    cells = [{**c, **fixed} for c in cells]

    def col(name: str) -> np.ndarray:
        return frame[name].to_numpy(dtype=float).reshape(shape)

    stable, border = stab.stability(
        {r: col(d.metric) for r, d in declared.items()}, {r: col(f"{d.metric}_lo") for r, d in declared.items()},
        {r: col(f"{d.metric}_hi") for r, d in declared.items()},
        {r: np.array([r in h for h in held_lists]).reshape(shape) for r in declared},
        cells, {r: limits[r] for r in declared}, {r: d.metric for r, d in declared.items()})
    frame[stab.STABLE.name], frame[stab.BORDERLINE.name] = stable, border
    where = "; ".join(f"L={c['seq_len']} seed={c['seed']} n={c['n_seqs']}" for c in settings)
    for m in (stab.STABLE, stab.BORDERLINE):
        docs[m.name] = {"description": f"{m.description}; grid: {where}", "data": "the role detectors' inputs at each setting",
                        "n": len(settings), "spec": m}
    return settings


def role_rows(limits: Mapping[str, float]) -> list[dict[str, Any]]:
    """The `roles` table rows of the detector roles, with the thresholds this run used."""
    return [{**r.row(), "threshold": float(limits.get(r.name, r.threshold or 0.0)), "held_in": ROLES_COLUMN.name}
            for r in detector_roles()]


def write_detections(
    db_path: str | Path, loaded: LoadedModel, det: Detections, run_id: str, started_at: Any, fingerprint: str | None = None,
    fingerprint_inputs: Mapping[str, Any] | None = None,
) -> None:
    """One transaction: model row, head rows + metric columns, examples, controls, runs row."""
    info = loaded.info
    with transaction(db_path) as con:
        write_model(con, info.as_dict())
        con.execute("DELETE FROM heads WHERE model_id = ? AND (layer >= ? OR head >= ?)", [info.name, info.n_layers, info.n_heads])
        ensure_head_rows(con, info.name, info.n_layers, info.n_heads)
        write_head_metrics(con, info.name, det.frame, docs=det.docs, run_id=run_id, pass_name=PASS_NAME)
        write_roles(con, info.name, role_rows(det.params["thresholds"]), family="detector", run_id=run_id)
        write_roles(con, info.name, ioi_roles.role_rows(det.params["ioi"]["thresholds"]), family="ioi", run_id=run_id)
        replace_rows(con, "head_examples", det.examples, where={"model_id": info.name})
        replace_rows(con, "head_edges", det.edges, where={"model_id": info.name})
        replace_rows(con, "head_top_examples", det.top_examples, where={"model_id": info.name})
        replace_rows(con, "head_ov_profile", det.ov_profile, where={"model_id": info.name})
        if det.control_computed:
            replace_rows(con, "controls", control_mod.controls_frame(det.control_key, det.controls, run_id), where={"arch_key": det.control_key})
        record_run(
            con, run_id, info.name, PASS_NAME, det.params, det.data_hash, int(det.params["seed"]), det.n,
            info.device, started_at, status="finished",
            provenance={"model_revision": info.revision, "model_path": info.path,
                        "kernels": describe_kernels(loaded.bridge), "fingerprint_inputs": fingerprint_inputs},
            fingerprint=fingerprint,
        )


def code_versions(registry: Registry | None = None) -> dict[str, Any]:
    """What the detector pass computes with, for the resume fingerprint: every registered detector's
    version and a digest of the pass's source (a new detector or an edited one re-runs the pass)."""
    registry = registry or default_registry()
    return {"detector registry": {d.name: d.version for d in registry},
            "weight detectors": {d.name: d.version for d in weight_mod.WEIGHT_DETECTORS.values()},
            "spec": {**{f"metric:{m.name}": m.version for d in registry for m in d.metrics},
                     **{f"role:{r.name}": r.version for r in detector_roles()}},
            "detector pass source": source_digest("headwiki.detectors"),
            "successor attention (spd)": successor_attn.VERSION,
            "composition": COMPOSITION_VERSION}  # headwiki.composition lives below the pass (not in its digest)


@locked_pass(PASS_NAME)
def detect_model(
    loaded: LoadedModel,
    db_path: str | Path,
    *,
    n_seqs: int = DEFAULT_N_SEQS,
    seq_len: int | None = None,
    seed: int = 0,
    text: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    n_boot: int = DEFAULT_N_BOOT,
    skip_if_done: bool = False,
) -> DetectResult | SkippedPass:
    """Run every registered detector on `loaded` and replace its detector values in `db_path`.

    seq_len: L, the random span length (sequences are [BOS, x_1..x_L, x_1..x_L], 2L+1 tokens; text
    and random-token windows have the same length). thresholds: role overrides (see roles.py).
    skip_if_done: return a SkippedPass when a finished run with identical parameters and data exists.
    """
    call = {"n_seqs": n_seqs, "seq_len": seq_len, "seed": seed, "text": text, "batch_size": batch_size,
            "n_boot": n_boot, "thresholds": dict(resolve_thresholds(thresholds))}
    data_key = file_digest(text) if text and Path(text).is_file() else ""
    inputs = fingerprint_inputs(PASS_NAME, loaded.info, call, data_key, code_versions())
    fp = fingerprint_of(inputs)
    if skip_if_done:
        done, why = decide(db_path, loaded.info.name, PASS_NAME, inputs)
        if done:
            log(f"detect {loaded.info.name}: skipped, finished run {done} has the same parameters, data and code (--force re-runs)")
            return SkippedPass(loaded.info.name, PASS_NAME, done)
        log(f"detect {loaded.info.name}: {why}")
    assert_same_model(db_path, loaded.info.as_dict())
    started = utcnow()
    run_id = new_run_id()
    det = compute_detections(
        loaded, n_seqs=n_seqs, seq_len=seq_len, seed=seed, text=text, thresholds=thresholds,
        batch_size=batch_size, n_boot=n_boot, db_path=db_path,
    )
    write_detections(db_path, loaded, det, run_id, started, fingerprint=fp, fingerprint_inputs=inputs)
    limits = dict(det.params["thresholds"])
    return DetectResult(
        model_id=loaded.info.name, run_id=run_id, db_path=str(db_path), frame=det.frame,
        summary=summary_frame(det.frame, limits), thresholds=limits, control_key=det.control_key,
        control_reused=not det.control_computed, n_seqs=dict(det.params["n_by_input"]),
    )


def summary_frame(frame: pd.DataFrame, thresholds: Mapping[str, float], top: int = 5) -> pd.DataFrame:
    """Top heads per detector role: role, rank, head, score, 95% CI, control, threshold, assigned, roles."""
    rows = []
    for r in detector_roles():
        m = r.metric
        ranked = frame.sort_values(m, ascending=False).head(top)
        for rank, rec in enumerate(ranked.to_dict("records"), start=1):
            held = list(rec[ROLES_COLUMN.name])
            rows.append({
                "role": r.name, "rank": rank, "head": f"L{rec['layer']}H{rec['head']}",
                "score": round(float(rec[m]), 4),
                "ci95": f"[{rec[m + '_lo']:.3f}, {rec[m + '_hi']:.3f}]",
                "control": round(float(rec[control_metric(r).name]), 4),
                "threshold": thresholds[r.name],
                "assigned": r.name in held,
                "roles": ",".join(held),
            })
    return pd.DataFrame(rows)
