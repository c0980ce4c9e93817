"""The wiki in a real browser (headless Debian chromium via playwright), over a site built from a real database.

Every page loads from file:// with no console error, no failed request and no request leaving file://; every
internal link resolves; heatmaps render and a cell click opens the right head page; the search box filters.
Screenshots of the index, a model page and a head page are saved to artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from headwiki.wiki import urls
from headwiki.wiki.context import load_site_data
from headwiki.wiki.crossref import cross_reference

from test_wiki_render import build_real_site  # the shared, on-disk-cached real database + site

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_real_site(tmp_path_factory.getbasetemp() / "wiki-real")


@pytest.fixture(scope="session")
def site_db(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_wiki_render import build_real_db

    return build_real_db(tmp_path_factory.getbasetemp() / "wiki-real")


class Watch:
    """Console errors, failed requests and any request that does not stay on file://."""

    def __init__(self, page) -> None:  # noqa: ANN001 - playwright Page
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # a load cut short by leaving the page (net::ERR_ABORTED: e.g. the lazy plotly.js when a test clicks through) is
        # the test's doing; a missing or unreadable file fails with its own error (net::ERR_FILE_NOT_FOUND, ...)
        page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED"
                else self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("request", lambda r: None if r.url.startswith(("file://", "data:", "about:", "blob:"))
                else self.problems.append(f"external request: {r.url}"))


def _file_url(path: Path) -> str:
    return path.resolve().as_uri()


def draw_every_heatmap(page, n: int) -> None:  # noqa: ANN001 - playwright Page
    """Heatmaps are drawn lazily as they near the viewport: scroll each into view, then wait for all n."""
    for i in range(n):
        page.locator("figure.heat").nth(i).scroll_into_view_if_needed()
    page.wait_for_function(f"document.querySelectorAll('figure.heat .js-plotly-plot svg.main-svg').length >= {n}",
                           timeout=60_000)


def test_every_page_loads_clean_and_every_link_resolves(browser, site_dir: Path) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watch(page)
    pages = sorted(site_dir.rglob("*.html"))
    assert len(pages) > 10
    broken: list[str] = []
    for path in pages:
        page.goto(_file_url(path), wait_until="load")
        if path.name == "index.html" and path.parent.parent.name == "models":
            page.wait_for_selector(".js-plotly-plot svg.main-svg", timeout=20_000)
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # observers have fired
        if page.evaluate("!!document.querySelector('script[src*=\"plotly\"]')"):  # a lazy plot started loading plotly.js:
            page.wait_for_function("!!window.Plotly", timeout=30_000)  # let it finish before leaving (else ERR_ABORTED)
        hrefs = page.eval_on_selector_all(  # an SVG <a> (circuit nodes) holds its href as an SVGAnimatedString
            "a[href]", "els => els.map(e => typeof e.href === 'string' ? e.href : new URL(e.href.baseVal, document.baseURI).href)")
        for href in hrefs:
            parsed = urlparse(href)
            assert parsed.scheme == "file", f"{path.relative_to(site_dir)} links outside the site: {href}"
            if not Path(unquote(parsed.path)).exists():
                broken.append(f"{path.relative_to(site_dir)} -> {href}")
    context.close()
    assert not watch.problems, watch.problems[:10]
    assert not broken, broken[:10]


def test_heatmap_renders_and_cell_click_opens_that_head(browser, site_dir: Path, site_db: Path) -> None:  # noqa: ANN001
    site = load_site_data(site_db)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    for m in site.models:
        page.goto(_file_url(site_dir / urls.model_page(m.slug)))
        page.wait_for_selector("#heat-induction svg.main-svg", timeout=20_000)
        n_heatmaps = sum(1 for d in m.metrics if d.heatmap)
        assert page.locator("figure.heat").count() == n_heatmaps
        draw_every_heatmap(page, n_heatmaps)
        page.evaluate("window.scrollTo(0, 0)")
        assert page.locator("#heat-induction .colorbar").count() == 1, "every heatmap has a legend"
        layer, head = m.n_layers - 1, min(1, m.n_heads - 1)
        box = page.locator("#heat-induction .nsewdrag").first.bounding_box()
        assert box is not None
        x = box["x"] + (head + 0.5) / m.n_heads * box["width"]
        y = box["y"] + (layer + 0.5) / m.n_layers * box["height"]  # layer 0 at the top
        with page.expect_navigation(timeout=10_000):
            page.mouse.click(x, y)
        assert page.url.endswith(f"/models/{m.slug}/heads/L{layer}H{head}.html"), page.url
        assert page.locator("h1").first.inner_text().startswith(f"L{layer}H{head}")
    page.close()
    assert not watch.problems, watch.problems


