"""Issue 20, a wiki for a range of models, on one small database: two random-init GPT-2s (seeds 0 and 1: same shape,
so the seeds/universality page matches their heads; `headwiki diff` between them, every number checked against a hand
computation with plain transformers) and a toy checkpoint series from `toy train --checkpoint-every` (the timeline
page and head-page timelines). Every cross-model page is loaded in Chromium."""

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
    from headwiki.toy.config import TrainConfig
    from headwiki.toy.train import build_model, write_checkpoints
    from headwiki.wiki.render import render_site

    root = tmp_path_factory.mktemp("range")
    dirs = [write_random_model(root / f"rand-s{s}", arch="gpt2", n_layers=2, n_heads=4, d_model=32, seed=s) for s in (0, 1)]
    db = root / "range.duckdb"
    loaded = [load_model(str(d), device="cpu") for d in dirs]
    for m in loaded:
        detect_model(m, db, n_seqs=6, seq_len=6, n_boot=50)
    result = diff_models(loaded[0], loaded[1], db, max_len=MAX_LEN, n_passages=N_PASSAGES, top_k=5)
    # the toy trainer's checkpoint writer (what `toy train --checkpoint-every` calls) on two untrained inits: a full
    # training run evaluates for minutes on this machine; the series, not the training, is under test here
    cfg = TrainConfig(seed=5)
    states = []
    for step in (2, 4):
        torch.manual_seed(step)
        states.append((step, build_model(cfg).state_dict()))
    checkpoints = write_checkpoints(root / "toy-run-seed5" / "checkpoints", states, cfg, series="toy-run-seed5")
    for d in checkpoints:
        detect_model(load_model(str(d), device="cpu"), db, n_seqs=6, seq_len=6, n_boot=50)
    site = root / "site"
    render_site(db, site)
    return {"dirs": dirs, "db": db, "loaded": loaded, "result": result, "checkpoints": checkpoints, "site": site}


