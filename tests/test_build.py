"""`headwiki build`: all passes for two models into one DB and one site; resume; --force; export; serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
from db_rows import db_rows

from headwiki.build import build
from headwiki.detectors.run import detect_model
from headwiki.export import export_parquet
from headwiki.models import load_model

SMALL_DETECT = {"n_seqs": 8, "seq_len": 10, "n_boot": 100}
SMALL_ABLATE = {"max_items": 24, "n_boot": 100, "n_perm": 100}
SMALL_VALIDATE = {"n_seqs": 4, "seq_len": 6, "n_boot": 100, "n_perm": 100}


def _runs(db: Path) -> list[tuple[str, str]]:
    return db_rows(db, "SELECT model_id, pass_name FROM runs WHERE status = 'finished' ORDER BY started_at")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> tuple[Path, Path, object]:
    """toy + a random-init GPT-2 directory built in one go (small sample sizes)."""
    import json

    from headwiki.ablation.synthetic import synthetic_items

    root = tmp_path_factory.mktemp("build")
    db, out = root / "hw.duckdb", root / "site"
    items = root / "words.jsonl"  # items in the random model's vocabulary (English is all <unk> to it: refused)
    items.write_text("".join(json.dumps(it.as_dict()) + "\n" for it in synthetic_items(12, 250, seed=1)))
    report = build(["toy", str(random_gpt2_dir)], db, out, device="cpu", dataset={str(random_gpt2_dir): str(items)},
                   detect_options=SMALL_DETECT, ablate_options=SMALL_ABLATE, validate_options=SMALL_VALIDATE)
    return db, out, report


def test_build_two_models_one_db_one_site(built: tuple[Path, Path, object]) -> None:
    db, out, report = built
    assert report.model_ids == ["toy", "rand-gpt2"]
    assert all(p == {"detect": "ran", "ablate": "ran", "validate": "ran"} for p in report.passes.values())
    con = duckdb.connect(str(db), read_only=True)
    try:
        per_model = dict(con.execute("SELECT model_id, count(*) FROM heads GROUP BY model_id").fetchall())
        neg_cols = con.execute("SELECT count(*) FROM heads WHERE neg_acc_delta_zero IS NOT NULL AND induction IS NOT NULL").fetchall()[0][0]
    finally:
        con.close()
    toy = load_model("toy", device="cpu").info
    assert per_model == {"toy": toy.n_layers * toy.n_heads, "rand-gpt2": 8}
    assert neg_cols == sum(per_model.values()), "every head has detector and negation columns"
    assert (out / "index.html").exists()
    assert (out / "models" / "toy").is_dir() and (out / "models" / "rand-gpt2").is_dir()


def test_rebuild_is_a_no_op_and_force_reruns(built: tuple[Path, Path, object], random_gpt2_dir: Path) -> None:
    db, out, _ = built
    before = _runs(db)
    again = build(["toy"], db, out, device="cpu", detect_options=SMALL_DETECT, ablate_options=SMALL_ABLATE,
                   validate_options=SMALL_VALIDATE)
    assert again.passes["toy"] == {"detect": "skipped", "ablate": "skipped", "validate": "skipped"}
    assert _runs(db) == before, "a skipped pass writes no run"
    forced = build(["toy"], db, out, device="cpu", force=True, detect_options=SMALL_DETECT, ablate_options=SMALL_ABLATE,
                   validate_options=SMALL_VALIDATE)
    assert forced.passes["toy"] == {"detect": "ran", "ablate": "ran", "validate": "ran"}
    assert len(_runs(db)) == len(before) + 3


def test_interrupted_build_resumes_at_the_unfinished_pass(tmp_path: Path) -> None:
    """A build that died after detect (its run committed, ablate never written) redoes only ablate."""
    db = tmp_path / "hw.duckdb"
    detect_model(load_model("toy", device="cpu"), db, **SMALL_DETECT)
    report = build(["toy"], db, tmp_path / "site", device="cpu", detect_options=SMALL_DETECT, ablate_options=SMALL_ABLATE,
                   validate_options=SMALL_VALIDATE)
    assert report.passes["toy"] == {"detect": "skipped", "ablate": "ran", "validate": "ran"}
    assert [p for _, p in _runs(db)] == ["detect", "ablate", "validate"]


def test_changed_parameters_rerun_the_pass(built: tuple[Path, Path, object]) -> None:
    db, out, _ = built
    changed = build(["toy"], db, out, device="cpu", detect_options={**SMALL_DETECT, "seed": 1}, ablate_options=SMALL_ABLATE, site=False)
    assert changed.passes["toy"]["detect"] == "ran"


def test_export_parquet_every_table(built: tuple[Path, Path, object], tmp_path: Path) -> None:
    db, _, _ = built
    written = export_parquet(db, tmp_path / "parquet")
    names = {p.stem for p in written}
    assert {"heads", "models", "runs", "negation_items", "head_metrics_long"} <= names
    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM read_parquet('{(tmp_path / 'parquet' / 'heads.parquet').as_posix()}')").fetchall()[0][0]
    assert n > 0


def test_serve_binds_loopback_only(built: tuple[Path, Path, object]) -> None:
    _, out, _ = built
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "headwiki.cli", "serve", "--out", str(out), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = ""
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "headwiki" in body.lower()
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if _has("ss") else ""
        if listening:
            lines = [line for line in listening.splitlines() if f":{port} " in line]
            assert lines and all("127.0.0.1" in line for line in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _has(tool: str) -> bool:
    return any((Path(p) / tool).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def test_build_cli_bad_model_is_one_line_exit_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "headwiki.cli", "build", "--model", str(tmp_path / "missing"),
                             "--db", str(tmp_path / "x.duckdb"), "--out", str(tmp_path / "site")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr
    assert not (tmp_path / "x.duckdb").exists() and not (tmp_path / "site").exists()


def test_export_cli_lists_files(built: tuple[Path, Path, object], tmp_path: Path) -> None:
    db, _, _ = built
    result = subprocess.run([sys.executable, "-m", "headwiki.cli", "export", "--db", str(db), "--parquet", str(tmp_path / "pq")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert any(line.endswith("heads.parquet") for line in result.stdout.splitlines())


def test_a_model_at_chance_is_flagged_in_db_summary_and_model_page(built: tuple[Path, Path, object],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The random-init GPT-2 cannot do its items (no control preference: R undefined): every place a reader looks says so."""
    from headwiki.summary import print_build_summary

    db, out, report = built
    flagged = dict(db_rows(db, "SELECT model_id, count(*) FILTER (WHERE NOT informative) FROM negation_baselines GROUP BY model_id"))
    assert flagged["rand-gpt2"] >= 1 and flagged["toy"] == 0
    print_build_summary(report)
    printed = capsys.readouterr().out
    assert "WARNING rand-gpt2" in printed and "uninformative" in printed and "WARNING toy" not in printed
    assert "Uninformative:" in (out / "models" / "rand-gpt2" / "index.html").read_text(encoding="utf-8")
    assert "Uninformative:" not in (out / "models" / "toy" / "index.html").read_text(encoding="utf-8")


