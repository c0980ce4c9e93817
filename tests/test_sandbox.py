"""The negation ablation sandbox: its numbers equal the pass's group ablations, presets follow the DB, the verdict.

Real toy model, real forwards, a real DuckDB file written by `detect` and `ablate` on a small item subset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from headwiki.ablation.sandbox import SIGNIFICANT, WITHIN_NOISE, Sandbox, flipped_items, verdict
from headwiki.ablation.items import resolve_dataset
from headwiki.negation_rule import ALPHA, MIN_ACC_DELTA
from headwiki.negation_spec import EFFECT_SPECS, REVERSAL

SMALL = {"max_items": 24, "n_boot": 200, "n_perm": 200, "seed": 0}


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def toy_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The toy model and a DB holding its detect run (roles and their scores) and an ablate run on 24 items."""
    from headwiki.ablation.run import ablate_model
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    toy = load_model("toy", device="cpu")
    db = tmp_path_factory.mktemp("sandbox") / "hw.duckdb"
    detect_model(toy, db, n_seqs=8, seq_len=10, n_boot=100)
    ablate_model(toy, db, dataset="toy", attribution=False, **SMALL)
    return toy, db


@pytest.fixture(scope="module")
def sandbox(toy_db: tuple[Any, Path]) -> Sandbox:
    toy, _ = toy_db
    return Sandbox(toy, "toy", seed=SMALL["seed"], max_items=SMALL["max_items"], n_boot=SMALL["n_boot"], n_perm=SMALL["n_perm"])


def _groups(db: Path) -> pd.DataFrame:
    from headwiki.db.store import reading

    with reading(db) as con:
        return con.execute("SELECT * FROM negation_groups WHERE model_id = 'toy'").df()


def _parse(label: str) -> tuple[int, int]:
    layer, head = label[1:].split("H")
    return int(layer), int(head)


@pytest.mark.slow
def test_sandbox_equals_the_pass_on_its_stored_groups(toy_db: tuple[Any, Path], sandbox: Sandbox) -> None:
    """Every group the pass ablated (role-ranked, whole layers, all heads; every kind): same Δ and CI; same baselines."""
    _, db = toy_db
    groups = _groups(db)
    kinds = set(groups["ablation"])
    assert kinds == {"zero", "mean", "resample"} and {"role", "layer", "all"} <= set(groups["group_kind"])
    from headwiki.db.store import reading

    with reading(db) as con:
        base = con.execute("SELECT condition, accuracy, accuracy_lo, accuracy_hi FROM negation_baselines WHERE model_id = 'toy'"
                           ).df().set_index("condition")
    clean = sandbox.evaluate([], "zero")
    for cond, acc in clean.accuracy.items():
        assert acc.n == SMALL["max_items"]
        assert (acc.value, acc.lo, acc.hi) == pytest.approx(tuple(base.loc[cond, ["accuracy", "accuracy_lo", "accuracy_hi"]]), abs=1e-12)
    with reading(db) as con:
        s_base = con.execute("SELECT mean_ld, mean_ld_lo, mean_ld_hi FROM negation_baselines WHERE model_id = 'toy' "
                             "AND condition = 'sensitivity'").fetchall()[0]
    assert clean.clean_sensitivity == pytest.approx(s_base, abs=1e-9)
    checked = 0
    for _, g in groups.iterrows():
        res = sandbox.evaluate([_parse(x) for x in g["heads"]], g["ablation"])
        for key in ("neg_acc", "aff_acc", "ctrl_acc", "sens"):
            col = EFFECT_SPECS[key].name
            d = res.deltas[key]
            assert (d.delta, d.lo, d.hi) == pytest.approx((g[col], g[f"{col}_lo"], g[f"{col}_hi"]), abs=1e-9), (g["group_name"], g["k"], key)
        r = res.deltas[REVERSAL.name]
        if pd.notna(g[REVERSAL.name]):
            assert (r.delta, r.lo, r.hi) == pytest.approx((g[REVERSAL.name], g[f"{REVERSAL.name}_lo"], g[f"{REVERSAL.name}_hi"]), abs=1e-9)
        # the ablated accuracy is the clean one plus the pass's Δ
        assert res.accuracy["negated"].value == pytest.approx(base.loc["negated", "accuracy"] + g[EFFECT_SPECS["neg_acc"].name], abs=1e-12)
        checked += 1
    assert checked >= 3 * 4  # 3 kinds x (at least two layers, all heads, a role group)
    # the whole-model ablation really breaks the toy model's negation (the comparison is not of zeros)
    everything = sandbox.evaluate([(L, h) for L in range(sandbox.n_layers) for h in range(sandbox.n_heads)], "zero")
    assert everything.flips and everything.accuracy["negated"].value != clean.accuracy["negated"].value
    # the noise verdict on real numbers: removing every head is a significant drop (p < alpha, CI below 0, > 5 points),
    # the clean model is within noise by construction
    d = everything.deltas["neg_acc"]
    assert everything.verdict.significant and d.p < ALPHA and d.hi < 0 and d.delta <= -MIN_ACC_DELTA, d
    assert clean.verdict.word == WITHIN_NOISE


