"""Render the static site from the database: write everything to a temp dir beside `out`, then swap it in.

Output is deterministic (sorted, no render timestamps), so re-rendering an unchanged database gives
byte-identical files; a failed render leaves the previous site untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from headwiki.atomic_dir import MARKER, check_replaceable, replaced_dir
from headwiki.db.store import reading
from headwiki.db.tables import write_site_tables
from headwiki.errors import HeadwikiError
from headwiki.progress import log, progress_task
from headwiki.wiki import format as fmt
from headwiki.wiki import pages, urls
from headwiki.wiki.context import load_site_data

STATIC_FILES = {"style.css": urls.STYLE_CSS, "site.js": urls.SITE_JS, "sql-console.js": urls.SQL_CONSOLE_JS}
# plotly.js's official "cartesian" partial bundle (npm plotly.js-cartesian-dist-min, MIT, LICENSE beside it): the
# heatmap trace and everything it draws with, 1.5 MB (0.50 MB gzipped) instead of the full 4.6 MB bundle; the same
# plotly.js version as the Python plotly that writes the figures (tests/test_wiki_render.py checks).
PLOTLY_BUNDLE = "plotly-cartesian.min.js"
# sql.js 1.17.0 (npm sql.js, MIT, LICENSE beside it): SQLite 3.54 compiled to WebAssembly with the wasm inlined as
# base64 (0.98 MB, 0.45 MB gzipped), so the SQL page's console starts from file:// without fetch or workers
# (docs/architecture.md "SQL in the browser": why not DuckDB-WASM; benchmarks/bench_sql_engine.py measures it).
SQL_ENGINE = "sql-wasm-inline.js"


@dataclass(frozen=True)
class SiteResult:
    """What a render wrote."""

    out_dir: Path
    n_models: int
    n_heads: int
    n_pages: int
    total_bytes: int
    max_head_page_bytes: int
    seconds: float

    @property
    def index(self) -> Path:
        return self.out_dir / urls.INDEX


def make_env() -> Environment:
    env = Environment(
        loader=PackageLoader("headwiki.wiki", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = pages.fmt_number
    env.filters["val"] = fmt.value  # x|val("points", True) -> '+12.0 pts'
    env.filters["est"] = fmt.estimate  # x|est(lo, hi, "nats", True) -> '+0.12 nats [+0.05, +0.20]'
    env.filters["with_article"] = fmt.with_article  # 'induction head' -> 'an induction head'
    env.filters["capitalize_first"] = fmt.capitalize  # unlike Jinja's capitalize, keeps 'BOS'
    return env


def _write(root: Path, rel: str, text: str) -> int:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(data)
    return len(data)


def _build(db_path: Path, db_arg: str, tmp: Path) -> tuple[int, int, int, int, int]:
    """Write the whole site into `tmp`. -> (models, heads, pages, bytes, largest head page)."""
    site = load_site_data(db_path)
    env = make_env()
    roles = pages.all_roles(site)
    n_heads = sum(len(m.heads) for m in site.models)
    total = 3 + len(site.models) + len(roles) + n_heads
    written = 0
    n_pages = 0
    max_head = 0

    def render(template: str, rel: str, ctx: dict[str, Any]) -> int:
        nonlocal written, n_pages
        size = _write(tmp, rel, env.get_template(template).render(**ctx))
        written += size
        n_pages += 1
        return size

    with progress_task("rendering site", total) as bar:
        static = resources.files("headwiki.wiki") / "static"
        written += _write(tmp, urls.PLOTLY_JS, static.joinpath(PLOTLY_BUNDLE).read_text(encoding="utf-8"))
        written += _write(tmp, urls.SQL_ENGINE_JS, static.joinpath(SQL_ENGINE).read_text(encoding="utf-8"))
        tables = write_site_tables(db_path, tmp / urls.DATA_DIR)  # Parquet / CSV / JSON + the console's scripts
        written += sum(p.stat().st_size for p in (tmp / urls.DATA_DIR).rglob("*") if p.is_file())
        for name, rel in sorted(STATIC_FILES.items()):
            written += _write(tmp, rel, static.joinpath(name).read_text(encoding="utf-8"))
        written += _write(tmp, urls.SEARCH_JS, env.get_template("search_index.js").render(**pages.search_index(site)))
        render("index.html", urls.INDEX, pages.index_context(site))
        bar.advance()
        with reading(db_path) as con:
            render("sql.html", urls.SQL, pages.sql_context(site, con, db_arg, tables))
        bar.advance()
        render("provenance.html", urls.PROVENANCE, pages.provenance_context(site))
        bar.advance()
        for role in roles:
            render("role.html", urls.role_page(role), pages.role_context(site, role))
            bar.advance()
        for model in site.models:
            render("model.html", urls.model_page(model.slug), pages.model_context(site, model))
            bar.advance()
            for rel, ctx in pages.head_contexts(site, model):
                max_head = max(max_head, render("head.html", rel, ctx))
                bar.advance()
    return len(site.models), n_heads, n_pages, written, max_head


def render_site(db_path: str | Path, out_dir: str | Path = "site") -> SiteResult:
    """Render the static site for every model in `db_path` into `out_dir` (atomically replaced)."""
    started = time.perf_counter()
    db = Path(db_path)
    out = Path(out_dir)
    check_replaceable(out)
    if not db.exists():
        raise HeadwikiError(f"database {db} does not exist: run `headwiki detect --db {db}` first, or pass --db PATH")
    with replaced_dir(out) as tmp:
        n_models, n_heads, n_pages, n_bytes, max_head = _build(db, str(db_path), tmp)
    seconds = time.perf_counter() - started
    log(f"wrote {n_pages} pages for {n_models} model(s), {n_heads} heads, {n_bytes / 1e6:.1f} MB to {out} in {seconds:.1f} s")
    return SiteResult(out, n_models, n_heads, n_pages, n_bytes, max_head, seconds)