def test_search_box_filters_heads(browser, site_dir: Path, site_db: Path) -> None:  # noqa: ANN001
    site = load_site_data(site_db)
    m = site.models[0]
    page = browser.new_page()
    watch = Watch(page)
    page.goto(_file_url(site_dir / urls.model_page(m.slug)))
    page.wait_for_selector(".js-plotly-plot svg.main-svg", timeout=20_000)  # plotly.js loaded (lazily) before we leave
    box = page.locator("#head-search")
    expected_labels = [lab for lab in m.heads["label"] if "l0h1" in lab.lower()]  # L0H1, and L0H10.. if present
    box.fill("L0H1")
    page.wait_for_function("document.querySelectorAll('#search-results li').length > 0")
    assert page.locator("#search-results li a").all_inner_texts() == expected_labels
    values = m.heads["induction"].astype(float)
    threshold = round(float(values.median()), 4)  # the box gets this exact number
    if not (values > threshold).any():  # e.g. most heads score 0: filter just below the strongest head
        threshold = round(float(values.max()) - 1e-3, 4)
    expected = int((values > threshold).sum())
    assert expected >= 1
    box.fill(f"induction>{threshold:.4f}")
    page.wait_for_function(f"document.querySelectorAll('#search-results li').length === {expected}")
    first = page.locator("#search-results li a").first
    href = first.get_attribute("href")
    with page.expect_navigation():
        first.click()
    assert "/heads/L" in page.url and href is not None
    page.goto(_file_url(site_dir / urls.INDEX))
    box_on_index = page.locator("#head-search")
    box_on_index.fill("L0H0")
    page.wait_for_function(f"document.querySelectorAll('#search-results li').length === {len(site.models)}")
    page.close()
    assert not watch.problems, watch.problems


def test_screenshots_of_index_model_and_head(browser, site_dir: Path, site_db: Path) -> None:  # noqa: ANN001
    site = load_site_data(site_db)
    model = next((m for m in site.models if m.has_negation), site.models[0])
    rows = model.heads.to_dict("records")
    kinds = [{st.kind for st in cross_reference(r, model.heads, model.metrics, model.roles, model.roles_of(r))} for r in rows]
    flagged = [r for r, k in zip(rows, kinds) if "confound" in k] or [r for r, k in zip(rows, kinds) if k]
    row = flagged[0] if flagged else model.heads.to_dict("records")[0]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {
        "index.png": (urls.INDEX, 1280),
        "model.png": (urls.model_page(model.slug), 1280),
        "head.png": (urls.head_page(model.slug, row["layer"], row["head"]), 1280),
        "head-narrow.png": (urls.head_page(model.slug, row["layer"], row["head"]), 390),
    }
    for name, (rel, width) in shots.items():
        page = browser.new_page(viewport={"width": width, "height": 900})
        watch = Watch(page)
        page.goto(_file_url(site_dir / rel))
        if rel.endswith("/index.html") and rel.startswith("models/"):
            page.wait_for_selector(".js-plotly-plot svg.main-svg", timeout=20_000)
            draw_every_heatmap(page, page.locator("figure.heat").count())
            page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
        if "head" in name:
            assert page.locator("#crossref").is_visible()
            if flagged:
                assert page.locator("#crossref li.stmt").count() >= 1
            scroll_w = page.evaluate("document.documentElement.scrollWidth")
            assert scroll_w <= width + 1, f"{name}: page scrolls sideways ({scroll_w}px > {width}px)"
        page.close()
        assert not watch.problems, watch.problems
        assert (SCREENSHOTS / name).stat().st_size > 10_000