@pytest.mark.slow
def test_flips_are_the_items_whose_answer_changed(sandbox: Sandbox) -> None:
    res = sandbox.evaluate([(0, h) for h in range(sandbox.n_heads)], "zero")
    assert res.flips
    lost = sum(1 for f in res.flips if f.condition == "negated" and not f.now_correct)
    gained = sum(1 for f in res.flips if f.condition == "negated" and f.now_correct)
    assert res.accuracy["negated"].k == res.clean_accuracy["negated"].k - lost + gained
    for f in res.flips:
        was_ok = f.clean_ld < 0 if f.condition == "negated" else f.clean_ld > 0
        assert was_ok != f.now_correct
    # order-free and memoized: the same set in another order is the same result object
    assert sandbox.evaluate(list(reversed(res.heads)), "zero") is res


def test_flipped_items_on_constructed_lds() -> None:
    ds = resolve_dataset("toy", max_items=3)
    clean = np.array([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [2.0, 0.5, 1.0]])
    ablated = np.array([[1.0, -1.0, 1.0], [-0.5, 0.3, 1.0], [2.0, -0.5, 1.0]])
    flips = flipped_items(ds, clean, ablated)
    assert [(f.item_id, f.condition, f.now_correct) for f in flips] == [
        (ds.items[1].id, "affirmative", False), (ds.items[1].id, "negated", False), (ds.items[2].id, "negated", True)]


def test_verdict_on_constructed_inputs() -> None:
    big = 2 * MIN_ACC_DELTA
    assert verdict(-big, -big - 0.02, -big + 0.02, ALPHA / 10).word == SIGNIFICANT
    assert verdict(big, big - 0.02, big + 0.02, ALPHA / 10).significant
    small = verdict(-MIN_ACC_DELTA / 2, -MIN_ACC_DELTA, -0.001, ALPHA / 10)  # detectable but under the noise floor
    assert small.word == WITHIN_NOISE and "noise floor" in small.reason
    assert verdict(-big, -big - 0.02, -big + 0.02, ALPHA).word == WITHIN_NOISE  # p must be below alpha
    assert "CI" in verdict(-big, -2 * big, 0.01, ALPHA / 10).reason  # a CI holding 0 is noise whatever p says
    assert verdict(float("nan"), float("nan"), float("nan"), float("nan")).word == WITHIN_NOISE
    assert verdict(0.003, 0.001, 0.005, 0.001, min_effect=0.0).significant  # no floor: S in nats


@pytest.mark.slow
def test_bad_heads_and_kinds_are_one_line_errors(sandbox: Sandbox) -> None:
    from headwiki.errors import HeadwikiError

    with pytest.raises(HeadwikiError, match="outside toy"):
        sandbox.evaluate([(sandbox.n_layers, 0)], "zero")
    with pytest.raises(HeadwikiError, match="unknown ablation"):
        sandbox.evaluate([(0, 0)], "noise")


