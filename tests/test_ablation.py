"""The negation-ablation pass: exactness of the sweep, invariants, attribution, DB rows, CLI errors.

Real forwards on tiny models (random-init GPT-2 with a word tokenizer; the real stories260k Llama with
GQA + rotary); real DuckDB files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from headwiki.ablation.attribution import ATP_METRICS, attribution_estimates, shared_weighting
from headwiki.ablation.effects import item_values, paired_effects
from headwiki.ablation.groups import ranked_sizes
from headwiki.ablation.items import NegationItem
from headwiki.ablation.run import ablate_model
from headwiki.ablation.scoring import bridge_encoder, encode_items, metric_coefficients
from headwiki.ablation.sweep import ABLATIONS, RESAMPLE_DRAWS, SELF, AblationRunner, skip_prefix
from headwiki.ablation.synthetic import synthetic_items
from headwiki.db.store import ensure_head_rows, transaction, write_head_metrics, write_model, write_roles
from headwiki.detectors import induction, previous_token
from headwiki.hooks import z_hook
from headwiki.models import LoadedModel, load_model

# English-ish items for the real stories260k model. The negation word is never last, so the negated
# and control prompts end in the same token (needed by the all-heads invariant below).
STORY_ITEMS = [
    NegationItem(f"s{i}", tmpl, f"{subj} was very", f"{subj} was not very", f"{subj} was also very", t, f)
    for i, (subj, t, f, tmpl) in enumerate([
        ("The cat", " happy", " sad", "mood"), ("Tom", " sad", " happy", "mood"), ("The dog", " big", " small", "size"),
        ("The ball", " small", " big", "size"), ("The sun", " hot", " cold", "temp"), ("The snow", " cold", " hot", "temp"),
        ("Lily", " tired", " happy", "mood"), ("The tree", " tall", " small", "size"), ("The bird", " happy", " tired", "mood"),
        ("The soup", " hot", " cold", "temp"), ("The box", " big", " small", "size"), ("The girl", " happy", " sad", "mood"),
    ])
]


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def gpt2(random_gpt2_dir: Path) -> LoadedModel:
    return load_model(str(random_gpt2_dir), device="cpu")


@pytest.fixture(scope="module")
def stories(stories_dir: Path) -> LoadedModel:
    return load_model(str(stories_dir), device="cpu")


def _runner(loaded: LoadedModel, items: list[NegationItem], **kw: Any) -> AblationRunner:
    enc = encode_items(items, bridge_encoder(loaded.bridge), loaded.info.n_ctx)
    return AblationRunner(loaded.bridge, enc, **kw)


def _gpt2_items() -> list[NegationItem]:
    return synthetic_items(10, 250, seed=3, multi_token_every=3)  # some two-token candidates


@pytest.mark.parametrize("which", ["gpt2", "stories"])
def test_sweep_equals_naive_full_forward_loop(which: str, request: pytest.FixtureRequest) -> None:
    loaded = request.getfixturevalue(which)
    items = _gpt2_items() if which == "gpt2" else STORY_ITEMS[:4]
    runner = _runner(loaded, items, batch_size=10, max_rows=30)  # two chunks, 3 heads per forward
    runner.clean(keep_z=True)
    assert runner.fast and runner.fast_path_diff is not None and runner.fast_path_diff < 1e-5
    heads = [0, 1, loaded.info.n_heads - 1]  # every layer, three heads (the naive loop is the slow part)
    fast = runner.sweep(list(ABLATIONS), heads=heads)
    naive = runner.naive_sweep(list(ABLATIONS), heads=heads)
    for kind in ABLATIONS:
        assert (fast[kind] - naive[kind]).abs().max() < 1e-5
        changed = (fast[kind][:, heads] - runner.clean_run.slot_lp.cpu()).abs().amax(-1)
        assert changed.min() > 0  # every ablation changed something (the comparison is not vacuous)


def test_resample_donors_come_from_other_items_and_vary_by_draw(gpt2: LoadedModel) -> None:
    runner = _runner(gpt2, _gpt2_items(), batch_size=10, max_rows=30, seed=4)
    runner.clean(keep_z=True)
    for c, enc in enumerate(runner.chunks):
        item = torch.full((enc.n_units,), -1, dtype=torch.long)
        item[enc.term_unit] = enc.term_slot // 6
        draws = [runner.donors(c, d)[0] for d in range(RESAMPLE_DRAWS)]
        checked = int(torch.bincount(item).max()) <= enc.n_units // 2  # a derangement by item exists
        for donor in draws:
            assert sorted(donor.tolist()) == list(range(enc.n_units)), "a permutation of the batch"
            if checked:
                assert not bool((item[donor] == item).any()), "no unit is patched from its own item"
        if enc.n_units > 2:
            assert any(not torch.equal(draws[0], d) for d in draws[1:])
    checkable = 0
    for enc in runner.chunks:
        item = torch.full((enc.n_units,), -1, dtype=torch.long)
        item[enc.term_unit] = enc.term_slot // 6
        checkable += int(torch.bincount(item).max()) <= enc.n_units // 2
    assert checkable >= 1, "the test checked no batch"


def test_patching_a_head_with_its_own_activation_changes_nothing(stories: LoadedModel) -> None:
    runner = _runner(stories, STORY_ITEMS[:6], batch_size=5, max_rows=20)
    clean = runner.clean(keep_z=True)
    patched = runner.sweep([SELF])[SELF]  # [n_layers, n_heads, n_slots], through prefix reuse + replication
    assert torch.equal(patched, clean.slot_lp.cpu().expand_as(patched))
    base = item_values(clean.slot_lp.cpu()).numpy()
    eff = paired_effects(base, item_values(patched.reshape(-1, patched.shape[-1])).numpy(), np.arange(6), n_boot=200, n_perm=200)
    assert np.all(eff.delta == 0) and np.all(eff.lo == 0) and np.all(eff.hi == 0) and np.all(eff.p == 1)


def test_batched_padded_scores_equal_a_direct_unpadded_forward(gpt2: LoadedModel) -> None:
    items = _gpt2_items()[:4]
    lp = _runner(gpt2, items, batch_size=64).clean().slot_lp.cpu()
    bridge = gpt2.bridge
    encode = bridge_encoder(bridge)
    for i, item in enumerate(items):
        for c, cond in enumerate(("affirmative", "negated", "control")):
            for k, cand in enumerate((item.target, item.foil)):
                prompt_ids, full_ids = encode([item.prompt(cond)])[0], encode([item.prompt(cond) + cand])[0]
                with torch.no_grad():
                    logprobs = torch.log_softmax(bridge(torch.tensor([full_ids]))[0], -1)
                expected = sum(float(logprobs[p - 1, full_ids[p]]) for p in range(len(prompt_ids), len(full_ids)))
                assert abs(float(lp[(i * 3 + c) * 2 + k]) - expected) < 1e-4


def test_skip_prefix_restores_the_model(gpt2: LoadedModel) -> None:
    tokens = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        before = gpt2.bridge(tokens)
        with skip_prefix(gpt2.bridge, 1):
            hidden = gpt2.bridge(tokens)
        after = gpt2.bridge(tokens)
    assert hidden.shape[-1] == gpt2.info.d_model and torch.equal(before, after)


def test_attribution_is_the_first_order_term_of_a_real_ablation(gpt2: LoadedModel) -> None:
    runner = _runner(gpt2, _gpt2_items(), batch_size=6)
    runner.clean()
    atp = attribution_estimates(runner, ["zero", "mean"])
    weights = metric_coefficients(runner.enc.n_items, "sens")
    eps = 1e-2

    def metric(layer: int, head: int, scale: float) -> float:
        def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:
            z[:, :, head, :] *= scale
            return z

        total = 0.0
        for c, chunk in enumerate(runner.chunks):
            with torch.no_grad():
                out = gpt2.bridge.run_with_hooks(chunk.tokens, fwd_hooks=[(z_hook(layer), hook)])
            total += float((runner.score(out, c, 1, None)[0] * weights).sum())
        return total

    for layer, head in [(0, 1), (1, 2)]:
        finite_diff = (metric(layer, head, 1 - eps) - metric(layer, head, 1.0)) / eps  # d/dt of z -> (1-t) z
        estimate = float(atp["sens"]["zero"][layer, head])
        assert abs(finite_diff - estimate) <= 0.05 * abs(estimate) + 1e-3, (finite_diff, estimate)


@pytest.mark.parametrize("model", ["gpt2", "stories"])
def test_one_shared_backward_gives_every_metrics_attribution(model: str, request: pytest.FixtureRequest) -> None:
    loaded = request.getfixturevalue(model)
    items = _gpt2_items() if model == "gpt2" else STORY_ITEMS
    runner = _runner(loaded, items, batch_size=6)
    runner.clean()
    weights = torch.stack([metric_coefficients(runner.enc.n_items, m) for m in ATP_METRICS])
    for enc in runner.chunks:  # the shared path is taken on every chunk (S and LD_neg are proportional per unit)
        assert shared_weighting(enc.term_unit.cpu(), enc.term_slot.cpu(), enc.n_units, weights) is not None
    shared = attribution_estimates(runner, ["zero", "mean"])
    separate = attribution_estimates(runner, ["zero", "mean"], shared_backward=False)
    for m in ATP_METRICS:
        for k in ("zero", "mean"):
            assert separate[m][k].abs().max() > 0
            torch.testing.assert_close(shared[m][k], separate[m][k], rtol=1e-5, atol=1e-7)


def test_shared_weighting_refuses_what_it_cannot_factor() -> None:
    unit, slot = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 2, 3])
    base, factor = shared_weighting(unit, slot, 2, torch.tensor([[1.0, -1.0, 1.0, -1.0], [-2.0, 2.0, 0.0, 0.0]]))
    torch.testing.assert_close(factor[:, :, None] * base.reshape(2, 2)[None], torch.tensor([[1.0, -1.0, 1.0, -1.0], [-2.0, 2.0, 0.0, 0.0]]).reshape(2, 2, 2))
    assert shared_weighting(unit, slot, 2, torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 0.0, 0.0, 0.0]])) is None  # not proportional in unit 0
    assert shared_weighting(torch.tensor([0, 1]), torch.tensor([0, 0]), 2, torch.ones(2, 1)) is None  # one slot, two units


def _write_items(path: Path, items: list[NegationItem]) -> Path:
    path.write_text("".join(json.dumps(i.as_dict()) + "\n" for i in items))
    return path


def test_pass_writes_rows_next_to_detector_columns(stories: LoadedModel, tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    info = stories.info
    rng = np.random.default_rng(0)
    detector = pd.DataFrame([(L, h) for L in range(info.n_layers) for h in range(info.n_heads)], columns=["layer", "head"])
    for role in ("induction", "previous_token"):  # duplicate_token deliberately absent: its groups are skipped
        detector[role] = rng.random(len(detector))
    with transaction(db) as con:
        write_model(con, info.as_dict())
        ensure_head_rows(con, info.name, info.n_layers, info.n_heads)
        write_head_metrics(con, info.name, detector, pass_name="detect")
        # the roles the detect run would declare (role groups follow the declarations, not column names)
        write_roles(con, info.name, [{**r.ROLE.row(), "held_in": "roles"} for r in (induction, previous_token)],
                    family="detector", run_id=None)

    items = STORY_ITEMS[:8]
    result = ablate_model(stories, db, dataset=str(_write_items(tmp_path / "story.jsonl", items)),
                          n_boot=200, n_perm=200, batch_size=24)
    n_heads = info.n_layers * info.n_heads
    con = duckdb.connect(str(db), read_only=True)
    try:
        heads = con.execute("SELECT * FROM heads WHERE model_id = ? ORDER BY layer, head", [info.name]).df()
        assert len(heads) == n_heads and heads["induction"].notna().all()
        for col in ("neg_acc_delta_zero", "aff_acc_delta_mean_lo", "ctrl_acc_delta_zero_hi", "sens_delta_mean_q",
                    "sens_delta_atp_zero", "neg_ld_delta_atp_mean", "negation_role", "negation_dataset"):
            assert col in heads.columns
        assert set(heads["negation_role"].dropna()) <= {"shortcut_promoter", "negation_supporter", "general_damage"}
        assert (heads["sens_delta_zero_lo"] <= heads["sens_delta_zero"] + 1e-12).all()
        assert heads["sens_delta_zero_q"].between(0, 1).all()
        assert con.execute("SELECT count(*) FROM negation_item_effects").fetchall()[0][0] == n_heads * len(ABLATIONS) * len(items)
        assert con.execute("SELECT count(*) FROM negation_items").fetchall()[0][0] == len(items)
        groups = con.execute("SELECT * FROM negation_groups WHERE ablation = 'zero'").df()
        for role in ("induction", "previous_token"):
            assert sorted(groups.loc[groups.group_name == role, "k"]) == ranked_sizes(n_heads)
        assert "duplicate_token" not in set(groups.group_name)
        assert set(groups.loc[groups.group_kind == "layer", "group_name"]) == {f"L{L}" for L in range(info.n_layers)}
        prov = json.loads(con.execute("SELECT provenance FROM runs WHERE pass_name = 'ablate'").fetchall()[0][0])
        assert set(prov["atp_spearman"]) == {"zero", "mean"} and prov["prefix_reuse"] is True
        doc = con.execute("SELECT description FROM metrics WHERE metric = 'neg_acc_delta_mean'").fetchall()[0][0]
        assert "mean over all non-pad prompt tokens" in doc
        base = con.execute("SELECT * FROM negation_baselines ORDER BY condition").df().set_index("condition")
    finally:
        con.close()
    # the top-1 induction group is exactly the single head with the highest induction score
    top = detector.loc[detector["induction"].idxmax()]
    assert groups.loc[(groups.group_name == "induction") & (groups.k == 1), "heads"].iloc[0].tolist() == [f"L{int(top.layer)}H{int(top['head'])}"]
    # invariant: with every attention head ablated, negated and control prompts (same last token) are
    # indistinguishable, so the ablated mean S is 0 within its CI (delta = -baseline S)
    s_base = base.loc["sensitivity", "mean_ld"]
    for kind in ("zero", "mean"):
        row = result.groups[(result.groups.group_kind == "all") & (result.groups.ablation == kind)]
        ablated_s, lo, hi = (float(row[c].iloc[0]) + s_base for c in ("sens_delta", "sens_delta_lo", "sens_delta_hi"))
        assert abs(ablated_s) < 1e-4 and lo - 1e-4 <= 0 <= hi + 1e-4, (kind, ablated_s, lo, hi)
    # an identical second call with skip_if_done finds the finished run instead of recomputing
    again = ablate_model(stories, db, dataset=str(tmp_path / "story.jsonl"), n_boot=200, n_perm=200, batch_size=24,
                         skip_if_done=True)
    assert getattr(again, "skipped", False) and again.run_id == result.run_id
    # the per-head item effects agree with the per-head summary
    eff = result.item_effects[(result.item_effects.ablation == "zero")].groupby(["layer", "head"])["d_sensitivity"].mean()
    assert np.allclose(eff.to_numpy(), result.heads["sens_delta_zero"].to_numpy(), atol=1e-9)


def test_bad_dataset_exits_2_and_writes_nothing(tmp_path: Path, random_gpt2_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headwiki.ablation.cli import ablate
    from headwiki.cli import cli, main

    cli.add_command(ablate)
    good = json.dumps(synthetic_items(1, 250)[0].as_dict())
    cases = {
        "malformed.jsonl": (good + "\n{not json\n", "line 2: invalid JSON"),
        "missing.jsonl": (good + "\n" + json.dumps({"id": "x", "template": "t"}) + "\n", "line 2: missing field 'affirmative'"),
        "empty.jsonl": ("", "contains no items"),
    }
    db = tmp_path / "hw.duckdb"
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(SystemExit) as exit_info:
            main(["ablate", "--model", str(random_gpt2_dir), "--dataset", str(path), "--db", str(db), "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and expected in err and len(err.splitlines()) == 1, err
        assert not db.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["ablate", "--model", str(random_gpt2_dir), "--dataset", "toy", "--ablation", "zero,shuffle", "--db", str(db)])
    assert exit_info.value.code == 2 and "unknown ablation 'shuffle'" in capsys.readouterr().err and not db.exists()


def test_cli_runs_the_pass_and_prints_a_summary(tmp_path: Path, random_gpt2_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headwiki.ablation.cli import ablate
    from headwiki.cli import cli, main

    cli.add_command(ablate)
    items = _write_items(tmp_path / "syn.jsonl", synthetic_items(12, 250, seed=1))
    db = tmp_path / "hw.duckdb"
    main(["ablate", "--model", str(random_gpt2_dir), "--dataset", str(items), "--db", str(db), "--device", "cpu",
          "--ablation", "zero", "--n-boot", "200"])  # returns normally on success (exit 0)
    out = capsys.readouterr().out
    assert "clean baselines" in out and "negated" in out and "Spearman" in out
    con = duckdb.connect(str(db), read_only=True)
    try:
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name='heads'").fetchall()}
        assert "neg_acc_delta_zero" in cols and "neg_acc_delta_mean" not in cols
        assert con.execute("SELECT count(*) FROM models").fetchall()[0][0] == 1
    finally:
        con.close()


def test_toy_model_has_heads_that_significantly_move_negated_accuracy(tmp_path: Path) -> None:


    toy = load_model("toy", device="cpu")
    db = tmp_path / "toy.duckdb"
    result = ablate_model(toy, db, dataset="toy", n_boot=500, n_perm=500)
    heads = result.heads
    significant = heads[heads["neg_acc_delta_zero_q"] < 0.05]
    assert len(significant) >= 1, heads[["label", "neg_acc_delta_zero", "neg_acc_delta_zero_q"]]
    assert (significant["neg_acc_delta_zero_lo"] <= significant["neg_acc_delta_zero"]).all()
    # toy negated and control prompts have the same length and last token: with every head ablated S vanishes
    s_base = float(result.baselines.set_index("condition").loc["sensitivity", "mean_ld"])
    row = result.groups[(result.groups.group_kind == "all") & (result.groups.ablation == "zero")]
    assert abs(float(row["sens_delta"].iloc[0]) + s_base) < 1e-3
    assert np.isfinite(result.provenance["atp_spearman"]["zero"]["sens"])
    # the role rule holds row by row: significance and size of the negation-specific reversal (or accuracy)
    for kind in ("zero", "mean", "resample"):
        role_col = "negation_role" if kind == "zero" else f"negation_role_{kind}"
        for _, r in heads[heads[role_col].isin(["negation_supporter", "shortcut_promoter"])].iterrows():
            assert r[f"reversal_delta_{kind}_q"] < 0.05 and r[f"sens_delta_{kind}_q"] < 0.05
            assert abs(r[f"reversal_delta_{kind}"]) >= 0.05 or abs(r[f"neg_acc_delta_{kind}"]) >= 0.05
    assert heads["ablation_kinds_disagree"].dtype == bool
