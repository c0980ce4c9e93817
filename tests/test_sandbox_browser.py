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
from headwiki.sandbox.presets import WHOLE_LAYER

ITEMS = 48


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


def _layer_group(db: Path, layer: int | None) -> tuple[list[str], int]:
    """The CLI's zero-ablation group of a whole layer (None: of every head): its head labels and the negated correct
    count it implies."""
    from headwiki.db.store import reading

    col = EFFECT_SPECS["neg_acc"].name
    with reading(db) as con:
        rows = con.execute(f'SELECT heads, "{col}" FROM negation_groups WHERE model_id = \'toy\' AND ablation = \'zero\' '
                           "AND group_kind = ?", ["all" if layer is None else "layer"]).fetchall()
        acc, n = con.execute("SELECT accuracy, n_items FROM negation_baselines WHERE model_id = 'toy' AND condition = 'negated'"
                             ).fetchall()[0]
    for heads, d in rows:
        if layer is None or all(x.startswith(f"L{layer}H") for x in heads):
            return sorted(heads, key=lambda x: tuple(int(v) for v in x[1:].split("H"))), round((acc + d) * n)
    raise AssertionError(f"the CLI stored no layer-{layer} group")


def _cell_xy(page, layer: float, head: float) -> tuple[float, float]:
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=60_000)
    box = plot.evaluate("""(gd, [L, h]) => {
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.l2p(h), r.top + ya._offset + ya.l2p(L)];
    }""", [layer, head])
    return float(box[0]), float(box[1])


def _negated(page) -> tuple[int, int]:
    cell = page.locator("#sandbox-acc-negated")
    return int(cell.get_attribute("data-k")), int(cell.get_attribute("data-n"))


@pytest.mark.slow
def test_toggling_a_head_shows_the_accuracy_the_cli_computed(app_url: str, ablated_db: Path, browser) -> None:  # noqa: ANN001
    """Checkbox, heatmap click and heatmap box selection each toggle heads; each time the page shows what the CLI computed."""
    (L, h), k_cli, n = _cli_numbers(ablated_db)[0]
    (L0, h0), k_start, _ = _cli_numbers(ablated_db)[1]
    last = 1  # the toy model's last layer: a box over its row toggles the whole layer
    layer_heads, k_layer = _layer_group(ablated_db, last)
    all_heads, k_all = _layer_group(ablated_db, None)
    layer0_heads, k_layer0 = _layer_group(ablated_db, 0)
    page = browser.new_page(viewport={"width": 1600, "height": 1400})
    try:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(app_url)
        result = page.locator("#sandbox-result")
        result.wait_for(timeout=120_000)
        # --heads opened the app on the second-ranked head, with the CLI's number for it
        assert result.get_attribute("data-heads") == f"L{L0}H{h0}"
        assert _negated(page)[0] == k_start
        # 1. a checkbox toggles it off: the clean model
        page.get_by_role("checkbox", name=f"L{L0}H{h0}").click()
        page.locator('#sandbox-result[data-heads=""]').wait_for(timeout=60_000)
        clean_k = _negated(page)[0]
        # 2. a click on the heatmap cell of the top head toggles it on: the CLI's single-head number
        page.mouse.click(*_cell_xy(page, L, h))
        page.locator(f'#sandbox-result[data-heads="L{L}H{h}"]').wait_for(timeout=60_000)
        k_click, n_click = _negated(page)
        shown = page.locator("#sandbox-acc-negated").inner_text()
        verdict = page.locator("#sandbox-verdict").inner_text()
        page.get_by_role("checkbox", name=f"L{L}H{h}", checked=True).wait_for(timeout=30_000)  # the grid follows
        page.screenshot(path=str(ablated_db.parent / "sandbox.png"), full_page=True)
        # 3. the same cell again toggles it off
        page.mouse.click(*_cell_xy(page, L, h))
        page.locator('#sandbox-result[data-heads=""]').wait_for(timeout=60_000)
        # 4. a box selection over the last layer's row toggles all its heads: the CLI's whole-layer group
        x0, y0 = _cell_xy(page, last - 0.3, -0.45)
        x1, y1 = _cell_xy(page, last + 0.3, 7.45)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=12)
        page.mouse.up()
        page.locator(f'#sandbox-result[data-heads="{",".join(layer_heads)}"]').wait_for(timeout=60_000)
        k_box = _negated(page)[0]
        # 5. a lasso around layer 0's row toggles its heads on too: every head, the CLI's all-heads group
        page.locator('.modebar-btn[data-title="Lasso Select"]').first.click()
        corners = [(-0.4, -0.45), (-0.4, 7.45), (0.4, 7.45), (0.4, -0.45), (-0.4, -0.45)]
        page.mouse.move(*_cell_xy(page, *corners[0]))
        page.mouse.down()
        for c in corners[1:]:
            page.mouse.move(*_cell_xy(page, *c), steps=8)
        page.mouse.up()
        page.locator(f'#sandbox-result[data-heads="{",".join(all_heads)}"]').wait_for(timeout=60_000)
        k_lasso = _negated(page)[0]
        # 6. a preset replaces the toggled set: "a whole layer" (layer 0) is the CLI's layer-0 group
        page.get_by_role("combobox", name="preset", exact=True).select_option(label=WHOLE_LAYER)
        page.locator(f'#sandbox-result[data-heads="{",".join(layer0_heads)}"]').wait_for(timeout=60_000)
        k_preset = _negated(page)[0]
        assert not errors, errors
    finally:
        page.close()
    assert (k_click, n_click) == (k_cli, n)
    assert shown.startswith(f"{100 * k_cli / n:.1f}%")
    assert k_cli != clean_k  # the head chosen moves negated accuracy: the page changed because of the toggle
    assert verdict.startswith("negated accuracy: ")
    assert k_box == k_layer
    assert k_lasso == k_all
    assert k_preset == k_layer0