@pytest.mark.slow
def test_presets_follow_the_db(toy_db: tuple[Any, Path]) -> None:
    from headwiki.sandbox import presets as P

    _, db = toy_db
    t = P.read_tables(db, "toy")
    groups = _groups(db)
    # top-k by a role's score is the pass's ranked role group of the same k
    roles = P.score_roles(t)
    assert roles and set(groups.loc[groups.group_kind == "role", "group_name"]) == set(roles)
    for _, g in groups[(groups.group_kind == "role") & (groups.ablation == "zero")].iterrows():
        assert P.preset_heads(t, P.BY_ROLE_SCORE, k=int(g["k"]), role=g["group_name"]) == [_parse(x) for x in g["heads"]]
    # top-k by single-head Δ: the k most negative (or positive) stored Δs
    col = P.delta_column("mean")
    d = t.heads.set_index(["layer", "head"])[col]
    drop = P.preset_heads(t, P.BY_DELTA_DROP, k=3, kind="mean")
    rise = P.preset_heads(t, P.BY_DELTA_RISE, k=3, kind="mean")
    assert len(drop) == 3 and max(d[x] for x in drop) <= min(d[x] for x in d.index if x not in drop)
    assert min(d[x] for x in rise) >= max(d[x] for x in d.index if x not in rise)
    assert P.preset_heads(t, P.WHOLE_LAYER, layer=1) == [(1, h) for h in range(t.n_heads)]
    assert P.preset_heads(t, P.NO_PRESET) == []
    # heads labelled with a role: exactly the heads whose role columns hold it
    for role in P.label_roles(t):
        got = P.preset_heads(t, P.BY_ROLE_LABEL, role=role)
        assert got and all(role in t.roles_of(L, h) for L, h in got)
        assert len(got) == sum(role in t.roles_of(int(L), int(h)) for L, h in zip(t.heads["layer"], t.heads["head"]))
    # the heatmap outlines the toggled heads and the confound panel names each toggled head
    fig = P.heatmap(t, "zero", [(0, 1), (1, 2)])
    assert len(fig.layout.shapes) == 2 and np.allclose(np.asarray(fig.data[0].z, dtype=float), 100 * P.delta_grid(t, "zero"), equal_nan=True)
    lines = P.confound_lines(t, [(1, 2), (0, 1)])
    assert [x.split(":")[0] for x in lines] == ["L0H1", "L1H2"]


@pytest.mark.slow
def test_db_checks_are_one_line_errors(toy_db: tuple[Any, Path], tmp_path: Path) -> None:
    from headwiki.errors import HeadwikiError
    from headwiki.sandbox.presets import check_db_holds_model

    _, db = toy_db
    with pytest.raises(HeadwikiError, match="not found"):
        check_db_holds_model(tmp_path / "absent.duckdb", "toy")
    with pytest.raises(HeadwikiError, match="is not in"):
        check_db_holds_model(db, "gpt2")


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from headwiki.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code), capsys.readouterr().err