def test_heads_role_accepts_negation_roles(built: tuple[Path, Path, object]) -> None:
    """`heads --role` takes the negation roles the ablation pass assigns, as well as detector roles."""
    from headwiki.detectors.cli import list_heads

    db, _, _ = built
    held = dict(db_rows(db, "SELECT negation_role, list(label ORDER BY layer, head) FROM heads WHERE model_id = 'toy' AND negation_role IS NOT NULL GROUP BY 1"))
    assert held, "the toy model has heads with a significant negation role"
    for role, labels in held.items():
        frame = list_heads(str(db), "toy", role=role, columns="label,negation_role")
        assert sorted(frame["label"]) == sorted(labels) and set(frame["negation_role"]) == {role}


@pytest.mark.slow
def test_build_cli_max_items_reaches_the_ablation(tmp_path: Path) -> None:
    """issue 23: `build --max-items N` ablates on N items (the ablate run records it and N item rows per ablation);
    below 2 it is refused before any work."""
    db = tmp_path / "hw.duckdb"
    bad = subprocess.run([sys.executable, "-m", "headwiki.cli", "build", "--model", "toy", "--db", str(db),
                          "--out", str(tmp_path / "site"), "--max-items", "1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--max-items" in bad.stderr and not db.exists()
    ok = subprocess.run([sys.executable, "-m", "headwiki.cli", "build", "--model", "toy", "--db", str(db),
                         "--out", str(tmp_path / "site"), "--max-items", "6", "--device", "cpu"],
                        capture_output=True, text=True, timeout=1200)
    assert ok.returncode == 0, ok.stderr[-3000:]
    import json

    params = db_rows(db, "SELECT params FROM runs WHERE pass_name = 'ablate' AND status = 'finished'")
    assert len(params) == 1 and json.loads(params[0][0])["max_items"] == 6
    n_items = db_rows(db, "SELECT count(DISTINCT item_id) FROM negation_item_effects")[0][0]
    assert n_items == 6