def _hand(model_dir: Path, start_id: int, texts: list[str], patch: dict | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.nn.Module, list[torch.Tensor], list[torch.Tensor]]:
    """Per passage, from plain transformers: log p(next token) [s-1], z [n_layers, s, H, d_head] (c_proj's input), the
    ids [s] and the final LayerNorm's input [s, d]. patch = {(layer, head): per-passage z [s, d_head]} replaces those
    heads' z (c_proj's input slice) before W_O."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval().double()
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = model.config
    dh = cfg.n_embd // cfg.n_head
    logps, zs, ids_all, pre_ln = [], [], [], []
    for p, text in enumerate(texts):
        ids = torch.tensor([[start_id, *tok.encode(text, add_special_tokens=False)[: MAX_LEN - 1]]])
        got: list[torch.Tensor] = []
        fin: list[torch.Tensor] = []

        def pre(L: int):  # noqa: ANN202
            def hook(mod: torch.nn.Module, args: tuple) -> tuple | None:
                got.append(args[0][0].clone())
                if not patch:
                    return None
                x = args[0].clone()
                for (pl, ph), z in patch.items():
                    if pl == L:
                        x[0, :, ph * dh:(ph + 1) * dh] = z[p]
                return (x,)
            return hook

        hooks = [blk.attn.c_proj.register_forward_pre_hook(pre(L)) for L, blk in enumerate(model.transformer.h)]
        hooks.append(model.transformer.ln_f.register_forward_pre_hook(lambda mod, args: fin.append(args[0][0])))
        with torch.no_grad():
            logits = model(ids).logits
        for h in hooks:
            h.remove()
        lp = torch.log_softmax(logits, -1)[0, :-1].gather(-1, ids[0, 1:, None]).squeeze(-1)
        logps.append(lp)
        zs.append(torch.stack([g.reshape(g.shape[0], cfg.n_head, -1) for g in got]))
        ids_all.append(ids[0])
        pre_ln.append(fin[0])
    return logps, zs, model, ids_all, pre_ln


def test_diff_numbers_match_a_hand_computation(diffed: dict) -> None:
    from headwiki.modeldiff.run import passages

    a, b = diffed["loaded"]
    texts = passages()[:N_PASSAGES]
    la, za, ma, ids, xa = _hand(diffed["dirs"][0], a.start.id, texts)
    lb, zb, mb, _, xb = _hand(diffed["dirs"][1], b.start.id, texts)
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
        w = m.transformer.h[L].attn.c_attn.weight.detach().double()
        q, k, v = (w[:, i * d + h * dh: i * d + (h + 1) * dh] for i in range(3))
        o = m.transformer.h[L].attn.c_proj.weight.detach().double()[h * dh:(h + 1) * dh]
        return q @ k.T, v @ o

    con = duckdb.connect(str(diffed["db"]), read_only=True)
    try:
        rows = {(L, h): (qk, ov, act) for L, h, qk, ov, act in
                con.execute("SELECT layer, head, qk_rel, ov_rel, act_rel FROM diff_heads").fetchall()}
        dla = {(r[0], r[1]): r[2:] for r in con.execute(
            "SELECT layer, head, dla_a, dla_b, dla_delta, dla_delta_lo, dla_delta_hi, patch_gain, patch_share FROM diff_heads").fetchall()}
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
    # direct logit attribution to the next token (minus the mean logit) through ln_f with its scale frozen: per passage
    # the mean over positions, then the mean over passages; Δ = B - A with a bootstrap CI containing it
    def hand_dla(m: torch.nn.Module, zs: list[torch.Tensor], xs: list[torch.Tensor]) -> torch.Tensor:
        W_U = m.lm_head.weight.detach().double().T  # [d, vocab]
        w, eps = m.transformer.ln_f.weight.detach().double(), m.transformer.ln_f.eps
        out = []
        for z, x, tok in zip(zs, xs, ids):
            scale = (x.var(-1, unbiased=False) + eps).sqrt()[:-1]  # [s-1]
            e = w * (W_U[:, tok[1:]].T - W_U.mean(1)) / scale[:, None]
            e = e - e.mean(-1, keepdim=True)
            per = torch.zeros(2, H)
            for L in range(2):
                o = m.transformer.h[L].attn.c_proj.weight.detach().double()
                for h in range(H):
                    out_h = z[L, :-1, h] @ o[h * dh:(h + 1) * dh]  # [s-1, d]
                    per[L, h] = (out_h * e).sum(-1).mean()
            out.append(per)
        return torch.stack(out).mean(0)

    da, db_ = hand_dla(ma, za, xa), hand_dla(mb, zb, xb)
    for (L, h), (va, vb, delta, lo, hi, gain, share) in dla.items():
        assert va == pytest.approx(float(da[L, h]), rel=1e-4, abs=1e-7) and vb == pytest.approx(float(db_[L, h]), rel=1e-4, abs=1e-7)
        assert delta == pytest.approx(vb - va, abs=1e-9) and lo <= delta <= hi
    # patching: the top-|Δ DLA| heads (all 8 here: the default patches 8) transplanted one at a time from B into A
    better = [(y - x) > 0 for x, y in zip(la, lb)]
    adv = torch.cat([(y - x)[m] for x, y, m in zip(la, lb, better)]).mean()
    for (L, h), (*_, gain, share) in dla.items():
        lp, *_ = _hand(diffed["dirs"][0], a.start.id, texts, patch={(L, h): [z[L, :, h] for z in zb]})
        expect = torch.cat([(p_ - x)[m] for p_, x, m in zip(lp, la, better)]).mean()
        assert gain == pytest.approx(float(expect), abs=1e-5) and share == pytest.approx(float(expect / adv), rel=1e-4, abs=1e-6)
    # metric deltas: B - A, CI by MOVER from the two stored CIs
    assert len(metric) == 2 * H
    ida, idb = a.info.name, b.info.name
    for va, vb, delta, lo, hi, L, h in metric:
        (xa, xa_lo, xa_hi), (xb, xb_lo, xb_hi) = heads[(ida, L, h)], heads[(idb, L, h)]
        assert (va, vb) == (pytest.approx(xa), pytest.approx(xb)) and delta == pytest.approx(xb - xa)
        assert lo == pytest.approx(delta - math.sqrt((xb - xb_lo) ** 2 + (xa_hi - xa) ** 2))
        assert hi == pytest.approx(delta + math.sqrt((xb_hi - xb) ** 2 + (xa - xa_lo) ** 2))


def test_checkpoints_load_as_one_series_with_steps(diffed: dict) -> None:
    assert [d.name for d in diffed["checkpoints"]] == ["step000002", "step000004"]
    con = duckdb.connect(str(diffed["db"]), read_only=True)
    try:
        rows = con.execute("SELECT model_id, series, step, seed FROM models WHERE series IS NOT NULL ORDER BY step").fetchall()
    finally:
        con.close()
    assert rows == [("toy-run-seed5@step2", "toy-run-seed5", 2, 5), ("toy-run-seed5@step4", "toy-run-seed5", 4, 5)]
    # a `toy train` checkpoint reads the toy world like the embedded toy model: toy corpus text, toy negation items
    from headwiki.ablation.items import default_dataset

    assert default_dataset(str(diffed["checkpoints"][0])) == "toy" and default_dataset(str(diffed["dirs"][0])) == "english"
    con = duckdb.connect(str(diffed["db"]), read_only=True)
    try:
        texts = dict(con.execute("SELECT model_id, json_extract_string(params, '$.text') FROM runs WHERE pass_name = 'detect'").fetchall())
    finally:
        con.close()
    assert texts["toy-run-seed5@step2"].startswith("toy_corpus") and texts["rand-s0"] == "english_passages"


def test_hub_revision_spec_is_parsed_and_refused_offline_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from headwiki.checkpoints import split_revision, step_of_revision
    from headwiki.errors import HeadwikiError
    from headwiki.models import load_model, resolve_source

    assert resolve_source("EleutherAI/pythia-70m@step3000") == ("EleutherAI/pythia-70m@step3000", "hub", "EleutherAI/pythia-70m@step3000")
    assert split_revision("EleutherAI/pythia-70m@step3000") == ("EleutherAI/pythia-70m", "step3000")
    assert step_of_revision("step3000") == 3000 and step_of_revision("main") is None
    with pytest.raises(HeadwikiError, match="REPO@REVISION"):
        resolve_source("EleutherAI/pythia-70m@")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HeadwikiError) as err:
        load_model("EleutherAI/pythia-70m@step3000", device="cpu")
    assert "'EleutherAI/pythia-70m' at revision step3000 is not in the HuggingFace cache" in str(err.value)
    assert "\n" not in str(err.value)


def test_cross_model_pages_say_what_they_compute(diffed: dict) -> None:
    from headwiki.wiki import urls

    site = diffed["site"]
    index = (site / urls.INDEX).read_text()
    for rel in (urls.UNIVERSALITY, urls.COMPARE, urls.MOSAIC, urls.series_page("toy-run-seed5")):
        assert rel in index, rel  # the index leads to every cross-model page
    assert index.index(urls.UNIVERSALITY) < index.index(urls.COMPARE)  # seeds first
    uni = (site / urls.UNIVERSALITY).read_text()
    assert "Hungarian" in uni and "rand-s0" in uni and "rand-s1" in uni
    compare = (site / urls.COMPARE).read_text()
    assert "Role prevalence" in compare and "relative depth" in compare and "z-scored" in compare
    timeline = (site / urls.series_page("toy-run-seed5")).read_text()
    assert "step 2" in timeline and "step 4" in timeline and "toy-run-seed5@step4" in timeline
    from headwiki.wiki.crosspages import step_axis

    assert "type" not in step_axis([2, 4]) and step_axis([200, 300, 400, 6000])["type"] == "log"  # early steps stay visible
    assert "type" not in step_axis([0, 100, 6000])  # a step 0 cannot sit on a log axis
    sql = (site / urls.SQL).read_text()  # cross-model examples, each run at render time
    for title in ("at its relative depth", "score over training steps", "heads whose weights moved most",
                  "per-head metric changes whose 95% CI excludes zero"):
        assert title in sql, title
    head = (site / urls.head_page("toy-run-seed5-step4", 1, 0)).read_text()
    assert 'id="timeline"' in head and "sparkline" in head


def test_cross_model_pages_in_the_browser(diffed: dict, browser) -> None:  # noqa: ANN001 - playwright
    from headwiki.wiki import urls

    from test_wiki_browser import Watch, draw_every_heatmap

    site = diffed["site"]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watch(page)
    for rel in (urls.INDEX, urls.UNIVERSALITY, urls.COMPARE, urls.MOSAIC, urls.series_page("toy-run-seed5"),
                urls.head_page("toy-run-seed5-step4", 1, 0)):
        page.goto((site / rel).resolve().as_uri(), wait_until="load")
        page.wait_for_load_state("networkidle")  # lazily drawn plots fetch plotly.js: let them finish before leaving
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            assert href.startswith("file://") and Path(href.split("#")[0].removeprefix("file://")).exists(), (rel, href)
    page.goto((site / urls.series_page("toy-run-seed5")).resolve().as_uri())
    for i in range(page.locator("figure.timeline").count()):
        page.locator("figure.timeline").nth(i).scroll_into_view_if_needed()
    page.wait_for_function("document.querySelectorAll('figure.timeline .js-plotly-plot svg.main-svg').length >= 1", timeout=60_000)
    page.goto((site / urls.MOSAIC).resolve().as_uri())
    n = page.locator("figure.heat").count()
    assert n >= 4  # a tile per model for each shared role metric
    draw_every_heatmap(page, n)
    page.locator("figure.heat .js-plotly-plot").first.locator(".nsewdrag").first.click(position={"x": 5, "y": 5})
    page.wait_for_url("**/heads/L*H*.html", timeout=10_000)  # a mosaic cell opens that model's head page
    assert watch.problems == []
    context.close()


def test_diff_page_in_the_wiki(diffed: dict, browser) -> None:  # noqa: ANN001 - playwright
    from headwiki.wiki import urls

    from test_wiki_browser import Watch, draw_every_heatmap

    out = diffed["site"]
    a, b = diffed["result"].model_a, diffed["result"].model_b
    page_path = out / urls.diff_page(a, b)
    html = page_path.read_text()
    assert "Biggest movers" in html and "Tokens where the two differ most" in html and "MOVER" in html
    assert "Δ direct logit attribution" in html and "Patching where B does better" in html
    assert html.count('<a class="head"', html.index('id="patching"')) >= 8  # the 8 patched heads, linked
    assert urls.diff_page(a, b) in (out / "index.html").read_text()
    context = browser.new_context()
    page = context.new_page()
    watch = Watch(page)
    page.goto(page_path.resolve().as_uri())
    n = page.locator("figure.heat").count()
    assert n >= 5  # three weight/activation maps, Δ DLA + at least one metric delta
    draw_every_heatmap(page, n)
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
        assert Path(href.split("#")[0].removeprefix("file://")).exists(), href
    assert watch.problems == []
    context.close()


def test_merge_carries_model_diffs_newest_per_pair(diffed: dict, tmp_path: Path) -> None:
    """A diff stored in a shard reaches the merged database with all four tables; of two diffs of one pair the newer wins."""
    import shutil

    from headwiki.db.merge import merge_databases
    from headwiki.db.schema import DIFF_TABLES

    older = tmp_path / "older.duckdb"
    shutil.copy(diffed["db"], older)
    con = duckdb.connect(str(older))
    try:
        con.execute("UPDATE model_diffs SET created_at = created_at - INTERVAL 1 DAY, note = 'older'")
    finally:
        con.close()
    out = tmp_path / "merged.duckdb"
    merge_databases([older, diffed["db"]], out)
    con = duckdb.connect(str(out), read_only=True)
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DIFF_TABLES}
        notes = con.execute("SELECT note FROM model_diffs").fetchall()
    finally:
        con.close()
    src = duckdb.connect(str(diffed["db"]), read_only=True)
    try:
        expect = {t: src.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DIFF_TABLES}
    finally:
        src.close()
    assert counts == expect and counts["diff_heads"] == 8 and len(notes) == 1 and notes[0][0] != "older"


def test_cross_model_sql_examples_run_in_the_page_console_as_in_headwiki_query(diffed: dict, browser) -> None:  # noqa: ANN001
    """The cross-model examples (wiki/crosspages.py:cross_model_sql) run in the SQL page's SQLite console with the rows
    `headwiki query` (DuckDB) gives on the same database."""
    import json
    import re
    import shlex
    from html import unescape

    from click.testing import CliRunner

    from headwiki.db.cli import query
    from headwiki.wiki import urls

    from test_wiki_browser import Watch, _same_value

    html = (diffed["site"] / urls.SQL).read_text(encoding="utf-8")
    sqls = [unescape(s) for s in re.findall(r'<code class="sql-text">(.*?)</code>', html, re.S)]
    commands = [shlex.split(unescape(c)) for c in re.findall(r"<pre><code>(headwiki query .*?)</code></pre>", html, re.S)]
    mine = [i for i, s in enumerate(sqls) if "relative_depth" in s or "m.series" in s or "diff_" in s]
    assert len(mine) == 5
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto((diffed["site"] / urls.SQL).resolve().as_uri())
    page.wait_for_function("document.querySelector('#sql-console .sql-status').dataset.state === 'ready'", timeout=30_000)
    for i in mine:
        page.locator("button.sql-example").nth(i).click()
        page.wait_for_function("sql => { const l = headwikiSql.state.last; return l && l.sql === sql && "
                               "document.querySelector('#sql-console .sql-status').dataset.state !== 'running'; }",
                               arg=sqls[i], timeout=30_000)
        got = page.evaluate("headwikiSql.state.last")
        assert "error" not in got, (sqls[i], got.get("error"))
        result = CliRunner().invoke(query, [*commands[i][2:], "--json"])
        assert result.exit_code == 0, result.output
        want = json.loads(result.output)
        assert len(want) > 0 and len(got["rows"]) == len(want), sqls[i]
        for row_l, row_d in zip(got["rows"], want):
            assert list(row_d) == got["columns"] and all(_same_value(d, lt) for d, lt in zip(row_d.values(), row_l)), sqls[i]
    assert watch.problems == []
    page.close()


def test_build_diffs_consecutive_checkpoints_of_a_series_once(diffed: dict, tmp_path: Path) -> None:
    """`headwiki build` diffs consecutive steps of a checkpoint series (earlier -> later; headwiki.build.diff_series):
    the pair is written once, a second build skips it, models outside a series are never paired."""
    import shutil

    from headwiki.build import diff_series, series_pairs
    from headwiki.models import resolve_source

    db = tmp_path / "copy.duckdb"
    shutil.copy(diffed["db"], db)
    specs = {resolve_source(str(d))[0]: str(d) for d in [*diffed["checkpoints"], *diffed["dirs"]]}
    assert series_pairs(db, list(specs)) == [("toy-run-seed5@step2", "toy-run-seed5@step4")]
    small = {"n_passages": N_PASSAGES, "max_len": MAX_LEN}
    assert diff_series(specs, db, "cpu", "float32", "auto", False, small) == {"toy-run-seed5@step2 -> toy-run-seed5@step4": "ran"}
    assert diff_series(specs, db, "cpu", "float32", "auto", False, small) == {"toy-run-seed5@step2 -> toy-run-seed5@step4": "skipped"}
    con = duckdb.connect(str(db), read_only=True)
    try:
        pairs = con.execute("SELECT model_a, model_b, same_structure FROM model_diffs ORDER BY model_a").fetchall()
        patched = con.execute("SELECT count(*) FROM diff_heads WHERE model_a = 'toy-run-seed5@step2' AND patch_gain IS NOT NULL").fetchall()[0][0]
        texts = dict(con.execute("SELECT model_a, json_extract_string(params, '$.text') FROM model_diffs").fetchall())
    finally:
        con.close()
    assert ("toy-run-seed5@step2", "toy-run-seed5@step4", True) in pairs and patched == 8
    # toy-world models are diffed on the toy corpus (the English passages are mostly <unk> to them); others on English
    assert texts["toy-run-seed5@step2"].startswith("toy_corpus") and texts["rand-s0"] == "english_passages"
