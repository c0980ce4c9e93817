"""Render-time benchmark: a 24-layer x 16-head (384-head) model.

TIMING RUN ONLY. By default the database is SYNTHETIC (benchmarks/synthetic_db.py: random values shaped like the
passes' output, including 2 ablations x N negation items of per-item effects), so it measures the renderer,
not any model. `--db PATH` times an existing database instead.

    python benchmarks/bench_site.py [--items 200] [--db PATH] [--out DIR] [--browser [--loads 5]]

`--browser` also loads each model page from file:// in headless Chromium (playwright, as the browser tests) at
1280x900, `--loads` times each, and prints the median of: first contentful paint, DOMContentLoaded, the load event,
and "interactive" = every heatmap in the first screen drawn (a Plotly SVG inside it) -- the page's own
performance timeline, so the numbers exclude browser start-up. Loads after the first hit a warm file cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from synthetic_db import write_synthetic_db
from headwiki.wiki.render import render_site

FIRST_SCREEN_DRAWN = """() => {
  const figs = [...document.querySelectorAll('figure.heat')].filter(f => f.getBoundingClientRect().top < innerHeight);
  return figs.every(f => f.querySelector('svg.main-svg'));
}"""
TIMES = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {fcp: fcp ? fcp.startTime : null, dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          now: performance.now()};
}"""


def browser_times(pages: list[Path], loads: int) -> dict[str, dict[str, float]]:
    """Median page-timeline milliseconds per page over `loads` fresh tabs (see the module docstring)."""
    import statistics

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from browser_setup import chromium_or_error

    exe, problem = chromium_or_error(install=False)
    if exe is None:
        raise SystemExit(problem)
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--disable-gpu"])
        for page_path in pages:
            runs = []
            for _ in range(loads):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(page_path.resolve().as_uri(), wait_until="load")
                page.wait_for_function(FIRST_SCREEN_DRAWN, timeout=60_000, polling=10)
                t = page.evaluate(TIMES)
                t["interactive"] = max(t.pop("now"), t["load"])
                runs.append(t)
                page.close()
            out[str(page_path)] = {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in runs[0]}
        browser.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="time this database instead of a synthetic 24x16 one")
    parser.add_argument("--items", type=int, default=200, help="synthetic negation items per ablation")
    parser.add_argument("--out", default=None, help="site directory (default: a temp dir)")
    parser.add_argument("--browser", action="store_true", help="also time model pages from file:// in Chromium")
    parser.add_argument("--loads", type=int, default=5, help="page loads per model page for --browser (median)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "timing-24x16.duckdb"
        if not args.db:
            t0 = time.perf_counter()
            write_synthetic_db(db, "synthetic-timing-24x16", n_layers=24, n_heads=16, negation=True,
                               n_items=args.items, seq=32, seed=0)
            print(f"synthetic 24x16 database written in {time.perf_counter() - t0:.1f} s (not timed below)")
        out = Path(args.out) if args.out else Path(tmp) / "site"
        t0 = time.perf_counter()
        result = render_site(db, out)
        seconds = time.perf_counter() - t0
        head_pages = list(out.rglob("heads/*.html"))
        sizes = sorted(p.stat().st_size for p in head_pages)
        print(f"render: {seconds:.1f} s for {result.n_pages} pages ({result.n_heads} heads, {result.n_models} model(s)); "
              f"{result.total_bytes / 1e6:.1f} MB total")
        print(f"head pages: {len(sizes)}, median {sizes[len(sizes) // 2] / 1e3:.1f} KB, max {sizes[-1] / 1e3:.1f} KB")
        if args.browser:
            for page, t in browser_times(sorted(out.glob("models/*/index.html")), args.loads).items():
                print(f"model page {Path(page).parent.name}: first paint {t['fcp']:.0f} ms, DOMContentLoaded {t['dcl']:.0f} ms, "
                      f"load {t['load']:.0f} ms, first-screen heatmaps drawn {t['interactive']:.0f} ms "
                      f"(median of {args.loads} loads, file://, Chromium 1280x900)")


if __name__ == "__main__":
    main()
