"""The sandbox app in a real browser: `headwiki sandbox` serves the marimo app, Chromium toggles a head, and the page
shows the negated accuracy that `headwiki ablate` computed for that head (its stored baseline + single-head Δ)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwiki.negation_spec import EFFECT_SPECS

ITEMS = 48
LAUNCH_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ablated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DB written by the real CLI: `headwiki ablate --model toy --max-items 48` (single heads and groups)."""
    db = tmp_path_factory.mktemp("sandbox_browser") / "hw.duckdb"
    subprocess.run([sys.executable, "-m", "headwiki.cli", "ablate", "--model", "toy", "--device", "cpu", "--db", str(db),
                    "--max-items", str(ITEMS), "--ablation", "zero", "--no-attribution", "--n-boot", "200"],
                   check=True, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return db


@pytest.fixture(scope="module")
def app_url(ablated_db: Path) -> Iterator[str]:
    """`headwiki sandbox ... --heads <the second-ranked head>` (the command a head page shows), served on 127.0.0.1."""
    port = _free_port()
    start = _cli_numbers(ablated_db)[1][0]
    proc = subprocess.Popen([sys.executable, "-m", "headwiki.cli", "sandbox", "--model", "toy", "--db", str(ablated_db),
                             "--max-items", str(ITEMS), "--port", str(port), "--headless", "--heads", f"L{start[0]}H{start[1]}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    pytest.fail(f"headwiki sandbox did not start (exit {proc.poll()}): {out[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group this fixture started (marimo and its kernel)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _cli_numbers(db: Path) -> list[tuple[tuple[int, int], int, int]]:
    """The two heads with the largest |single-head zero-ablation Δ negated accuracy| and, for each, the negated correct
    count the CLI's run implies (stored baseline + Δ, times n) and n."""
    from headwiki.db.store import reading

    col = EFFECT_SPECS["neg_acc"].expand("zero").name
    with reading(db) as con:
        top = con.execute(f'SELECT layer, head, "{col}" FROM heads WHERE model_id = \'toy\' '
                          f'ORDER BY abs("{col}") DESC, layer, head LIMIT 2').fetchall()
        acc, n = con.execute("SELECT accuracy, n_items FROM negation_baselines WHERE model_id = 'toy' AND condition = 'negated'"
                             ).fetchall()[0]
    return [((int(L), int(h)), round((acc + d) * n), int(n)) for L, h, d in top]


@pytest.mark.slow
def test_toggling_a_head_shows_the_accuracy_the_cli_computed(app_url: str, ablated_db: Path) -> None:
    from playwright.sync_api import sync_playwright

    from browser_setup import chromium_or_error

    executable, problem = chromium_or_error()
    assert executable, problem
    (L, h), k_cli, n = _cli_numbers(ablated_db)[0]
    (L0, h0), k_start, _ = _cli_numbers(ablated_db)[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(app_url)
            result = page.locator("#sandbox-result")
            result.wait_for(timeout=120_000)
            # --heads opened the app on the second-ranked head, with the CLI's number for it
            assert result.get_attribute("data-heads") == f"L{L0}H{h0}"
            assert int(page.locator("#sandbox-acc-negated").get_attribute("data-k")) == k_start
            page.get_by_role("checkbox", name=f"L{L0}H{h0}").click()
            page.locator('#sandbox-result[data-heads=""]').wait_for(timeout=60_000)
            clean_k = int(page.locator("#sandbox-acc-negated").get_attribute("data-k"))
            page.get_by_role("checkbox", name=f"L{L}H{h}").click()
            page.locator(f'#sandbox-result[data-heads="L{L}H{h}"]').wait_for(timeout=60_000)
            cell = page.locator("#sandbox-acc-negated")
            k_app, n_app = int(cell.get_attribute("data-k")), int(cell.get_attribute("data-n"))
            shown = cell.inner_text()
            verdict = page.locator("#sandbox-verdict").inner_text()
            page.screenshot(path=str(ablated_db.parent / "sandbox.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert (k_app, n_app) == (k_cli, n)
    assert shown.startswith(f"{100 * k_cli / n:.1f}%")
    assert k_cli != clean_k  # the head chosen moves negated accuracy: the page changed because of the toggle
    assert verdict.startswith("negated accuracy: ")
