"""The SQL page's in-browser engine: its size, and how long the console takes to start and answer, from file://.

    python benchmarks/bench_sql_engine.py [--db PATH] [--loads 5] [--json benchmarks/results/sql-engine.json]

Renders a site (default: the synthetic 24-layer x 16-head database of bench_site.py, 384 heads with per-item negation
effects; `--db PATH` an existing database), then in headless Chromium (playwright, as the browser tests) opens the
SQL page from file:// `--loads` times in fresh tabs and takes, from the page's own clock (browser start-up
excluded): DOMContentLoaded; "engine ready" = the console's script tag for sql.js loaded and SQLite instantiated
(sql-console.js measures it); the first example run cold (its tables' scripts loaded and inserted) and run again
warm; and every example on the page run once (all their tables loaded). Prints medians and the file sizes (raw and
gzip -9) of the engine and of the console's data; writes every sample to --json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from synthetic_db import write_synthetic_db
from headwiki.wiki import urls
from headwiki.wiki.render import render_site

READY = "document.querySelector('#sql-console .sql-status').dataset.state === 'ready'"
TIMES = """async () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const sqls = [...document.querySelectorAll('code.sql-text')].map(c => c.textContent);
  const first = await headwikiSql.run(sqls[0]);
  const firstCold = first.ms;
  const warm = (await headwikiSql.run(sqls[0])).ms;
  const t0 = performance.now();
  let rows = 0;
  for (const s of sqls) rows += (await headwikiSql.run(s)).rows.length;
  return {dcl: nav.domContentLoadedEventEnd, engine_ready: headwikiSql.state.readyMs, first_example_cold: firstCold,
          first_example_warm: warm, all_examples: performance.now() - t0, n_examples: sqls.length, rows: rows};
}"""


def sizes(path: Path) -> dict[str, float]:
    data = path.read_bytes() if path.is_file() else b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())
    return {"mb": len(data) / 1e6, "gzip_mb": len(gzip.compress(data, 9)) / 1e6}


def browser_samples(sql_page: Path, loads: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from browser_setup import chromium_or_error

    exe, problem = chromium_or_error(install=False)
    if exe is None:
        raise SystemExit(problem)
    samples = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--disable-gpu", "--disable-background-networking"])
        for _ in range(loads):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(sql_page.resolve().as_uri(), wait_until="load")
            page.wait_for_function(READY, timeout=60_000, polling=10)
            samples.append(page.evaluate(TIMES))
            page.close()
        browser.close()
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="an existing database instead of the synthetic 24x16 one")
    parser.add_argument("--loads", type=int, default=5, help="fresh page loads (medians are printed)")
    parser.add_argument("--json", default=None, help="write sizes and every sample here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "timing-24x16.duckdb"
        if not args.db:
            write_synthetic_db(db, "synthetic-timing-24x16", n_layers=24, n_heads=16, negation=True, n_items=200, seq=32, seed=0)
        out = Path(tmp) / "site"
        t0 = time.perf_counter()
        render_site(db, out)
        render_s = time.perf_counter() - t0
        data = out / urls.DATA_DIR
        report = {
            "db": str(args.db or "synthetic 24x16 (benchmarks/synthetic_db.py, 200 items)"),
            "render_s": render_s,
            "engine": sizes(out / urls.SQL_ENGINE_JS),
            "console_data": sizes(data / "console"),
            "heads_console_script": sizes(data / "console" / "heads.js"),
            "downloads": {fmt: sizes_of for fmt, sizes_of in
                          ((f, {"mb": sum(p.stat().st_size for p in data.glob(f"*.{f}")) / 1e6}) for f in ("parquet", "csv", "json"))},
            "samples": browser_samples(out / urls.SQL, args.loads),
        }
    med = {k: statistics.median(s[k] for s in report["samples"]) for k in report["samples"][0]}
    report["median"] = med
    e, c = report["engine"], report["console_data"]
    print(f"engine sql-wasm-inline.js: {e['mb']:.2f} MB ({e['gzip_mb']:.2f} MB gzip -9); console data {c['mb']:.2f} MB "
          f"({c['gzip_mb']:.2f} MB gzipped), heads.js {report['heads_console_script']['mb']:.2f} MB; downloads "
          + ", ".join(f"{k} {v['mb']:.1f} MB" for k, v in report["downloads"].items()) + f"; render {render_s:.1f} s")
    print(f"SQL page from file:// (median of {args.loads} fresh tabs, Chromium 1280x900): DOMContentLoaded {med['dcl']:.0f} ms, "
          f"engine ready {med['engine_ready']:.0f} ms, first example {med['first_example_cold']:.0f} ms cold / "
          f"{med['first_example_warm']:.1f} ms warm, all {med['n_examples']:.0f} examples {med['all_examples']:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