def test_search_accepts_spaces_and_units_and_says_why_nothing_matched(browser, site_dir: Path, site_db: Path) -> None:  # noqa: ANN001
    """`induction > 0.5` (spaces) works like `induction>0.5`; accuracy changes are searched in the points the pages
    show (`neg_acc_delta_zero < -5`, also `-5 pts`); a query that matches nothing says why."""
    site = load_site_data(site_db)
    m = next(m for m in site.models if m.has_negation)
    page = browser.new_page()
    watch = Watch(page)
    page.goto(_file_url(site_dir / urls.model_page(m.slug)))
    page.wait_for_selector(".js-plotly-plot svg.main-svg", timeout=20_000)
    box, count = page.locator("#head-search"), page.locator("#search-count")

    def results(query: str) -> list[str]:
        box.fill("")
        box.fill(query)
        page.wait_for_function("document.getElementById('search-count').textContent.length > 0")
        return page.locator("#search-results li a").all_inner_texts()

    labels = m.heads["label"].tolist()
    ind = m.heads["induction"].astype(float)
    assert results("induction > 0.5") == results("induction>0.5") == [lab for lab, v in zip(labels, ind) if v > 0.5]
    assert results("induction >= 0.5") == [lab for lab, v in zip(labels, ind) if v >= 0.5]
    points = m.heads["neg_acc_delta_zero"].astype(float) * 100  # stored as a fraction, shown in points
    cut = float(np.round(np.median(points), 2))
    expected = [lab for lab, v in zip(labels, points) if v < cut]
    assert expected, "some heads lower negated accuracy"
    assert results(f"neg_acc_delta_zero < {cut}") == expected
    assert results(f"neg_acc_delta_zero<{cut}pts") == results(f"neg_acc_delta_zero < {cut} points") == expected
    top = float(points.max())
    assert results(f"neg_acc_delta_zero > {top + 1:.0f}") == []
    why = count.inner_text()
    assert why.startswith("Nothing matched: no head has neg_acc_delta_zero >") and "pts" in why and "points" in why, why
    assert results("neg_acc_delta_zero < -5 nats") == [] and "in points" in count.inner_text()
    assert results("indction > 0.5") == [] and "no metric named" in count.inner_text()
    assert "did you mean" not in count.inner_text() or "induction" in count.inner_text()
    assert results("induction > 0.5 zzzz") == [] and "zzzz" in count.inner_text()
    page.close()
    assert not watch.problems, watch.problems


def test_no_sideways_scroll_at_390px_and_head_summary_in_the_first_screen(browser, site_dir: Path, site_db: Path) -> None:  # noqa: ANN001
    """At a phone's 390 px the model, circuit, provenance, SQL and index pages never scroll sideways (wide tables scroll
    inside themselves), and a head page's summary paragraph is in the first screen."""
    site = load_site_data(site_db)
    rels = [urls.PROVENANCE, urls.SQL, urls.INDEX] + [urls.model_page(m.slug) for m in site.models] + \
        [urls.circuit_page(m.slug) for m in site.models]
    page = browser.new_page(viewport={"width": 390, "height": 844})
    watch = Watch(page)
    for rel in rels:
        page.goto(_file_url(site_dir / rel))
        if rel.startswith("models/"):
            draw_every_heatmap(page, page.locator("figure.heat").count())
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, f"{rel} scrolls sideways at 390 px ({width} px)"
    m = next(m for m in site.models if m.has_negation)
    page.goto(_file_url(site_dir / urls.head_page(m.slug, 0, 0)))
    box = page.locator("#summary").bounding_box()
    assert box is not None and box["y"] < 844 and box["width"] <= 390
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    page.close()
    assert not watch.problems, watch.problems


def test_circuit_partners_examples_and_scatter_click(browser, site_dir: Path, site_db: Path) -> None:  # noqa: ANN001
    """Issue 18: the toy circuit page draws a K-composition edge from a previous-token head to an induction head (the
    roles read from the database); a head page lists partners and shows token strips; a scatter point opens a head."""
    site = load_site_data(site_db)
    toy = next(m for m in site.models if m.model_id == "toy")
    roles = {r["label"]: toy.roles_of(r) for r in toy.heads.to_dict("records")}
    prev = {h for h, rs in roles.items() if "previous_token" in rs}
    ind = {h for h, rs in roles.items() if "induction" in rs}
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto(_file_url(site_dir / urls.model_page(toy.slug)))
    page.click(f"a[href='{urls.relative(urls.model_page(toy.slug), urls.circuit_page(toy.slug))}']")
    assert page.url.endswith(urls.circuit_page(toy.slug))
    edges = page.eval_on_selector_all("svg.circuit path.edge", "els => els.map(e => [e.dataset.kind, e.dataset.from, e.dataset.to])")
    assert any(k == "k" and s in prev and d in ind for k, s, d in edges), edges[:5]
    assert page.locator("#threshold").inner_text().count("z ≥") == 1
    dst = next(d for k, s, d in edges if k == "k" and s in prev and d in ind)
    with page.expect_navigation():
        page.locator(f"svg.circuit a.node[data-head='{dst}']").click()
    assert page.url.endswith(f"/heads/{dst}.html")
    upstream = page.locator("#partners table.up tbody tr")
    assert upstream.count() >= 1 and upstream.first.locator("a.head").inner_text() in prev
    assert page.locator("#top-examples li.strip").count() >= 1
    assert page.locator("#top-examples li.strip").first.locator(".tok.query").count() == 1
    page.goto(_file_url(site_dir / urls.model_page(toy.slug)))
    page.locator("#scatter").scroll_into_view_if_needed()
    page.wait_for_selector("#scatter-plot svg.main-svg", timeout=20_000)
    page.select_option("#scatter-x", next(iter(toy.roles.values())).metric)  # an axis change redraws the points
    point = page.locator("#scatter-plot g.points path.point").first
    point.wait_for()
    with page.expect_navigation(timeout=10_000):
        point.click(force=True)
    assert "/heads/L" in page.url, page.url
    page.close()
    assert not watch.problems, watch.problems


