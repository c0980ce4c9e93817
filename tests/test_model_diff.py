"""`headwiki diff`: every number checked against a hand computation with plain transformers on two random-init GPT-2s
(seeds 0 and 1), and the diff page in the wiki."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest
import torch

pytestmark = pytest.mark.slow

N_PASSAGES = 3
MAX_LEN = 24


@pytest.fixture(scope="module")
def diffed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model
    from headwiki.modeldiff.run import diff_models
    from headwiki.random_models import write_random_model

    root = tmp_path_factory.mktemp("diff")
    dirs = [write_random_model(root / f"rand-s{s}", arch="gpt2", n_layers=2, n_heads=4, d_model=32, seed=s) for s in (0, 1)]
    db = root / "diff.duckdb"
    loaded = [load_model(str(d), device="cpu") for d in dirs]
    for m in loaded:
        detect_model(m, db, n_seqs=6, seq_len=6, n_boot=50)
    result = diff_models(loaded[0], loaded[1], db, max_len=MAX_LEN, n_passages=N_PASSAGES, top_k=5)
    return {"dirs": dirs, "db": db, "loaded": loaded, "result": result}


def _hand(model_dir: Path, start_id: int, texts: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.nn.Module]:
    """Per passage: log p(next token) [s-1] and z [n_layers, s, H, d_head] from plain transformers (c_proj's input)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval().double()
    tok = AutoTokenizer.from_pretrained(model_dir)
    logps, zs = [], []
    for text in texts:
        ids = torch.tensor([[start_id, *tok.encode(text, add_special_tokens=False)[: MAX_LEN - 1]]])
        got: list[torch.Tensor] = []
        hooks = [blk.attn.c_proj.register_forward_pre_hook(lambda mod, args: got.append(args[0][0])) for blk in model.transformer.h]
        with torch.no_grad():
            logits = model(ids).logits
        for h in hooks:
            h.remove()
        lp = torch.log_softmax(logits, -1)[0, :-1].gather(-1, ids[0, 1:, None]).squeeze(-1)
        logps.append(lp)
        cfg = model.config
        zs.append(torch.stack([g.reshape(g.shape[0], cfg.n_head, -1) for g in got]))
    return logps, zs, model


def test_diff_numbers_match_a_hand_computation(diffed: dict) -> None:
    from headwiki.modeldiff.run import passages

    a, b = diffed["loaded"]
    texts = passages()[:N_PASSAGES]
    la, za, ma = _hand(diffed["dirs"][0], a.start.id, texts)
    lb, zb, mb = _hand(diffed["dirs"][1], b.start.id, texts)
    r = diffed["result"]
    # black box: mean over passages of each passage's mean per-token difference; the largest |Δ| token
    expect = sum(float((y - x).mean()) for x, y in zip(la, lb)) / N_PASSAGES
    assert r.same_tokenizer and r.same_structure
    assert r.mean_delta == pytest.approx(expect, abs=1e-5)
    assert r.mean_delta_lo <= r.mean_delta <= r.mean_delta_hi
    deltas = torch.cat([y - x for x, y in zip(la, lb)])
    assert abs(r.tokens.iloc[0]["delta"]) == pytest.approx(float(deltas.abs().max()), abs=1e-5)
    # weights: W_QK, W_OV per head from GPT-2's fused c_attn / c_proj (Conv1D: x @ W)
    d, H = ma.config.n_embd, ma.config.n_head
    dh = d // H

    def mats(m: torch.nn.Module, L: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = m.transformer.h[L].attn.c_attn.weight.double()
        q, k, v = (w[:, i * d + h * dh: i * d + (h + 1) * dh] for i in range(3))
        o = m.transformer.h[L].attn.c_proj.weight.double()[h * dh:(h + 1) * dh]
        return q @ k.T, v @ o

    con = duckdb.connect(str(diffed["db"]), read_only=True)
    try:
        rows = {(L, h): (qk, ov, act) for L, h, qk, ov, act in
                con.execute("SELECT layer, head, qk_rel, ov_rel, act_rel FROM diff_heads").fetchall()}
        metric = con.execute("SELECT value_a, value_b, delta, delta_lo, delta_hi, layer, head FROM diff_head_metrics "
                             "WHERE metric = 'induction' ORDER BY layer, head").fetchall()
        heads = {(r[0], r[1], r[2]): r[3:] for r in con.execute(
            "SELECT model_id, layer, head, induction, induction_lo, induction_hi FROM heads").fetchall()}
        summary = con.execute("SELECT n_tokens, mean_delta FROM model_diffs").fetchall()
    finally:
        con.close()
    assert len(rows) == 2 * H and summary[0][0] == sum(x.numel() for x in la)
    for L in range(2):
        for h in range(H):
            (qa, oa), (qb, ob) = mats(ma, L, h), mats(mb, L, h)
            assert rows[(L, h)][0] == pytest.approx(float((qb - qa).norm() / qa.norm()), rel=1e-5)
            assert rows[(L, h)][1] == pytest.approx(float((ob - oa).norm() / oa.norm()), rel=1e-5)
            num = sum(float(((y[L, :, h] - x[L, :, h]) ** 2).sum()) for x, y in zip(za, zb))
            den = sum(float((x[L, :, h] ** 2).sum()) for x in za)
            assert rows[(L, h)][2] == pytest.approx(math.sqrt(num / den), rel=1e-4)
    # metric deltas: B - A, CI by MOVER from the two stored CIs
    assert len(metric) == 2 * H
    ida, idb = a.info.name, b.info.name
    for va, vb, delta, lo, hi, L, h in metric:
        (xa, xa_lo, xa_hi), (xb, xb_lo, xb_hi) = heads[(ida, L, h)], heads[(idb, L, h)]
        assert (va, vb) == (pytest.approx(xa), pytest.approx(xb)) and delta == pytest.approx(xb - xa)
        assert lo == pytest.approx(delta - math.sqrt((xb - xb_lo) ** 2 + (xa_hi - xa) ** 2))
        assert hi == pytest.approx(delta + math.sqrt((xb_hi - xb) ** 2 + (xa - xa_lo) ** 2))


def test_diff_page_in_the_wiki(diffed: dict, tmp_path: Path, browser) -> None:  # noqa: ANN001 - playwright
    from headwiki.wiki import urls
    from headwiki.wiki.render import render_site

    from test_wiki_browser import Watch, draw_every_heatmap

    out = tmp_path / "site"
    render_site(diffed["db"], out)
    a, b = diffed["result"].model_a, diffed["result"].model_b
    page_path = out / urls.diff_page(a, b)
    html = page_path.read_text()
    assert "Biggest movers" in html and "Tokens where the two differ most" in html and "MOVER" in html
    assert (out / urls.UNIVERSALITY).is_file() and urls.diff_page(a, b) in (out / "index.html").read_text()
    context = browser.new_context()
    page = context.new_page()
    watch = Watch(page)
    page.goto(page_path.resolve().as_uri())
    n = page.locator("figure.heat").count()
    assert n >= 4  # three weight/activation maps + at least one metric delta
    draw_every_heatmap(page, n)
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
        assert Path(href.split("#")[0].removeprefix("file://")).exists(), href
    assert watch.problems == []
    context.close()
