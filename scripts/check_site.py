"""Load every page of a built site in headless Chromium and report console errors, failed or external requests and
broken links (what tests/test_wiki_browser.py checks on the test sites, for any site you built).

usage: python scripts/check_site.py SITE [--shots DIR]   (exit 1 when anything is wrong)
--shots saves full-page screenshots of the index and the cross-model pages (seeds, compare, mosaic, timelines, diffs).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

TESTS = Path(__file__).resolve().parents[1] / "tests"
CROSS_PAGES = ("index.html", "universality.html", "compare.html", "mosaic.html")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("site")
    ap.add_argument("--shots", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(TESTS))
    from browser_setup import chromium_or_error
    from conftest import LAUNCH_ARGS
    from playwright.sync_api import sync_playwright
    from test_wiki_browser import Watch

    site = Path(args.site)
    shots = Path(args.shots) if args.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(site.rglob("*.html"))
    executable, problem = chromium_or_error()
    if executable is None:
        print(problem)
        return 2
    started = time.perf_counter()
    broken: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        watch = Watch(page)
        for path in pages:
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            if page.evaluate("!!document.querySelector('script[src*=\"plotly\"]')"):
                page.wait_for_function("!!window.Plotly", timeout=30_000)
            hrefs = page.eval_on_selector_all(
                "a[href]", "els => els.map(e => typeof e.href === 'string' ? e.href : new URL(e.href.baseVal, document.baseURI).href)")
            for href in hrefs:
                u = urlparse(href)
                if u.scheme != "file" or not Path(unquote(u.path)).exists():
                    broken.append(f"{path.relative_to(site)} -> {href}")
            rel = str(path.relative_to(site))
            if shots and (rel in CROSS_PAGES or rel.startswith(("series/", "diffs/"))):
                page.screenshot(path=str(shots / (rel.replace("/", "_") + ".png")), full_page=True)
        browser.close()
    print(f"{len(pages)} pages in {time.perf_counter() - started:.0f} s: {len(watch.problems)} page problems, "
          f"{len(broken)} broken links")
    for line in (watch.problems + broken)[:20]:
        print("  " + line)
    return 1 if watch.problems or broken else 0


if __name__ == "__main__":
    sys.exit(main())