def _same_value(duck: object, lite: object) -> bool:
    """One cell from `headwiki query --json` (DuckDB) against the console's (SQLite): equal, numbers to 1e-9."""
    if isinstance(duck, bool):
        duck = int(duck)
    if isinstance(duck, (int, float)) and isinstance(lite, (int, float)) and not isinstance(lite, bool):
        return abs(float(duck) - float(lite)) <= 1e-9 + 1e-9 * abs(float(duck))
    return duck == lite


def test_every_sql_example_runs_in_the_page_console_with_the_rows_of_headwiki_query(browser, site_dir: Path, site_db: Path) -> None:  # noqa: ANN001
    """issue 18 part 4: the SQL page's console (SQLite via sql.js, from file://, no fetch) runs every example on the
    page -- clicked as a reader would -- and returns the same columns and rows, in the same order, as the real
    `headwiki query` command on the database; the cross-role examples return rows on this database."""
    import json
    from html import unescape
    import re
    import shlex

    from click.testing import CliRunner

    from headwiki.db.cli import query

    html = (site_dir / urls.SQL).read_text(encoding="utf-8")
    sqls = [unescape(s) for s in re.findall(r'<code class="sql-text">(.*?)</code>', html, re.S)]
    commands = [shlex.split(unescape(c)) for c in re.findall(r"<pre><code>(headwiki query .*?)</code></pre>", html, re.S)]
    assert len(sqls) == len(commands) >= 10 and [c[2] for c in commands] == sqls
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    page.goto(_file_url(site_dir / urls.SQL))
    page.wait_for_function("document.querySelector('#sql-console .sql-status').dataset.state === 'ready'", timeout=30_000)
    nonempty = {}
    for i, (sql, argv) in enumerate(zip(sqls, commands)):
        page.locator("button.sql-example").nth(i).click()
        page.wait_for_function("sql => { const l = headwikiSql.state.last; return l && l.sql === sql && "
                               "document.querySelector('#sql-console .sql-status').dataset.state !== 'running'; }",
                               arg=sql, timeout=30_000)
        got = page.evaluate("headwikiSql.state.last")
        assert "error" not in got, (sql, got.get("error"))
        result = CliRunner().invoke(query, [*argv[2:], "--json"])
        assert result.exit_code == 0, (sql, result.output)
        want = json.loads(result.output)
        assert len(got["rows"]) == len(want), sql
        assert page.locator("#sql-console .sql-result tbody tr").count() == len(want)
        for row_l, row_d in zip(got["rows"], want):
            assert list(row_d) == got["columns"], sql
            assert all(_same_value(d, lt) for d, lt in zip(row_d.values(), row_l)), (sql, row_d, row_l)
        title = page.locator("section.sql h2").nth(i).inner_text()
        nonempty[title] = len(want)
    edges = "Role-holding heads that feed other role-holding heads (K-composition edges, strongest first)"
    import duckdb

    con = duckdb.connect(str(site_db), read_only=True)
    try:
        has_edges = bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'head_edges'").fetchone()[0])
    finally:
        con.close()
    if has_edges:  # the composition table (issue 18 part 2): the toy's previous-token heads feed its induction heads
        assert nonempty[edges] >= 2
    assert nonempty["How many heads hold each declared role, per model (detector and negation roles)"] >= 4
    assert nonempty["Heads with a detector role, ranked by how far their zero ablation moves negated accuracy"] >= 5
    # a query of its own, typed into the box (Ctrl+Enter), and a table too large for the console is said plainly
    page.fill("#sql-input", "SELECT count(*) AS n FROM heads WHERE list_contains(roles, 'induction')")
    page.press("#sql-input", "Control+Enter")
    page.wait_for_function("headwikiSql.state.last.sql.includes(\"'induction'\")")
    want = CliRunner().invoke(query, ["SELECT count(*) AS n FROM heads WHERE list_contains(roles, 'induction')",
                                      "--db", str(site_db), "--json"])
    assert page.evaluate("headwikiSql.state.last.rows") == [[json.loads(want.output)[0]["n"]]]
    page.close()
    assert not watch.problems, watch.problems
