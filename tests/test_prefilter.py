"""CPU prefilter mode of the negation pass: selection, q over all heads, agreement numbers, and the toy end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from headwiki.ablation.prefilter import agreement, q_over_all_heads, resolve_mode, select_heads
from headwiki.errors import HeadwikiError
from headwiki.stats import benjamini_hochberg


def test_auto_mode_is_prefilter_only_on_cpu_for_big_models() -> None:
    assert resolve_mode("auto", "cpu", 270) == "prefilter"
    assert resolve_mode("auto", "cpu", 16) == "exact"
    assert resolve_mode("auto", "cuda", 270) == "exact"
    assert resolve_mode("exact", "cpu", 270) == "exact"
    with pytest.raises(HeadwikiError, match="--mode"):
        resolve_mode("fast", "cpu", 10)


def test_select_heads_top_k_by_magnitude_plus_disjoint_random() -> None:
    est = {"zero": torch.tensor([[0.1, -5.0, 0.0], [2.0, 0.3, -0.2]]), "mean": torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])}
    sel = select_heads(est, top_k=2, seed=0)
    assert sel.top == [1, 2]  # |-5| then max(|0|, |3|) = 3 beats 2.0
    assert len(sel.random) == 2 and not set(sel.random) & set(sel.top)
    assert sel.source(1) == "attribution_top_k" and sel.source(sel.random[0]) == "random_check"
    assert select_heads(est, 2, seed=0) == sel, "seeded"


def test_q_counts_unmeasured_heads_as_tests() -> None:
    p = np.array([[0.001], [0.02]])
    q = q_over_all_heads(p, [3, 7], m=10)
    padded = np.ones(10)
    padded[[3, 7]] = [0.001, 0.02]
    assert q[3, 0] == pytest.approx(benjamini_hochberg(padded)[3]) and q[3, 0] > benjamini_hochberg(p[:, 0])[0]
    assert np.isnan(q[0, 0])


def test_agreement_recall_and_misses() -> None:
    from headwiki.ablation.prefilter import Selection

    exact = np.full(10, np.nan)
    exact[[0, 1, 5, 6]] = [-4.0, 3.0, 0.1, 5.0]  # random-check head 6 beats the top's floor (3.0)
    est = np.arange(10, dtype=float)[::-1]
    a = agreement(est, exact, Selection(top=[0, 1], random=[5, 6]))
    assert a["top_k_recall"] == 0.5 and a["random_check_beating_top_k_floor"] == 1 and a["n_measured"] == 4
    assert a["estimated_missed_heads"] == pytest.approx(0.5 * 6)


@pytest.mark.slow
def test_toy_prefilter_marks_exact_heads_and_reports_agreement(tmp_path: Path) -> None:
    from headwiki.ablation.run import ablate_model
    from headwiki.db.store import reading
    from headwiki.models import load_model

    db = tmp_path / "toy.duckdb"
    loaded = load_model("toy", device="cpu")
    res = ablate_model(loaded, db, dataset="toy", mode="prefilter", top_k=3, max_items=24, n_boot=100, n_perm=100, groups=False)
    pre = res.provenance["prefilter"]
    assert res.provenance["mode"] == "prefilter" and len(pre["top"]) == 3 and len(pre["random_check"]) == 3
    assert res.ablations == ("zero", "mean"), "prefilter picks heads by attribution, which resample ablation has not"
    assert res.heads.loc[res.heads.ablation_exact, "reversal_delta_zero"].notna().all()
    assert res.heads.loc[~res.heads.ablation_exact, "reversal_delta_zero"].isna().all()
    with reading(db) as con:
        heads = con.execute("SELECT label, ablation_exact, ablation_selected_by, sens_delta_zero, sens_delta_zero_q, "
                            "sens_delta_atp_zero FROM heads ORDER BY layer, head").fetchdf()
        n_effect_heads = con.execute("SELECT count(DISTINCT (layer, head)) FROM negation_item_effects").fetchall()[0][0]
    exact = heads[heads.ablation_exact]
    assert len(exact) == 6 and set(exact.label) == set(pre["top"]) | set(pre["random_check"])
    assert exact.sens_delta_zero.notna().all() and heads[~heads.ablation_exact].sens_delta_zero.isna().all()
    assert heads.sens_delta_atp_zero.notna().all(), "every head keeps its attribution estimate"
    assert n_effect_heads == 6
    assert -1 <= pre["agreement"]["zero"]["spearman"] <= 1 and 0 <= pre["agreement"]["zero"]["top_k_recall"] <= 1
