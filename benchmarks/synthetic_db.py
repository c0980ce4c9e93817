"""SYNTHETIC databases for developing the wiki and timing the renderer. Never a source of results.

Values are random draws shaped like the real passes' output (column conventions of docs/architecture.md),
written through the same `headwiki.db.store` writers; every model written here is named `synthetic-...`
and its runs carry pass_name `synthetic` so nobody mistakes it for a measurement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from headwiki.db.store import (
    ensure_head_rows, new_run_id, record_run, replace_rows, transaction, utcnow, write_head_metrics, write_model,
)
from headwiki.random_models import word_vocab


def _ci(rng: np.random.Generator, value: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    half = np.abs(rng.normal(width, width / 3, size=value.shape))
    return value - half, value + half


def _pattern(rng: np.random.Generator, seq: int, kind: str, offset: int) -> list[list[float]]:
    """A causal attention pattern [seq, seq] concentrated `offset` tokens back (plus noise)."""
    logits = rng.normal(0, 1, size=(seq, seq))
    for i in range(seq):
        j = i - offset if kind != "induction" else i - seq // 2 + 1
        if 0 <= j <= i:
            logits[i, j] += 4
    logits[:, 0] += 1.5
    mask = np.tril(np.ones((seq, seq), dtype=bool))
    logits[~mask] = -np.inf
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return np.round(probs, 4).tolist()


def write_synthetic_db(
    db_path: str | Path, model_id: str = "synthetic-toy", n_layers: int = 2, n_heads: int = 4,
    negation: bool = True, n_items: int = 40, seq: int = 16, seed: int = 0,
) -> None:
    """Write one synthetic model (detector columns, optionally negation columns and side tables) to db_path."""
    rng = np.random.default_rng(seed)
    started = utcnow()
    n = n_layers * n_heads
    grid = pd.DataFrame([(l, h) for l in range(n_layers) for h in range(n_heads)], columns=["layer", "head"])
    frame = grid.copy()
    docs: dict[str, dict] = {}
    for name, scale in (("induction", 0.35), ("previous_token", 0.3), ("duplicate_token", 0.15), ("bos_sink", 0.4)):
        v = np.clip(rng.beta(0.6, 2.0, size=n) * scale * 2.5, 0, 1)
        frame[name] = v
        frame[f"{name}_lo"], frame[f"{name}_hi"] = _ci(rng, v, 0.03)
        docs[name] = {"description": f"synthetic {name} score", "data": "SYNTHETIC random draws", "n": 64}
        if name in ("induction", "previous_token", "duplicate_token"):
            frame[f"{name}_control"] = rng.uniform(0, 0.08, size=n)
            frame[f"{name}_tl"] = np.clip(v * 0.5 + rng.normal(0, 0.02, size=n), 0, 1)
    frame["entropy"] = rng.uniform(0.2, 2.5, size=n)
    frame["entropy_lo"], frame["entropy_hi"] = _ci(rng, frame["entropy"].to_numpy(), 0.05)
    frame["positional_offset"] = rng.integers(0, 4, size=n).astype("int64")
    frame["positional_mass"] = rng.uniform(0, 1, size=n)
    docs["entropy"] = {"description": "synthetic entropy (nats)", "data": "SYNTHETIC random draws", "n": 64}
    roles = []
    for r in frame.itertuples():
        rs = [k for k in ("induction", "previous_token", "duplicate_token") if getattr(r, k) > 0.4]
        roles.append(rs)
    frame["roles"] = roles
    frame["n_roles"] = [len(r) for r in roles]
    frame["multi_role"] = [len(r) > 1 for r in roles]
    run_id = new_run_id()
    with transaction(db_path) as con:
        write_model(con, {
            "name": model_id, "source": "synthetic", "path": "(synthetic)", "revision": f"seed{seed}",
            "architecture": "SyntheticForTiming", "n_layers": n_layers, "n_heads": n_heads, "n_kv_heads": n_heads,
            "d_model": 16 * n_heads, "d_head": 16, "n_ctx": 128, "d_vocab": 256, "n_params": 1000 * n,
            "positional_embedding": "standard", "dtype": "float32", "device": "cpu",
        })
        ensure_head_rows(con, model_id, n_layers, n_heads)
        write_head_metrics(con, model_id, frame, docs=docs, run_id=run_id, pass_name="synthetic")
        words = word_vocab(64)[4:]
        ex_rows = []
        for r in grid.itertuples():
            for kind in ("induction", "sentence"):
                toks = ["<bos>"] + [words[int(i)] for i in rng.integers(0, len(words), size=seq - 1)]
                ex_rows.append({"model_id": model_id, "layer": r.layer, "head": r.head, "kind": kind,
                                "tokens": toks, "pattern": _pattern(rng, seq, kind, 1 + (r.head % 2))})
        replace_rows(con, "head_examples", pd.DataFrame(ex_rows), {"model_id": model_id})
        record_run(con, run_id, model_id, "synthetic", {"seed": seed, "note": "SYNTHETIC"}, "synthetic", seed, 64,
                   "cpu", started)
        if negation:
            _write_negation(con, rng, model_id, grid, n_items, seed, started)


def _write_negation(con, rng, model_id: str, grid: pd.DataFrame, n_items: int, seed: int, started) -> None:
    n = len(grid)
    dataset = "toy"
    frame = grid.copy()
    docs = {}
    for a in ("zero", "mean"):
        for what in ("neg_acc", "aff_acc", "ctrl_acc", "sens"):
            col = f"{what}_delta_{a}"
            v = rng.normal(0, 0.03, size=n)
            v[rng.integers(0, n)] = -0.3
            frame[col] = v
            frame[f"{col}_lo"], frame[f"{col}_hi"] = _ci(rng, v, 0.05)
            frame[f"{col}_p"] = rng.uniform(0, 1, size=n)
            frame[f"{col}_q"] = np.minimum(frame[f"{col}_p"] * 3, 1)
            docs[col] = {"description": f"synthetic {col}", "data": "SYNTHETIC items", "n": n_items}
        frame[f"sens_delta_atp_{a}"] = frame[f"sens_delta_{a}"] + rng.normal(0, 0.01, size=n)
        frame[f"neg_ld_delta_atp_{a}"] = rng.normal(0, 0.2, size=n)
    frame["negation_role"] = [None if x > -0.1 else "negation_supporter" for x in frame["neg_acc_delta_zero"]]
    frame["negation_dataset"] = dataset
    run_id = new_run_id()
    write_head_metrics(con, model_id, frame, docs=docs, run_id=run_id, pass_name="synthetic")
    base = pd.DataFrame([
        {"model_id": model_id, "dataset": dataset, "n_items": n_items, "condition": c, "accuracy": acc,
         "accuracy_lo": acc - 0.08, "accuracy_hi": min(1.0, acc + 0.08), "mean_ld": ld, "mean_ld_lo": ld - 0.3,
         "mean_ld_hi": ld + 0.3, "run_id": run_id}
        for c, acc, ld in (("affirmative", 0.95, 3.1), ("negated", 0.7, 1.2), ("control", 0.93, 2.9))])
    replace_rows(con, "negation_baselines", base, {"model_id": model_id, "dataset": dataset})
    items = pd.DataFrame([
        {"model_id": model_id, "dataset": dataset, "item_id": f"i{i:03d}", "template": f"t{i % 4}",
         "affirmative": f"the item{i} is a", "negated": f"the item{i} is not a", "control": f"the item{i} is also a",
         "target": "cat", "foil": "dog", "ld_aff": 2.0, "ld_neg": 1.0, "ld_ctrl": 2.0, "sensitivity": 1.0}
        for i in range(n_items)])
    replace_rows(con, "negation_items", items, {"model_id": model_id, "dataset": dataset})
    eff = []
    for r in grid.itertuples():
        for a in ("zero", "mean"):
            d = rng.normal(0, 0.3, size=(n_items, 4))
            for i in range(n_items):
                eff.append((model_id, dataset, r.layer, r.head, a, f"i{i:03d}", *map(float, d[i])))
    effects = pd.DataFrame(eff, columns=["model_id", "dataset", "layer", "head", "ablation", "item_id",
                                         "d_ld_aff", "d_ld_neg", "d_ld_ctrl", "d_sensitivity"])
    replace_rows(con, "negation_item_effects", effects, {"model_id": model_id, "dataset": dataset})
    groups = pd.DataFrame([
        {"model_id": model_id, "dataset": dataset, "group_kind": "role", "group_name": "induction", "k": 2,
         "heads": ["L1H0", "L1H1"], "ablation": "zero", "neg_acc_delta": -0.2, "neg_acc_delta_lo": -0.3,
         "neg_acc_delta_hi": -0.1, "aff_acc_delta": -0.05, "aff_acc_delta_lo": -0.1, "aff_acc_delta_hi": 0.0,
         "ctrl_acc_delta": -0.04, "ctrl_acc_delta_lo": -0.09, "ctrl_acc_delta_hi": 0.01, "sens_delta": -0.3,
         "sens_delta_lo": -0.4, "sens_delta_hi": -0.2}])
    replace_rows(con, "negation_groups", groups, {"model_id": model_id, "dataset": dataset})
    record_run(con, run_id, model_id, "synthetic", {"seed": seed, "note": "SYNTHETIC negation"}, "synthetic",
               seed, n_items, "cpu", started)
