"""The static wiki rendered from a REAL database: the toy model (detect + ablate) and stories260k (detect only).

The database is built once per session by the real passes (small n); both wiki test modules share it through
`real_site_db` / `real_site`, which cache on disk under the session's base temp dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from db_rows import db_rows

from headwiki.errors import HeadwikiError
from headwiki.wiki import urls
from headwiki.wiki.context import load_site_data
from headwiki.wiki.crossref import cross_reference, ordinal, percentile, rank_desc
from headwiki.wiki.render import MARKER, render_site
from headwiki.wiki.similarity import most_similar

REPO = Path(__file__).resolve().parents[1]
STORIES = REPO.parent / "shared" / "models" / "stories260k"
# Development only: render an existing database instead of running the passes (the default runs them).
OVERRIDE_ENV = "HEADWIKI_WIKI_TEST_DB"


def build_real_db(base: Path) -> Path:
    """Run the real passes into base/real.duckdb once (toy: detect + ablate; stories260k: detect)."""
    db = base / "real.duckdb"
    done = base / "real.done"
    if os.environ.get(OVERRIDE_ENV):
        return Path(os.environ[OVERRIDE_ENV])
    if done.exists():
        return db
    base.mkdir(parents=True, exist_ok=True)
    from headwiki.ablation.run import ablate_model
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    if not (STORIES / "config.json").exists():
        pytest.skip(f"../shared is absent ({STORIES} not found): the wiki tests need it as the second real model")
    toy = load_model("toy", device="cpu")
    detect_model(toy, db, n_seqs=16, seq_len=24, seed=0)
    ablate_model(toy, db, dataset="toy", ablations=("zero", "mean", "resample"), max_items=48, n_boot=200, n_perm=200)
    from headwiki.ablation.validation import validate_model

    validate_model(toy, db, n_seqs=8, seq_len=8, n_boot=200, n_perm=200)
    stories = load_model(str(STORIES), device="cpu")
    detect_model(stories, db, n_seqs=8, seq_len=24, seed=0)
    done.write_text("ok\n")
    return db


def build_real_site(base: Path) -> Path:
    out = base / "site"
    if not (out / MARKER).exists():
        render_site(build_real_db(base), out)
    return out


@pytest.fixture(scope="session")
def real_site_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_real_db(tmp_path_factory.getbasetemp() / "wiki-real")


@pytest.fixture(scope="session")
def real_site(tmp_path_factory: pytest.TempPathFactory, real_site_db: Path) -> Path:
    return build_real_site(tmp_path_factory.getbasetemp() / "wiki-real")


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the real database and its site

def test_real_db_has_two_models_one_with_negation(real_site_db: Path) -> None:
    site = load_site_data(real_site_db)
    assert len(site.models) >= 2
    with_neg = [m for m in site.models if m.has_negation]
    without = [m for m in site.models if not m.has_negation]
    assert with_neg and without, "need one model with negation columns and one with detectors only"
    for m in site.models:
        names = {d.name for d in m.metrics}
        assert {"induction", "previous_token"} <= names, names
        assert all(d.n for d in m.metrics if d.kind == "detector" and d.has_ci), "every detector score states its n"


def test_every_page_exists_and_links_resolve(real_site: Path, real_site_db: Path) -> None:
    site = load_site_data(real_site_db)
    assert (real_site / urls.INDEX).exists() and (real_site / urls.PLOTLY_JS).exists()
    for m in site.models:
        assert (real_site / urls.model_page(m.slug)).exists()
        for r in m.heads.itertuples():
            assert (real_site / urls.head_page(m.slug, r.layer, r.head)).exists()
    pages = sorted(real_site.rglob("*.html"))
    href = re.compile(r'(?:href|src)="([^"#]*)(?:#[^"]*)?"')
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for link in href.findall(text):
            if not link:
                continue
            assert not link.startswith(("/", "http:", "https:", "//")), f"{page}: non-relative link {link}"
            if not (page.parent / link).resolve().exists():
                broken.append(f"{page.relative_to(real_site)} -> {link}")
    assert not broken, broken[:10]


def test_plotly_written_once_and_head_pages_small(real_site: Path) -> None:
    import plotly.offline

    js = (real_site / urls.PLOTLY_JS).read_bytes()
    assert len(js) > 1_000_000
    # the cartesian partial bundle is the plotly.js release the Python plotly writing the figures ships with
    banner = re.search(rb"plotly\.js \(cartesian - minified\) v([0-9.]+)", js[:300])
    assert banner and banner.group(1).decode() == plotly.offline.get_plotlyjs_version(), js[:300]
    marker = js[:2000]
    for page in real_site.rglob("*.html"):
        data = page.read_bytes()
        assert marker not in data, f"plotly.js inlined in {page}"
        if "/heads/" in str(page):
            # a guard against runaway growth, not a target: ~40 metric rows with inline SVGs (~77 KB of it), the
            # validation card, the group table, the OV profile, top-example strips and composition partners (issue 18/19):
            # 134-141 KB on the toy's layer-1 heads with the IOI and delimiter columns (loaded lazily: plotly is not inlined)
            assert len(data) < 160_000, f"{page} is {len(data)} bytes"


def test_model_page_has_a_heatmap_per_metric_with_clickable_links(real_site: Path, real_site_db: Path) -> None:
    site = load_site_data(real_site_db)
    for m in site.models:
        html = (real_site / urls.model_page(m.slug)).read_text(encoding="utf-8")
        for d in m.metrics:
            if d.heatmap:
                assert f'id="heat-{d.name}"' in html, d.name
        cell_links = re.findall(r'"(heads\\u002fL\d+H\d+\.html)"', html)  # heatmap customdata (plotly escapes "/")
        assert len(set(cell_links)) == len(m.heads), "every heatmap cell carries its head page URL"
        for link in set(cell_links):
            assert (real_site / urls.model_page(m.slug)).parent.joinpath(link.replace("\\u002f", "/")).exists()
        if m.has_negation:
            assert 'id="heat-neg_acc_delta_zero"' in html and "Negation baselines" in html
        else:
            assert "heat-neg_acc_delta" not in html and "No negation pass" in html


def test_head_page_states_confounds_from_numbers(real_site: Path, real_site_db: Path) -> None:
    site = load_site_data(real_site_db)
    m = next(m for m in site.models if m.has_negation)
    rows = m.heads.to_dict("records")
    texts = {r["label"]: [s.text for s in cross_reference(r, m.heads, m.metrics, m.roles, m.roles_of(r))] for r in rows}
    kinds = {r["label"]: {s.kind for s in cross_reference(r, m.heads, m.metrics, m.roles, m.roles_of(r))} for r in rows}
    flagged = [k for k, v in kinds.items() if "confound" in v] or [k for k, v in texts.items() if v]
    assert flagged, "the toy model has heads with several functions; the cross-reference panel must say so"
    label = flagged[0]
    r = next(x for x in rows if x["label"] == label)
    html = (real_site / urls.head_page(m.slug, r["layer"], r["head"])).read_text(encoding="utf-8")
    assert "Cross-reference" in html
    for t in texts[label]:
        assert t.replace("'", "&#39;") in html
    for d in m.metrics:  # every metric with its CI and percentile
        assert f"<code>{d.name}</code>" in html


def test_rerender_is_byte_identical_and_failed_render_keeps_old_site(real_site_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    render_site(real_site_db, out)
    first = _tree_digest(out)
    render_site(real_site_db, out)
    assert _tree_digest(out) == first
    with pytest.raises(HeadwikiError):
        render_site(tmp_path / "missing.duckdb", out)
    assert _tree_digest(out) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")], "temp dirs left behind"


def test_sql_examples_run_against_the_database(real_site: Path, real_site_db: Path) -> None:
    """Each command on the SQL page runs through the real `headwiki query` command and returns the stated rows."""
    from click.testing import CliRunner

    from headwiki.db.cli import query

    html = (real_site / urls.SQL).read_text(encoding="utf-8")
    commands = [shlex.split(unescape(c)) for c in re.findall(r"<pre><code>(headwiki query .*?)</code></pre>", html, re.S)]
    stated = [int(n) for n in re.findall(r'data-rows="(\d+)"', html)]
    assert len(commands) >= 5 and len(stated) == len(commands)
    for argv, n_rows in zip(commands, stated):
        assert argv[:2] == ["headwiki", "query"] and argv[3:] == ["--db", str(real_site_db)], argv
        result = CliRunner().invoke(query, [*argv[2:], "--json"])
        assert result.exit_code == 0, (argv[2], result.output)
        assert len(json.loads(result.output)) == n_rows, argv[2]


def test_refuses_to_overwrite_a_foreign_directory(real_site_db: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(HeadwikiError, match="did not write"):
        render_site(real_site_db, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


CLI = ("import sys\nfrom headwiki.cli import cli, main\nfrom headwiki.wiki.cli import site\n"
       "cli.commands.setdefault(site.name, site)\nmain(sys.argv[1:])")


def test_cli_site_renders_and_bad_db_is_one_line_exit_2(real_site_db: Path, tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-c", CLI, "site", "--db", str(real_site_db), "--out", str(tmp_path / "ok")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(tmp_path / "ok" / "index.html") and (tmp_path / "ok" / "index.html").exists()
    bad = subprocess.run([sys.executable, "-c", CLI, "site", "--db", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("headwiki: error:") and "does not exist" in lines[0], bad.stderr
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- pure functions

def test_rank_percentile_ordinal() -> None:
    v = np.array([0.1, 0.5, np.nan, 0.9, 0.5])
    assert rank_desc(v, 0.9) == 1 and rank_desc(v, 0.5) == 2 and rank_desc(v, 0.1) == 4
    assert percentile(v, 0.9) == pytest.approx(87.5) and percentile(v, 0.1) == pytest.approx(12.5)
    assert [ordinal(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]


def _heads(prev: list[float], ind: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"label": [f"L0H{i}" for i in range(len(prev))], "previous_token": prev, "induction": ind})


def _declared() -> tuple[list, dict]:
    """The real declarations of the induction and previous-token metrics and roles, as the wiki reads them."""
    from headwiki.detectors import induction, previous_token
    from headwiki.wiki.context import metric_doc, role_doc

    metrics = [metric_doc(m.name, {**m.row(), "description": m.description}, has_ci=True, has_q=False)
               for m in (induction.METRIC, previous_token.METRIC)]
    roles = {r.name: role_doc({**r.row(), "held_in": "roles"}) for r in (induction.ROLE, previous_token.ROLE)}
    return metrics, roles


def _xref(row: dict, heads: pd.DataFrame) -> list:
    metrics, roles = _declared()
    return cross_reference(row, heads, metrics, roles, row.get("roles", []))


def test_crossref_flags_a_strong_previous_token_head_with_a_negation_effect() -> None:
    heads = _heads([0.2, 0.64, 0.9, 0.1], [0.0, 0.1, 0.05, 0.0])
    row = {"label": "L0H1", "previous_token": 0.64, "previous_token_lo": 0.6, "previous_token_hi": 0.68,
           "induction": 0.1, "roles": ["previous_token"],
           "neg_acc_delta_zero": -0.12, "neg_acc_delta_zero_lo": -0.16, "neg_acc_delta_zero_hi": -0.08,
           "neg_acc_delta_zero_q": 0.01}
    out = _xref(row, heads)
    confound = [s for s in out if s.kind == "confound"]
    assert len(confound) == 1
    text = confound[0].text
    assert "changes negated accuracy by -12 points [-16, -8] (zero ablation)" in text  # the CI of the signed value
    assert "2nd-strongest previous-token head (0.64 [0.60, 0.68])" in text
    assert "token-order" in text and not confound[0].noisy
    assert confound[0].roles == ("previous_token",)


def test_crossref_hedges_wide_cis_and_is_silent_without_a_second_function() -> None:
    heads = _heads([0.2, 0.64, 0.9, 0.1], [0.0, 0.1, 0.05, 0.0])
    noisy = {"label": "L0H2", "previous_token": 0.9, "induction": 0.05, "roles": ["previous_token"],
             "neg_acc_delta_zero": -0.10, "neg_acc_delta_zero_lo": -0.25, "neg_acc_delta_zero_hi": 0.02}
    [s] = [s for s in _xref(noisy, heads) if s.kind == "confound"]
    assert s.noisy and "noisy" in s.text
    plain = {"label": "L0H3", "previous_token": 0.1, "induction": 0.0, "roles": [],
             "neg_acc_delta_zero": -0.01, "neg_acc_delta_zero_lo": -0.03, "neg_acc_delta_zero_hi": 0.01}
    assert _xref(plain, heads) == []


def test_most_similar_is_nearest_in_zscored_space() -> None:
    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [0.0, 0.2], [np.nan, 0.05]])
    near = most_similar(x, 0, k=3)
    assert [i for i, _ in near][:1] in ([1], [4])
    assert 2 not in [i for i, _ in near]
    assert all(a[1] <= b[1] for a, b in zip(near, near[1:]))


def test_urls_are_relative_and_slugs_safe() -> None:
    head = urls.head_page("toy", 5, 1)
    assert head == "models/toy/heads/L5H1.html"
    assert urls.relative(head, urls.INDEX) == "../../../index.html"
    assert urls.relative(urls.model_page("toy"), head) == "heads/L5H1.html"
    assert urls.relative(head, urls.head_page("toy", 5, 2)) == "L5H2.html"
    assert urls.slug("EleutherAI/pythia 70m") == "eleutherai-pythia-70m"
    with pytest.raises(ValueError):
        urls.relative(head, "/abs.html")


def test_negation_evidence_where_people_look(real_site: Path, real_site_db: Path) -> None:
    """Head pages carry the ablation-kind disagreement sentence (from the pass's flag), the groups holding the
    head with their reversal Δ, and the templates that carry its effect; the model page shows group ΔR."""
    import duckdb

    flags = db_rows(real_site_db, "SELECT layer, head, ablation_kinds_disagree, ablation_disagreement FROM heads WHERE model_id = 'toy' ORDER BY layer, head")
    assert any(f for _, _, f, _ in flags) and not all(f for _, _, f, _ in flags), "the flag separates heads"
    for layer, head, flag, text in flags:
        html = unescape((real_site / urls.head_page("toy", layer, head)).read_text(encoding="utf-8"))
        assert ("Ablation kinds disagree on" in html) == bool(flag)
        if flag:
            assert text in html
        assert f"Groups containing L{layer}H{head}" in html and "reversal Δ" in html
        assert "Templates that carry the effect (zero ablation)" in html
        assert "Δ LD control (nats)" in html
    model_html = (real_site / urls.model_page("toy")).read_text(encoding="utf-8")
    assert "reversal Δ" in model_html and "reversal R" in model_html


def test_negation_role_page_shows_the_rule_and_the_numbers_it_used(real_site: Path, real_site_db: Path) -> None:
    import duckdb

    from headwiki.negation_rule import RULE_TEXT

    rows = db_rows(real_site_db, "SELECT label, reversal_delta_zero, negation_role FROM heads WHERE model_id = 'toy' AND negation_role IN ('negation_supporter', 'shortcut_promoter')")
    for label, d_rev, role in rows:
        html = unescape((real_site / urls.role_page(role)).read_text(encoding="utf-8"))
        assert RULE_TEXT in html and "BH q" in html
        shown = [float(x) for x in re.findall(r"[+-]?\d+\.\d+", html)]
        assert any(abs(x - d_rev) < 5e-4 for x in shown), (label, d_rev)


def test_role_and_head_pages_show_causal_validation_from_the_table(real_site: Path, real_site_db: Path) -> None:
    """The role pages say in words (and draw) what role_validation holds; duplicate-token says it has no signature;
    causally important heads are listed with zero / mean / resample shares; their head pages carry the sentence."""
    import duckdb

    from headwiki.wiki.pages import _pct

    con = duckdb.connect(str(real_site_db), read_only=True)
    try:
        prev = con.execute("SELECT effect, effect_lo, effect_hi, random_mean, k FROM role_validation WHERE model_id = 'toy' AND "
                           "role = 'previous_token' AND signature = 'induction_heads_score' AND group_name = 'all' "
                           "AND ablation = 'zero'").fetchall()[0]
        important = con.execute("SELECT label, causal_share_zero FROM heads WHERE model_id = 'toy' AND causally_important "
                                "ORDER BY causal_share_zero DESC").fetchall()
    finally:
        con.close()
    page = unescape(re.sub(r"\s+", " ", (real_site / "roles" / "previous_token.html").read_text()))
    assert (f"Zero-ablating the {prev[4]} labelled previous-token heads together removes {_pct(prev[0])} "
            f"[95% CI {_pct(prev[1])}, {_pct(prev[2])}] of the labelled induction heads' induction score") in page
    assert f"random {prev[4]}-head sets from the same layers remove {_pct(prev[3])} on average" in page
    assert page.count('<svg class="validation"') >= 4, "a strip plot per signature and ablation"
    dup = (real_site / "roles" / "duplicate_token.html").read_text()
    assert "no clean behavioural signature" in dup and '<svg class="validation"' not in dup
    ind = unescape((real_site / "roles" / "induction.html").read_text())
    assert "Causally important heads" in ind and important and all(label in ind for label, _ in important)
    label, share = important[0]
    head = unescape(re.sub(r"\s+", " ", (real_site / "models" / "toy" / "heads" / f"{label}.html").read_text()))
    assert f"Zero-ablating {label} alone removes {_pct(share)}" in head


# ---------------------------------------------------------------- words and numbers over the generated text (issue 18)

NUM = r"[+-]?\d+(?:\.\d+)?"
VALUE_CI = re.compile(rf"({NUM})(?: ?(?:points|point|pts|nats|nat|%))? \[({NUM})%?, ({NUM})%?\]")
GRAMMAR_BUGS = re.compile(r"\b1 points\b|\b1st-strongest|\b[Aa] [aeiouAEIOU][\w-]* head|"
                          r"\b[Aa]n [b-df-hj-np-tv-zB-DF-HJ-NP-TV-Z][\w-]* head|\bq = 0\.000\d")


def page_text(path: Path) -> str:
    """A page's visible text, table cells and list items kept apart by ' | ' (scripts dropped)."""
    t = re.sub(r"<script.*?</script>", " ", path.read_text(encoding="utf-8"), flags=re.S)
    t = re.sub(r"</?(?:td|th|tr|li|p|br|div|h\d|dd|dt|section|figure|figcaption|title|summary)\b[^>]*>", " | ", t)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", t)))


def test_generated_text_has_consistent_cis_and_no_grammar_bugs(real_site: Path) -> None:
    """Every 'value [lo, hi]' printed anywhere on the site has the value inside its (signed) CI; no 'by 1 points',
    'A induction head', '1st-strongest', magnitude-only '95% CI 8 to 16' after a signed effect, or 'q = 0.000x'."""
    pairs, problems = 0, []
    for path in sorted(real_site.rglob("*.html")):
        text = page_text(path)
        for m in VALUE_CI.finditer(text):
            pairs += 1
            v, lo, hi = map(float, m.groups())
            if not lo <= v <= hi:
                problems.append(f"{path.name}: {text[max(0, m.start() - 60):m.end()]}")
        problems += [f"{path.name}: {w}" for w in GRAMMAR_BUGS.findall(text)]
        problems += [f"{path.name}: {w}" for w in re.findall(r"(?:lowers|raises) [^.|]{0,80}\(95% CI [^)]*\)", text)]
    assert pairs > 200, "the site prints values with CIs"
    assert not problems, problems[:10]


def test_confound_sentences_quote_the_signed_effect_from_the_database(real_site: Path, real_site_db: Path) -> None:
    """The confound panel's effect numbers are the database's signed estimates and CIs (accuracy in points), so
    they read the same as the metric table: '-75 points [-88, -62]', never 'lowers ... by 75 (95% CI 62 to 88)'."""
    from headwiki.wiki.crossref import EFFECTS

    site = load_site_data(real_site_db)
    m = next(m for m in site.models if m.has_negation)
    words = {w: (stem, unit) for stem, (w, unit) in EFFECTS.items()}
    checked = 0
    for r in m.heads.to_dict("records"):
        for s in cross_reference(r, m.heads, m.metrics, m.roles, m.roles_of(r)):
            if s.kind not in ("confound", "no_confound"):
                continue
            for found in re.finditer(rf"by ({NUM})(?: points?)? \[({NUM}), ({NUM})\] \((\w+) ablation", s.text):
                v, lo, hi, a = found.groups()
                before = s.text[:found.start()]  # the measure is the last one named before the number
                stem = words[max(words, key=lambda w: before.rfind(w))]
                col = f"{stem[0]}_{a}"
                scale = 100.0 if stem[1] == "points" else 1.0
                est, db_lo, db_hi = (float(r[c]) * scale for c in (col, f"{col}_lo", f"{col}_hi"))
                tol = 0.51 * 10 ** -(len(v.split(".")[1]) if "." in v else 0)
                assert abs(float(v) - est) <= tol and abs(float(lo) - db_lo) <= tol and abs(float(hi) - db_hi) <= tol, \
                    (r["label"], col, (v, lo, hi), (est, db_lo, db_hi))
                checked += 1
    assert checked >= 2, "the toy model has heads with notable negation effects"


def test_head_page_opens_with_a_summary_and_says_each_confound_once(real_site: Path, real_site_db: Path) -> None:
    """Head pages start with one generated paragraph (roles with scores and CIs, the most distinctive ablation effect,
    the caveats) before the evidence; the cross-reference panel states each distinct point once."""
    from headwiki.wiki.pages import role_label

    site = load_site_data(real_site_db)
    m = next(m for m in site.models if m.has_negation)
    saw_caveat = saw_effect = False
    for r in m.heads.to_dict("records"):
        html = (real_site / urls.head_page(m.slug, r["layer"], r["head"])).read_text(encoding="utf-8")
        found = re.search(r'<p class="summary" id="summary">(.*?)</p>', html, re.S)
        assert found, r["label"]
        summary = unescape(found.group(1))
        assert html.index('id="summary"') < html.index('id="crossref"') < html.index('id="metrics"')
        assert summary.startswith(r["label"])
        roles = m.roles_of(r)
        for role in roles:
            assert role_label(role, m.roles) in summary, (r["label"], role, summary)
            metric = m.roles[role].metric
            if m.roles[role].family == "detector":  # a detector role: its score and 95% CI, two decimals
                sign = "+" if m.metric(metric).direction == "signed" else ""  # signed scores (OV copying) carry a sign
                assert f"{r[metric]:{sign}.2f} [{r[metric + '_lo']:{sign}.2f}, {r[metric + '_hi']:{sign}.2f}]" in summary, summary
        if not roles:
            assert "has no role" in summary
        statements = cross_reference(r, m.heads, m.metrics, m.roles, roles)
        kinds = [s.kind for s in statements]
        for kind in set(kinds) - {"noisy_role"}:
            assert kinds.count(kind) == 1, (r["label"], kinds)
        items = [unescape(t) for t in re.findall(r'<li class="stmt [^"]*">.*?</span> (.*?)</li>', html, re.S)]
        assert len(items) == len(set(items)) == len(statements), r["label"]
        if "confound" in kinds:
            assert "may come from" in summary
            saw_caveat = True
        if "most distinctive ablation effect" in summary:
            saw_effect = True
        if not statements:
            assert "finds no confound" in summary
    assert saw_caveat and saw_effect


def test_sql_multi_role_example_returns_the_heads_the_wiki_flags(real_site_db: Path, tmp_path: Path) -> None:
    """The SQL page's 'more than one role' example, run through `headwiki query`, returns exactly the heads whose
    pages carry the multi-role statement, on a copy of the real database where two heads hold two roles (one
    detector + negation role, one two detector roles) as bigger builds produce."""
    import shutil

    import duckdb
    from click.testing import CliRunner

    from headwiki.db.cli import query
    from headwiki.detectors.copying import ROLE as COPYING
    from headwiki.detectors.copying import SUPPRESSION_ROLE
    from headwiki.detectors.duplicate_token import ROLE as DUPLICATE
    from headwiki.detectors.previous_token import ROLE as PREVIOUS
    from headwiki.detectors.successor import ROLE as SUCCESSOR
    from headwiki.negation_spec import SUPPORTER
    from headwiki.wiki.pages import MULTI_ROLE_TITLE

    db = tmp_path / "two-roles.duckdb"
    shutil.copy(real_site_db, db)
    con = duckdb.connect(str(db))
    try:
        # the weight roles (OV copying, ...) make many heads multi-role: keep the pattern-detector roles only
        weight_roles = [r.name for r in (COPYING, SUPPRESSION_ROLE, SUCCESSOR)]
        con.execute("UPDATE heads SET roles = list_filter(roles, lambda r: NOT list_contains(?, r))", [weight_roles])
        con.execute("UPDATE heads SET negation_role = ? WHERE model_id = 'toy' AND label = 'L1H0'", [SUPPORTER.name])
        con.execute("UPDATE heads SET roles = [?, ?] WHERE model_id = 'toy' AND label = 'L0H4'", [PREVIOUS.name, DUPLICATE.name])
    finally:
        con.close()
    site_dir = tmp_path / "site"
    render_site(db, site_dir)
    flagged = sorted((m.model_id, r["label"]) for m in load_site_data(db).models for r in m.heads.to_dict("records")
                     if 'class="stmt several_roles' in (site_dir / urls.head_page(m.slug, r["layer"], r["head"])).read_text())
    several = {(m.model_id, r["label"]) for m in load_site_data(db).models for r in m.heads.to_dict("records")
               if len(m.roles_of(r)) >= 2}  # (more roles, e.g. delimiter, add heads)
    assert {("toy", "L0H4"), ("toy", "L1H0")} <= several and flagged == sorted(several)
    html = (site_dir / urls.SQL).read_text(encoding="utf-8")
    section = html[html.index(MULTI_ROLE_TITLE):]
    argv = shlex.split(unescape(re.search(r"<pre><code>(headwiki query .*?)</code></pre>", section, re.S).group(1)))
    result = CliRunner().invoke(query, [*argv[2:], "--json"])
    assert result.exit_code == 0, result.output
    assert sorted((row["model_id"], row["label"]) for row in json.loads(result.output)) == flagged


def test_head_page_lists_the_other_query_heads_of_its_kv_group(real_site: Path, real_site_db: Path) -> None:
    """issue 23: stories260k has 8 query heads and 4 KV heads per layer (pairs share one); the toy model has none
    shared. The KV-group card names exactly the other heads of the pair, or says the head is alone."""
    import re as _re

    site = load_site_data(real_site_db)
    gqa = next(m for m in site.models if not m.has_negation)
    toy = next(m for m in site.models if m.has_negation)
    html = (real_site / urls.head_page(gqa.slug, 2, 3)).read_text(encoding="utf-8")
    card = html[html.index('id="kv-group"'):]
    card = card[:card.index("</div>")]
    assert "Reads KV head 1 of layer 2" in card
    assert _re.findall(r">(L\dH\d)</a>", card) == ["L2H2"]
    html = (real_site / urls.head_page(toy.slug, 1, 3)).read_text(encoding="utf-8")
    assert "Reads KV head 3 of layer 1" in html and "alone (no grouped-query attention)" in html


def test_borderline_labels_are_marked_on_head_pages(real_site: Path, real_site_db: Path) -> None:
    """issue 23: every head with a borderline role (label stability grid or CI crossing the threshold) says so on
    its page; stable and borderline roles never overlap, and stable roles are roles the head holds."""
    import duckdb

    con = duckdb.connect(str(real_site_db), read_only=True)
    try:
        rows = con.execute("SELECT model_id, layer, head, roles, roles_stable, roles_borderline FROM heads "
                           "WHERE roles_borderline IS NOT NULL").fetchall()
    finally:
        con.close()
    site = load_site_data(real_site_db)
    slugs = {m.model_id: m.slug for m in site.models}
    marked = 0
    for mid, layer, head, roles, stable, border in rows:
        assert set(stable) <= set(roles) and not set(stable) & set(border)
        html = (real_site / urls.head_page(slugs[mid], layer, head)).read_text(encoding="utf-8")
        assert ('id="borderline"' in html) == bool(border), (mid, layer, head)
        marked += bool(border)
    assert rows and marked >= 1  # the toy build has at least one borderline label (L0H0's duplicate-token score)


def test_head_pages_of_ablated_models_show_the_sandbox_command(real_site: Path, real_site_db: Path) -> None:
    """issue 21: a head page links the sandbox with the command that opens it on that head."""
    site = load_site_data(real_site_db)
    for m in site.models:
        html = unescape((real_site / urls.head_page(m.slug, 0, 1)).read_text(encoding="utf-8"))
        expected = f"headwiki sandbox --model {m.model_id} --db {site.db_name} --heads L0H1"
        assert (expected in html) == m.has_negation, m.model_id


def test_model_page_shows_the_role_overlap_matrix_and_ioi_says_not_applicable(real_site: Path, real_site_db: Path) -> None:
    """The toy model page draws the role-overlap table (every held role, pairs vs chance); the toy model has no
    single-token names, so the IOI roles are not applicable there: no head labelled, the validation row says why."""
    import duckdb

    page = (real_site / "models" / "toy" / "index.html").read_text(encoding="utf-8")
    assert 'id="overlap"' in page and "expected by chance" in page
    con = duckdb.connect(str(real_site_db), read_only=True)
    try:
        fam = dict(con.execute("SELECT role, family FROM roles WHERE model_id = 'toy'").fetchall())
        assert fam["name_mover"] == "ioi" and fam["delimiter"] == "detector"
        held = [r for (rs,) in con.execute("SELECT roles FROM heads WHERE model_id = 'toy'").fetchall() for r in rs]
        assert not {"name_mover", "negative_name_mover", "s_inhibition", "backup_name_mover"} & set(held)
        note = con.execute("SELECT note FROM role_validation WHERE model_id = 'toy' AND role = 'name_mover'").fetchall()
        assert note and "not applicable" in note[0][0]
    finally:
        con.close()


def test_site_ships_every_table_as_parquet_csv_json_and_console_data(real_site: Path, real_site_db: Path) -> None:
    """issue 18 part 4: every table and view of the database is in the site as Parquet, CSV and JSON with all its
    rows (read back by DuckDB), linked from the SQL page, and (small enough) as the console's script."""
    import duckdb

    from headwiki.db.tables import CONSOLE_CALLBACK, exported_tables

    con = duckdb.connect(str(real_site_db), read_only=True)
    try:
        names = exported_tables(con)
        counts = {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
        heads_cols = [d[0] for d in con.execute("SELECT * FROM heads LIMIT 0").description]
    finally:
        con.close()
    assert {"heads", "models", "metrics", "roles", "runs", "head_metrics_long"} <= set(names)
    data = real_site / urls.DATA_DIR
    html = (real_site / urls.SQL).read_text(encoding="utf-8")
    reader = duckdb.connect()
    for name in names:
        for fmt_, read in (("parquet", "read_parquet"), ("csv", "read_csv"), ("json", "read_json")):
            path = data / f"{name}.{fmt_}"
            assert f'href="{urls.DATA_DIR}/{name}.{fmt_}"' in html, (name, fmt_)
            assert reader.execute(f"SELECT count(*) FROM {read}(?)", [str(path)]).fetchone()[0] == counts[name], path
        script = (data / "console" / f"{name}.js").read_text(encoding="utf-8")
        assert script.startswith(CONSOLE_CALLBACK + "(")
        payload = json.loads(script[len(CONSOLE_CALLBACK) + 1:-3])
        assert len(payload["rows"]) == counts[name]
    assert [d[0] for d in reader.execute(f"SELECT * FROM read_parquet(?) LIMIT 0", [str(data / "heads.parquet")]).description] == heads_cols
    reader.close()


def test_a_table_over_the_text_cap_ships_as_parquet_only(real_site_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A table of more than TEXT_MAX_CELLS cells gets its Parquet file (all rows) and no CSV, JSON or console script;
    smaller tables keep all four; a second write gives byte-identical files."""
    import duckdb

    from headwiki.db import tables as site_tables

    monkeypatch.setattr(site_tables, "TEXT_MAX_CELLS", 1000)
    written = {t.name: t for t in site_tables.write_site_tables(real_site_db, tmp_path / "a")}
    big = written["heads"]  # 56 rows x ~200 columns
    assert big.n_rows * len(big.columns) > 1000 and set(big.files) == {"parquet"} and big.console is None
    assert not (tmp_path / "a" / "heads.csv").exists() and not (tmp_path / "a" / "console" / "heads.js").exists()
    assert duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [str(tmp_path / "a" / "heads.parquet")]).fetchone()[0] == big.n_rows
    small = written["models"]
    assert set(small.files) == {"parquet", "csv", "json"} and small.console == "console/models.js"
    site_tables.write_site_tables(real_site_db, tmp_path / "b")
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
