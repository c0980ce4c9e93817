"""`headwiki merge`: shards built one model each merge into the same database as a serial build, atomically,
with the conflict rules said out loud."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

VOLATILE = {"run_id", "started_at", "finished_at", "added_at"}  # ids and clocks differ between any two runs
TABLES = ("models", "runs", "heads", "metrics", "roles", "controls", "head_examples")


def hw(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def _detect(model: Path, name: str, db: Path) -> None:
    proc = hw("detect", "--model", f"{name}={model}", "--db", str(db), "--n-seqs", "6", "--seq-len", "6", "--csv")
    assert proc.returncode == 0, proc.stderr[-2000:]


def _table(db: Path, table: str) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        frame = con.execute(f"SELECT * FROM {table}").df()
    finally:
        con.close()
    frame = frame[sorted(c for c in frame.columns if c not in VOLATILE)]
    if "provenance" in frame:  # wall-clock timings are measurements of the run, not results
        frame["provenance"] = [json.dumps({k: v for k, v in json.loads(p).items() if k != "timings_s"}, sort_keys=True)
                               if isinstance(p, str) else p for p in frame["provenance"]]
    frame = frame.astype(str)  # lists, JSON and NaN compare as their text
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def shards(random_gpt2_dir: Path, random_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("merge")
    out = {"a": d / "a.duckdb", "b": d / "b.duckdb", "serial": d / "serial.duckdb"}
    _detect(random_gpt2_dir, "gpt", out["a"])
    _detect(random_llama_dir, "llama", out["b"])
    _detect(random_gpt2_dir, "gpt", out["serial"])
    _detect(random_llama_dir, "llama", out["serial"])
    return out


@pytest.mark.slow
def test_two_shards_merge_into_the_serial_database_row_for_row(shards: dict[str, Path], tmp_path: Path) -> None:
    merged = tmp_path / "merged.duckdb"
    proc = hw("merge", str(shards["a"]), str(shards["b"]), "--db", str(merged))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "merged 2 models from 2 shards" in proc.stdout
    for table in TABLES:
        pd.testing.assert_frame_equal(_table(merged, table), _table(shards["serial"], table), check_like=True, obj=table)
    long_m, long_s = _table(merged, "head_metrics_long"), _table(shards["serial"], "head_metrics_long")
    pd.testing.assert_frame_equal(long_m, long_s)
    assert not list(tmp_path.glob(".merged.duckdb.merge-*"))


@pytest.mark.slow
def test_same_model_twice_newest_finished_run_wins_and_is_said(shards: dict[str, Path], random_gpt2_dir: Path,
                                                               tmp_path: Path) -> None:
    newer = tmp_path / "newer.duckdb"
    time.sleep(1.1)
    _detect(random_gpt2_dir, "gpt", newer)
    merged = tmp_path / "m.duckdb"
    proc = hw("merge", str(shards["a"]), str(newer), "--db", str(merged))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'gpt' is in 2 inputs: newest finished run wins, taken from" in proc.stderr and str(newer) in proc.stderr
    con = duckdb.connect(str(merged), read_only=True)
    newest = duckdb.connect(str(newer), read_only=True)
    try:
        assert con.execute("SELECT run_id FROM runs").fetchall() == newest.execute("SELECT run_id FROM runs").fetchall()
    finally:
        con.close()
        newest.close()
    # merging again into the existing output adds the other model and keeps the first
    again = hw("merge", str(shards["b"]), "--db", str(merged))
    assert again.returncode == 0, again.stderr[-2000:]
    con = duckdb.connect(str(merged), read_only=True)
    try:
        assert sorted(r[0] for r in con.execute("SELECT model_id FROM models").fetchall()) == ["gpt", "llama"]
    finally:
        con.close()


def test_bad_merges_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.duckdb"
    cases = [
        (("merge", str(tmp_path / "missing.duckdb"), "--db", str(out)), "does not exist"),
        (("merge", str(tmp_path / "notes.txt"), "--db", str(out)), "not a DuckDB"),
    ]
    (tmp_path / "notes.txt").write_text("hello")
    for args, needle in cases:
        proc = hw(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("headwiki: error:") and needle in lines[0], proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_different_weights_under_one_id_are_refused(shards: dict[str, Path], random_llama_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    _detect(random_llama_dir, "gpt", other)  # another model under the id "gpt"
    out = tmp_path / "out.duckdb"
    proc = hw("merge", str(shards["a"]), str(other), "--db", str(out))
    assert proc.returncode == 2
    assert "model id 'gpt' names different weights" in proc.stderr and not out.exists()


@pytest.mark.slow
def test_kill_9_during_merge_leaves_the_old_output(shards: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.duckdb"
    first = hw("merge", str(shards["a"]), "--db", str(out))
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, "-m", "headwiki.cli", "merge", str(shards["b"]), "--db", str(out)],
                            env={**os.environ, "HEADWIKI_PAUSE_AT": "commit", "HEADWIKI_PAUSE_FILE": str(pid_file)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), proc.communicate()[1]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == before  # the old output, whole
    con = duckdb.connect(str(out), read_only=True)
    try:
        assert [r[0] for r in con.execute("SELECT model_id FROM models").fetchall()] == ["gpt"]
    finally:
        con.close()
    rerun = hw("merge", str(shards["b"]), "--db", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert not list(tmp_path.glob(".out.duckdb.merge-*"))  # the killed run's temporary file is cleaned


def test_shard_picks_every_nth_model_and_refuses_bad_specs() -> None:
    from headwiki.cli import shard_models
    from headwiki.errors import HeadwikiError

    models = ("a", "b", "c", "d", "e")
    assert [shard_models(models, f"{i}/2") for i in range(2)] == [("a", "c", "e"), ("b", "d")]
    assert sorted(m for i in range(3) for m in shard_models(models, f"{i}/3")) == sorted(models)  # a partition
    for bad in ("2/2", "x/2", "1", "-1/2"):
        with pytest.raises(HeadwikiError, match="use I/N"):
            shard_models(models, bad)
    proc = hw("build", "--model", "toy", "--shard", "1/2", "--db", "unused.duckdb")
    assert proc.returncode == 0 and "no model falls in this shard" in proc.stderr
