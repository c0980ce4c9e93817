"""Causal validation of roles: pure pieces (fast), the toy model end to end, and SmolLM2's floors (slow)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from headwiki.ablation.signature import copy_losses, copy_positions
from headwiki.ablation.validation import _effect_row, group_sizes, kv_group_heads, matched_random_kv_sets, matched_random_sets
from headwiki.kv_group import kv_groups
from headwiki.db.store import reading


def test_copy_positions_and_loss_drop() -> None:
    first, second = copy_positions(4)
    assert first.tolist() == [1, 2, 3] and second.tolist() == [5, 6, 7]
    # copy 1: uniform over 8 tokens (loss ln 8); copy 2: the target has probability 1/2
    lp = torch.full((1, 6, 8), float(np.log(1 / 8)))
    targets = torch.zeros(1, 6, dtype=torch.long)
    lp[0, 3:, 0] = float(np.log(0.5))
    assert copy_losses(lp, targets, 4).item() == pytest.approx(np.log(8) - np.log(2))


def test_matched_random_sets_keep_the_layer_multiset_and_avoid_labels() -> None:
    group = [(3, 0), (3, 1), (5, 2)]
    excluded = set(group) | {(3, 2), (5, 0)}
    sets = matched_random_sets(group, excluded, n_heads=6, n_sets=20, rng=np.random.default_rng(0))
    assert len(sets) == 20
    for s in sets:
        assert sorted(L for L, _ in s) == [3, 3, 5]
        assert not set(s) & excluded
        assert len(set(s)) == 3
    assert len({tuple(sorted(s)) for s in sets}) > 1, "sets must differ"
    assert group_sizes(8) == [("top1", 1), ("top3", 3), ("top5", 5), ("all", 8)]
    assert group_sizes(3) == [("top1", 1), ("all", 3)] and group_sizes(0) == []


def test_kv_group_sets_hold_whole_groups_of_the_same_layers() -> None:
    """GQA (9 query heads, 3 KV heads, as SmolLM2): the labelled heads' KV groups expand to all their query heads;
    random sets are whole KV groups of the same layers that hold no excluded head."""
    kv = kv_groups(4, 9, 3)
    held, group = kv_group_heads([(2, 4), (2, 5), (3, 0)], kv)
    assert held == [(2, 1), (3, 0)] and group == [(2, 3), (2, 4), (2, 5), (3, 0), (3, 1), (3, 2)]
    excluded = {(2, 4), (2, 5), (3, 0), (2, 7)}  # layer 2: groups 1 and 2 hold excluded heads -> only group 0 is free
    sets = matched_random_kv_sets(held, excluded, kv, 3, n_sets=12, rng=np.random.default_rng(0))
    assert len(sets) == 12
    for s in sets:
        assert [h for L, h in s if L == 2] == [0, 1, 2]
        layer3 = sorted(h for L, h in s if L == 3)
        assert layer3 in ([3, 4, 5], [6, 7, 8])
    assert len({tuple(s) for s in sets}) == 2, "both free groups of layer 3 are drawn"


def test_effect_row_fraction_removed_and_tests() -> None:
    rng = np.random.default_rng(0)
    clean = 4.0 + rng.normal(0, 0.3, 40)
    labelled = clean * 0.2 + rng.normal(0, 0.1, 40)  # removes ~80%
    randoms = clean[None] * 0.95 + rng.normal(0, 0.1, (10, 40))  # remove ~5%
    row = _effect_row(labelled, randoms, clean, n_boot=500, n_perm=500, seed=0)
    assert row["effect"] == pytest.approx(1 - labelled.sum() / clean.sum())
    assert row["effect_lo"] < row["effect"] < row["effect_hi"]
    assert row["random_max"] < 0.2 and row["p_rank"] == pytest.approx(1 / 11) and row["p_paired"] < 0.01
    assert row["significant"]
    weak = _effect_row(randoms[0], randoms[1:], clean, n_boot=500, n_perm=500, seed=0)  # a random set vs the others
    assert not weak["significant"]
    same = _effect_row(labelled, np.repeat(labelled[None], 10, 0), clean, n_boot=200, n_perm=200, seed=0)
    assert same["n_random"] == 0 and not same["significant"] and "no matched random set" in same["note_suffix"]


@pytest.mark.slow
def test_toy_validation_end_to_end(tmp_path: Path) -> None:
    """Toy model: detect, then validate writes role_validation + head columns in one run; previous-token heads
    (layer 0) remove the induction heads' scores far beyond random layer-0 heads; duplicate_token says it has no signature."""
    from headwiki.ablation.validation import validate_model
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    db = tmp_path / "toy.duckdb"
    loaded = load_model("toy", device="cpu")
    detect_model(loaded, db, n_seqs=8, seq_len=8)
    result = validate_model(loaded, db, n_seqs=8, seq_len=8, n_random=10)
    with reading(db) as con:
        rows = con.execute("SELECT * FROM role_validation WHERE model_id = 'toy'").fetchdf()
        heads = con.execute("SELECT layer, head, causal_share_zero, causal_share_mean, causally_important FROM heads "
                            "WHERE model_id = 'toy' ORDER BY layer, head").fetchdf()
        run = con.execute("SELECT count(*) FROM runs WHERE pass_name = 'validate' AND run_id = ?", [result.run_id]).fetchall()
    assert run[0][0] == 1 and len(rows) == len(result.rows) and len(heads) == 16
    assert set(rows[rows.signature != "none"].ablation) == {"zero", "mean"}
    prev = rows[(rows.role == "previous_token") & (rows.group_name == "all") & (rows.ablation == "zero")].set_index("signature")
    assert prev.loc["induction_heads_score", "effect"] > 0.5 > prev.loc["induction_heads_score", "random_max"]
    assert bool(prev.loc["induction_heads_score", "significant"])
    assert (rows[rows.signature != "none"].n_random.isin([0, 10])).all()
    dup = rows[rows.role == "duplicate_token"]
    assert len(dup) == 1 and dup.iloc[0].signature == "none" and "no clean behavioural signature" in dup.iloc[0].note
    # the single-head shares are what their definition says: recompute one head by hand
    assert heads.causal_share_zero.notna().all() and heads.causally_important.any()
    assert heads.loc[heads.causally_important, "causal_share_mean"].notna().all()


@pytest.mark.slow
def test_validate_without_detect_fails_before_loading(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "headwiki.cli", "validate", "--model", "toy", "--db", str(tmp_path / "none.duckdb")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "headwiki detect" in proc.stderr