def test_cli_rejects_bad_inputs_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_cli(["sandbox", "--db", str(tmp_path / "absent.duckdb"), "--port", "80"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--port 80 is out of range" in err
    code, err = _run_cli(["sandbox", "--db", str(tmp_path / "absent.duckdb"), "--port", "70000"], capsys)
    assert code == 2 and "out of range" in err
    code, err = _run_cli(["sandbox", "--db", str(tmp_path / "absent.duckdb")], capsys)
    assert code == 2 and err.count("\n") == 1 and "absent.duckdb not found" in err
    code, err = _run_cli(["sandbox", "--db", str(tmp_path / "absent.duckdb"), "--dataset", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2 and "unknown dataset" in err
    assert not (tmp_path / "absent.duckdb").exists()  # nothing created


@pytest.mark.slow
def test_cli_rejects_a_model_the_db_does_not_hold(toy_db: tuple[Any, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, db = toy_db
    code, err = _run_cli(["sandbox", "--db", str(db), "--model", "other=toy"], capsys)
    assert code == 2 and "'other' is not in" in err and "toy" in err


def test_command_imports_no_torch_and_binds_localhost() -> None:
    import subprocess
    import sys

    code = ("import sys; from headwiki.cli import cli; cli.get_command(None, 'sandbox'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    from headwiki.sandbox.launch import APP, AppArgs, app_args, marimo_command

    args = AppArgs(model="toy", db="x.duckdb", dataset="toy", max_items=24, seed=3)
    cmd = marimo_command(args, 2799, headless=True)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "2799" and str(APP) in cmd
    # the app reads back what the command passes (marimo hands the args after `--` to mo.cli_args())
    after = cmd[cmd.index("--") + 1:]
    parsed = {after[i].lstrip("-"): after[i + 1] for i in range(0, len(after), 2)}
    assert app_args(parsed) == args
    with_heads = AppArgs(model="toy", db="x.duckdb", dataset="toy", heads="L0H4,L1H2")
    after = marimo_command(with_heads, 2799)[-len(with_heads.as_cli()):]
    assert app_args({after[i].lstrip("-"): after[i + 1] for i in range(0, len(after), 2)}) == with_heads
    assert APP.is_file() and "marimo.App(" in APP.read_text()
    # the app's process: one-thread BLAS and sleeping OpenMP waiters unless the user set otherwise
    from headwiki.sandbox.launch import app_env

    assert app_env({"PATH": "/bin"}) == {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}
    assert app_env({"OPENBLAS_NUM_THREADS": "4"})["OPENBLAS_NUM_THREADS"] == "4"


def test_heads_option_is_checked_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from headwiki.sandbox.launch import parse_heads

    assert parse_heads("L1H2, L0H4,L1H2") == ((0, 4), (1, 2)) and parse_heads("") == ()
    code, err = _run_cli(["sandbox", "--db", str(tmp_path / "absent.duckdb"), "--heads", "L0H4,head7"], capsys)
    assert code == 2 and err.count("\n") == 1 and "'head7' is not a head label" in err


@pytest.mark.slow
def test_heads_outside_the_model_are_rejected(toy_db: tuple[Any, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, db = toy_db
    code, err = _run_cli(["sandbox", "--db", str(db), "--heads", "L0H1,L2H0"], capsys)
    assert code == 2 and "--heads L2H0 is outside toy (2 layers x 8 heads)" in err


@pytest.mark.slow
def test_render_shows_the_result_numbers(sandbox: Sandbox) -> None:
    import re

    from headwiki.sandbox.render import flips_frame, result_html

    res = sandbox.evaluate([(0, h) for h in range(sandbox.n_heads)], "mean")
    page = result_html(res)
    for cond, acc in res.accuracy.items():
        m = re.search(rf'id="sandbox-acc-{cond}" data-k="(\d+)" data-n="(\d+)">([\d.]+)%', page)
        assert m and (int(m[1]), int(m[2])) == (acc.k, acc.n) and float(m[3]) == round(100 * acc.value, 1)
    assert f'data-heads="{",".join(res.labels)}"' in page and res.verdict.word in page
    assert len(flips_frame(res)) == len(res.flips) > 0


def test_heatmap_selection_names_and_toggles_heads() -> None:
    """A click (one cell), a box (cells + markers, duplicates) and a lasso (markers) name heads; off-grid points drop."""
    from headwiki.sandbox.presets import selected_heads, toggle

    click = [{"x": 3, "y": 1, "z": -12.5, "curveNumber": 0, "pointNumber": [1, 3]}]
    assert selected_heads(click, 2, 8) == {(1, 3)}
    box = [{"x": 0, "y": 1, "z": 1.0}, {"x": 1, "y": 1, "z": 2.0}, {"x": 1.0, "y": 1.0, "curveNumber": 1, "pointIndex": 9}]
    assert selected_heads(box, 2, 8) == {(1, 0), (1, 1)}
    assert selected_heads([{"x": 8, "y": 0}, {"x": 0, "y": 2}, {"x": -1, "y": 0}, {"z": 3}, {}], 2, 8) == frozenset()
    assert selected_heads([], 2, 8) == frozenset()
    on = frozenset({(0, 1), (1, 3)})
    assert toggle(on, {(1, 3)}) == {(0, 1)}  # a click on a toggled head turns it off
    assert toggle(on, {(1, 3), (1, 4)}) == {(0, 1), (1, 4)}  # a selection toggles each of its heads
    assert toggle(toggle(on, {(0, 5)}), {(0, 5)}) == on


@pytest.mark.slow
def test_heatmap_cells_and_progress_steps(toy_db: tuple[Any, Path]) -> None:
    """The heatmap carries one selectable marker per cell; evaluate calls on_step once per batched forward it runs."""
    from headwiki.sandbox import presets as P

    toy, db = toy_db
    t = P.read_tables(db, "toy")
    sandbox = Sandbox(toy, "toy", max_items=8, n_boot=50, n_perm=50)  # its own memo: nothing evaluated yet
    cells = [tr for tr in P.heatmap(t, "zero", []).data if tr.name == P.CELLS_TRACE]
    assert len(cells) == 1 and P.selected_heads([{"x": x, "y": y} for x, y in zip(cells[0].x, cells[0].y)], t.n_layers, t.n_heads) == {
        (L, h) for L in range(t.n_layers) for h in range(t.n_heads)}
    for kind in ("zero", "resample"):
        heads = [(1, 6), (1, 7)] if kind == "zero" else [(1, 5)]
        n = sandbox.n_steps(heads, kind)
        assert n == len(sandbox.runner.chunks)  # 1 replica (zero) or 3 donor draws (resample) fit one forward per chunk
        calls: list[int] = []
        res = sandbox.evaluate(heads, kind, on_step=lambda: calls.append(1))
        assert len(calls) == n and sandbox.n_steps(heads, kind) == 0  # memoized now: no forward
        assert res.heads == tuple(sorted(heads))
    clean = sandbox.evaluate([], "zero")
    assert sandbox.n_steps([], "zero") == 0 and clean.verdict.word == WITHIN_NOISE and "no heads" in clean.verdict.reason
