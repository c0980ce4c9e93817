"""The heads table in a real DuckDB file: many models, re-runs, all-or-nothing writes, controls reuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import torch

from headwiki.detectors.run import detect_model
from headwiki.models import load_model

torch.set_num_threads(1)

SMALL = dict(n_seqs=6, seq_len=8, n_boot=200)


@pytest.fixture(scope="module")
def two_model_db(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path, stories_dir: Path) -> Path:
    db = tmp_path_factory.mktemp("db") / "two.duckdb"
    detect_model(load_model(str(random_gpt2_dir), device="cpu"), db, **SMALL)
    detect_model(load_model(str(stories_dir), device="cpu"), db, **SMALL)
    return db


def _heads(db: Path, model_id: str, cols: str = "induction, previous_token") -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT layer, head, {cols} FROM heads WHERE model_id = ? ORDER BY layer, head", [model_id]).fetchall()
    finally:
        con.close()


def test_sql_over_two_models_in_one_file(two_model_db: Path) -> None:
    con = duckdb.connect(str(two_model_db), read_only=True)
    try:
        counts = dict(con.execute("SELECT model_id, count(*) FROM heads GROUP BY 1").fetchall())
        assert counts == {"rand-gpt2": 2 * 4, "stories260k": 5 * 8}
        joined = con.execute(
            "SELECT m.architecture, count(*), max(h.previous_token) FROM heads h JOIN models m USING (model_id) GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert [r[0] for r in joined] == ["GPT2LMHeadModel", "LlamaForCausalLM"]
        assert con.execute("SELECT count(DISTINCT model_id) FROM head_metrics_long WHERE metric = 'induction'").fetchall()[0][0] == 2
        labels = con.execute("SELECT label FROM heads WHERE model_id = 'stories260k' AND layer = 4 AND head = 7").fetchall()
        assert labels == [("L4H7",)]
        ex = con.execute("SELECT kind, len(tokens), len(pattern), len(pattern[1]) FROM head_examples WHERE model_id = 'stories260k' AND layer = 0 AND head = 0 ORDER BY kind").fetchall()
        assert ex == [("repeat", 17, 17, 17), ("text", 17, 17, 17)]
        metrics = dict(con.execute("SELECT metric, n FROM metrics WHERE model_id = 'stories260k'").fetchall())
        assert metrics["induction"] == 6 and metrics["roles"] == 6
        run = con.execute("SELECT params, data_hash, seed, n, status, transformer_lens_version FROM runs WHERE model_id = 'stories260k'").fetchall()
        assert len(run) == 1 and run[0][4] == "finished" and run[0][2] == 0 and run[0][3] == 6
        params = json.loads(run[0][0])
        assert {k: params["thresholds"][k] for k in ("induction", "previous_token", "duplicate_token", "local_window")} \
            == {"induction": 0.4, "previous_token": 0.4, "duplicate_token": 0.3, "local_window": 0.5}
        assert params["thresholds"]["delimiter"] == 3.0  # times its base rate
        assert params["thresholds"]["copying"] == params["thresholds"]["copy_suppression"] == 0.5  # weight roles
        assert con.execute("SELECT count(DISTINCT arch_key) FROM controls").fetchall()[0][0] == 2
        roles_type = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name='heads' AND column_name='roles'").fetchall()
        assert roles_type == [("VARCHAR[]",)]
    finally:
        con.close()


def test_rerun_replaces_one_model_and_leaves_the_other(two_model_db: Path, random_gpt2_dir: Path) -> None:
    before_gpt2 = _heads(two_model_db, "rand-gpt2")
    before_stories = _heads(two_model_db, "stories260k")
    result = detect_model(load_model(str(random_gpt2_dir), device="cpu"), two_model_db, n_seqs=6, seq_len=8, n_boot=200, seed=1)
    after_gpt2 = _heads(two_model_db, "rand-gpt2")
    assert after_gpt2 != before_gpt2 and len(after_gpt2) == len(before_gpt2)
    assert [r[2] for r in after_gpt2] == pytest.approx(result.frame["induction"].tolist())
    assert _heads(two_model_db, "stories260k") == before_stories
    con = duckdb.connect(str(two_model_db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs WHERE model_id = 'rand-gpt2'").fetchall()[0][0] == 2
        assert con.execute("SELECT count(*) FROM heads").fetchall()[0][0] == 8 + 40
    finally:
        con.close()


def test_second_run_reuses_the_stored_control(tmp_path: Path, random_gpt2_dir: Path) -> None:
    db = tmp_path / "c.duckdb"
    loaded = load_model(str(random_gpt2_dir), device="cpu")
    first = detect_model(loaded, db, **SMALL)
    second = detect_model(loaded, db, **SMALL)
    assert not first.control_reused and second.control_reused and first.control_key == second.control_key
    assert first.frame["induction_control"].tolist() == second.frame["induction_control"].tolist()


def test_failed_write_rolls_back_and_keeps_previous_values(tmp_path: Path, random_gpt2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs row is written last in the same transaction: failing there must undo the head updates."""
    import headwiki.detectors.run as run_mod

    db = tmp_path / "r.duckdb"
    loaded = load_model(str(random_gpt2_dir), device="cpu")
    detect_model(loaded, db, **SMALL)
    before = _heads(db, "rand-gpt2", "induction, previous_token, roles")

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full (simulated at the last write of the transaction)")

    monkeypatch.setattr(run_mod, "record_run", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        detect_model(loaded, db, n_seqs=6, seq_len=8, n_boot=200, seed=7)
    assert _heads(db, "rand-gpt2", "induction, previous_token, roles") == before
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchall()[0][0] == 1
    finally:
        con.close()


def test_pass_killed_midway_leaves_the_file_intact(tmp_path: Path, random_gpt2_dir: Path) -> None:
    db = tmp_path / "k.duckdb"
    detect_model(load_model(str(random_gpt2_dir), device="cpu"), db, **SMALL)
    before = _heads(db, "rand-gpt2")
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from headwiki.models import load_model\nfrom headwiki.detectors.run import detect_model\n"
        f"loaded = load_model({str(random_gpt2_dir)!r}, device='cpu')\n"
        "print('LOADED', file=sys.stderr, flush=True)\n"
        f"detect_model(loaded, {str(db)!r}, n_seqs=4000, seq_len=30, batch_size=4, seed=3)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    try:
        deadline = time.time() + 60
        seen = b""
        while b"LOADED" not in seen and time.time() < deadline and proc.poll() is None:
            seen += proc.stderr.read1(4096) if proc.stderr else b""
        assert b"LOADED" in seen, seen.decode(errors="replace")[-500:]
        time.sleep(3.0)  # well inside the ~40 s of computing 3 x 4000 sequences
        assert proc.poll() is None, "the pass finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _heads(db, "rand-gpt2") == before
