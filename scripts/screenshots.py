"""Render the README's screenshots (docs/img/*.png) from the toy model's site in headless Chromium (playwright).

    python scripts/screenshots.py [--site site] [--out docs/img]

--site: a site rendered by `headwiki build` (default `site`, what the README's first command writes); when it has
no index.html the toy wiki is built first into a temporary folder (`headwiki build`, ~30 s on 2 cores). Each shot
is the first screen of a page at 1200 x 820 CSS pixels (not the whole page) so the PNGs stay small; the script
fails if one is 300 KB or more, or if a page logs an error.

* head.png: the toy model's L0H4 (a duplicate-token head whose ablation also moves negated accuracy)
* model.png: the toy model's page scrolled to its group effects and first heatmaps
* role.png: the induction role page
* sql.png: the SQL page after running the cross-role example "How many heads hold each declared role" in the console
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_BYTES = 300_000
VIEWPORT = {"width": 1200, "height": 820}
LAUNCH_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
SQL_EXAMPLE = "How many heads hold each declared role"
FIRST_SCREEN_DRAWN = """() => [...document.querySelectorAll('figure.heat')]
  .filter(f => { const r = f.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; })
  .every(f => f.querySelector('svg.main-svg'))"""


def build_toy_site(root: Path) -> Path:
    """`headwiki build` (toy model) into root/headwiki.duckdb and root/site."""
    site = root / "site"
    subprocess.run([sys.executable, "-m", "headwiki.cli", "build", "--db", str(root / "headwiki.duckdb"), "--out", str(site)],
                   check=True)
    return site


def shoot(site: Path, out: Path) -> dict[str, int]:
    """Take the four screenshots; -> file name -> bytes."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO / "tests"))
    from browser_setup import chromium_or_error

    exe, problem = chromium_or_error(install=False)
    if exe is None:
        raise SystemExit(problem)
    model = "toy"
    pages = {
        "head.png": f"models/{model}/heads/L0H4.html",
        "model.png": f"models/{model}/index.html",
        "role.png": "roles/induction.html",
        "sql.png": "sql.html",
    }
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=LAUNCH_ARGS)
        for name, rel in pages.items():
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            errors: list[str] = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            path = site / rel
            if not path.exists():
                raise SystemExit(f"{path} does not exist: is {site} the toy model's site?")
            page.goto(path.resolve().as_uri(), wait_until="load")
            if name == "model.png":
                page.wait_for_selector(".js-plotly-plot svg.main-svg", timeout=60_000)
                # past the heatmap index: the group-effects card and the first row of heatmaps
                page.evaluate("window.scrollTo(0, document.querySelector('figure.heat').getBoundingClientRect().top"
                              " + window.scrollY - 420)")
                page.wait_for_function(FIRST_SCREEN_DRAWN, timeout=60_000)
                page.wait_for_timeout(300)
            if name == "sql.png":
                page.wait_for_function("document.querySelector('#sql-console .sql-status').dataset.state === 'ready'",
                                       timeout=60_000)
                card = page.locator("section.sql", has_text=SQL_EXAMPLE)
                card.locator("button.sql-example").click()
                page.wait_for_function("document.querySelector('#sql-console .sql-status').dataset.state === 'ok'")
                page.locator("#sql-console").scroll_into_view_if_needed()
                page.evaluate("document.getElementById('sql-console').scrollIntoView({block: 'start'})")
            target = out / name
            page.screenshot(path=str(target))
            page.close()
            if errors:
                raise SystemExit(f"{rel}: {errors[:3]}")
            written[name] = target.stat().st_size
        browser.close()
    too_big = {n: b for n, b in written.items() if b >= MAX_BYTES}
    if too_big:
        raise SystemExit(f"screenshots over {MAX_BYTES // 1000} KB: {too_big}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="site", help="the toy model's site (built when it has no index.html)")
    parser.add_argument("--out", default=str(REPO / "docs" / "img"), help="where the PNGs go")
    args = parser.parse_args(argv)
    site = Path(args.site)
    with tempfile.TemporaryDirectory() as tmp:
        if not (site / "index.html").exists():
            site = build_toy_site(Path(tmp))
        for name, size in shoot(site, Path(args.out)).items():
            print(f"{Path(args.out) / name}: {size / 1000:.0f} KB")


if __name__ == "__main__":
    main()
