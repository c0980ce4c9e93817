"""SmolLM2-135M-Instruct (real pretrained LM, Q4_1 GGUF; scripts/fetch_smollm2.sh): detectors on all 270 heads,
GQA handled, and the issue-22 floors for causal validation. Small samples keep the whole file near 2-3 minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from headwiki.db.store import reading

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol_db(smollm2, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from headwiki.detectors.run import detect_model

    db = tmp_path_factory.mktemp("smol") / "smol.duckdb"
    detect_model(smollm2, db, n_seqs=8, seq_len=16, n_boot=200)
    return db


def test_detectors_score_all_270_heads_with_gqa(smollm2, smol_db: Path) -> None:
    """Per-query-head patterns on a 9-query / 3-KV-head model: 270 rows, induction heads in the middle layers."""
    with reading(smol_db) as con:
        heads = con.execute("SELECT layer, head, induction, previous_token, roles FROM heads ORDER BY layer, head").fetchdf()
        model = con.execute("SELECT source, n_heads, n_kv_heads, quantization, file_sha256, dequantized_dtype FROM models").fetchall()[0]
    assert len(heads) == 270 and heads.induction.notna().all() and heads.previous_token.notna().all()
    assert model[:3] == ("gguf", 9, 3) and model[3].startswith("MOSTLY_Q4_1") and len(model[4]) == 64 and model[5] == "float32"
    induction = heads[heads.roles.map(lambda r: "induction" in list(r))]
    assert len(induction) >= 3 and induction.induction.max() > 0.6
    assert induction.layer.between(10, 29).all(), "SmolLM2's induction heads sit in its middle-to-late layers"
    # GQA: query heads sharing a KV head still get their own scores (not copies of each other)
    per_group = heads.assign(kv=heads["head"] // 3).groupby(["layer", "kv"]).induction.nunique()
    assert (per_group > 1).mean() > 0.9


@pytest.fixture(scope="module")
def smol_validation(smollm2, smol_db: Path):
    from headwiki.ablation.validation import validate_model

    return validate_model(smollm2, smol_db, n_seqs=16, seq_len=8, n_random=10, ks=(), mode="prefilter", top_k=4,
                          n_compare=3, n_boot=500, n_perm=2000)


def test_validation_floors_on_smollm2(smol_validation, smol_db: Path) -> None:
    """Issue-22 floors: the labelled induction heads, ablated together, remove significantly more of the in-context
    loss drop than every one of 10 matched random sets (p < 0.01); likewise the previous-token heads through the
    induction path (the induction heads' score and the loss drop; mean ablation: zero ablation of the layer-1
    heads the random sets draw breaks the model off-distribution, see README)."""
    res = smol_validation
    rows = res.rows.set_index(["role", "signature", "group_name", "ablation"])
    ind = rows.loc[("induction", "in_context_loss_drop", "all", "zero")]
    assert ind.n_random == 10 and ind.effect > ind.random_max and ind.p_paired < 0.01 and bool(ind.significant), ind.to_dict()
    for sig in ("induction_heads_score", "in_context_loss_drop"):
        prev = rows.loc[("previous_token", sig, "all", "mean")]
        assert prev.n_random == 10 and prev.effect > prev.random_max and prev.p_paired < 0.01 and bool(prev.significant), (sig, prev.to_dict())
    assert ("duplicate_token", "none", "all", "zero") in rows.index
    with reading(smol_db) as con:
        stored = con.execute("SELECT count(*) FROM role_validation WHERE significant").fetchall()[0][0]
        exact = con.execute("SELECT count(*) FROM heads WHERE causal_share_exact").fetchall()[0][0]
    assert stored >= 3 and exact == 8, "top 4 by attribution + 4 random heads ablated exactly"


def test_kv_group_and_bos_parked_ablation_on_smollm2(smol_validation, smol_db: Path) -> None:
    """Issue 23: under GQA (3 KV heads of 9 query heads per layer) every validated role also ablates the whole KV
    groups of its labelled heads against 10 random KV groups of the same layers; the heads flagged BOS-parked for a
    role are ablated on its signatures against random heads of their layers; the wiki words both."""
    from headwiki.causal_spec import BOS_PARKED_GROUP, KV_GROUPS
    from headwiki.spec import bos_parked_name

    from headwiki.ablation.validation import PROMPT_SIGNATURES
    from headwiki.causal_spec import IOI_LD

    rows = smol_validation.rows
    ioi = rows[rows.signature == IOI_LD]  # the IOI check (its own prompts) has no KV-group / BOS-parked groups
    assert set(ioi.role) == {"name_mover"} and set(ioi.ablation) == {"zero", "mean"} and (ioi.n_random == 10).all()
    for role in rows[(rows.signature != "none") & ~rows.signature.isin(list(PROMPT_SIGNATURES))].role.unique():
        labelled = rows[(rows.role == role) & (rows.group_name == "all")].iloc[0].heads
        kv = rows[(rows.role == role) & (rows.group_name == KV_GROUPS)]
        assert set(kv.ablation) == {"zero", "mean"}, role
        heads = list(kv.iloc[0].heads)
        layers = {int(h[1:].split("H")[0]) for h in labelled}
        assert set(labelled) <= set(heads) and len(heads) % 3 == 0 and len(heads) >= 3 * len(layers), (role, heads)
        assert (kv.n_random == 10).all() and kv.effect.notna().all()
        flag = bos_parked_name(role)  # the detector roles are named like their metric
        with reading(smol_db) as con:
            cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'heads'").fetchall()}
            flagged = [r[0] for r in con.execute(f'SELECT label FROM heads WHERE "{flag}" ORDER BY layer, head').fetchall()] if flag in cols else []
        parked = rows[(rows.role == role) & (rows.group_name == BOS_PARKED_GROUP)]
        if flagged:
            assert set(parked.ablation) == {"zero", "mean"} and list(parked.iloc[0].heads) == flagged, (role, flagged)
            assert (parked.n_random == 10).all() and parked.effect.notna().all()
        else:
            assert parked.empty
    assert (rows.group_name == BOS_PARKED_GROUP).any(), "SmolLM2 has a BOS-parked previous-token head (L19H8 at the defaults)"


def test_next_ordinal_signature_on_smollm2(smol_validation) -> None:
    """Issue 19: the copy-suppression heads (and successor heads, where labelled) are validated on next-ordinal accuracy
    ("Monday, Tuesday, Wednesday," -> " Thursday") against 10 matched random head sets, both ablations; SmolLM2 labels no
    successor head, and its row says so."""
    from headwiki.causal_spec import NEXT_ORDINAL

    rows = smol_validation.rows
    ordinal = rows[rows.signature == NEXT_ORDINAL]
    assert set(ordinal.role) == {"copy_suppression"} and set(ordinal.ablation) == {"zero", "mean"}
    assert (ordinal.n_random == 10).all() and ordinal.effect.notna().all() and ordinal.p_paired.notna().all()
    record = smol_validation.provenance["next_ordinal"]["copy_suppression"]
    assert record["applicable"] and record["n_prompts"] == int(ordinal.n_seqs.iloc[0]) >= 40 and record["clean_accuracy"] > 0.4
    successor = rows[rows.role == "successor"]
    assert list(successor.signature) == ["none"] and "no head holds the successor label" in successor.note.iloc[0]


def test_smollm2_site_in_a_browser(smol_validation, smol_db: Path, tmp_path: Path, browser) -> None:  # noqa: ANN001
    """The SmolLM2 wiki renders; its induction role page shows the validation sentence, strip plots and the
    causally important heads in headless chromium without console errors; a screenshot is saved."""
    from headwiki.wiki.render import render_site

    out = tmp_path / "site"
    render_site(smol_db, out)
    shots = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1100, "height": 1600})
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((out / "roles" / "induction.html").as_uri())
    assert page.locator("svg.validation").first.is_visible()
    assert page.locator("svg.validation circle.random").count() >= 10
    text = page.inner_text("body")
    assert "labelled induction heads together removes" in text and "Causally important heads" in text
    assert "Ablating the labelled heads' whole KV groups" in text  # GQA: the KV-group check in words
    page.screenshot(path=str(shots / "smollm2-induction-role.png"), full_page=True)
    page.goto((out / "provenance.html").as_uri())
    assert "MOSTLY_Q4_1" in page.inner_text("body")
    page.close()
    assert not problems, problems
