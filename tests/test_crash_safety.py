"""Crash safety (issue 17): kill -9 during a pass, a site render or an export never leaves a half state.

The DB opens and shows no run of the killed pass (nor any of its rows); the site / export folder is the
old one, never half; a re-run completes and removes the killed writer's temporary folder.

Kill points: a fixed time into the compute (the lock file names the running pass), and the exact
moments named in headwiki.crashpoint (HEADWIKI_PAUSE_AT): "commit" = inside the pass's one open
transaction with every row written; "tmp-dir" / "swap" = the output's temporary folder just made /
complete but not yet swapped in. (There is no `merge` command yet, so none is tested here.)
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _runs(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT pass_name, status, seed FROM runs ORDER BY started_at").fetchall()
    finally:
        con.close()


def _wait_for(condition, what: str, proc: subprocess.Popen, limit_s: float = 300) -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit_s
    while not condition():
        assert proc.poll() is None, f"process ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


def _snapshot(db: Path) -> dict[str, list[str]]:
    """Every table's rows (as text, sorted): equal snapshots mean the killed process changed nothing."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'").fetchall()]
        return {t: sorted(repr(row) for row in con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}
    finally:
        con.close()


def _kill_at(point: str, args: list[str], tmp_path: Path) -> int:
    """Run `headwiki *args` until it reaches pause point `point` (headwiki.crashpoint), kill -9 it there; its PID."""
    flag = tmp_path / f"paused-{point}"
    flag.unlink(missing_ok=True)
    env = {**ENV, "HEADWIKI_PAUSE_AT": point, "HEADWIKI_PAUSE_FILE": str(flag)}
    proc = subprocess.Popen([sys.executable, "-m", "headwiki.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    _wait_for(flag.exists, f"the pause point {point!r}", proc)
    assert flag.read_text().split() == [str(proc.pid), point]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed there, not finished
    return proc.pid


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> Path:
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    db = tmp_path_factory.mktemp("crash") / "hw.duckdb"
    detect_model(load_model(str(random_gpt2_dir), device="cpu"), db, n_seqs=4, seq_len=4, n_boot=20)
    return db


@pytest.mark.slow
def test_kill_9_during_detect_compute_and_inside_its_commit(small_db: Path, random_gpt2_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    db.write_bytes(small_db.read_bytes())
    before = _runs(db)
    assert before == [("detect", "finished", 0)]
    args = [sys.executable, "-m", "headwiki.cli", "detect", "--model", str(random_gpt2_dir), "--db", str(db),
            "--device", "cpu", "--n-seqs", "400", "--seq-len", "30", "--seed", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lock = Path(f"{db}.lock")
    _wait_for(lambda: lock.exists() and "detect rand-gpt2" in lock.read_text(errors="replace"), "the pass start", proc)
    time.sleep(1.0)  # inside the compute (model loaded, lock taken, sequences scored)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _runs(db) == before  # the DB opens; the killed run is not there, finished or otherwise
    tables = _snapshot(db)
    small = args[:-4] + ["--n-seqs", "4", "--seq-len", "4", "--seed", "1"]
    _kill_at("commit", small[3:], tmp_path)  # inside the pass's one transaction, every row written
    assert _runs(db) == before and _snapshot(db) == tables
    rerun = subprocess.run(small, capture_output=True, text=True, timeout=300, env=ENV)
    assert rerun.returncode == 0, rerun.stderr  # the dead holder's lock went with it
    assert _runs(db) == [*before, ("detect", "finished", 1)]


def test_kill_9_during_site_render_keeps_the_old_site(small_db: Path, tmp_path: Path) -> None:
    from headwiki.wiki.render import render_site

    out = tmp_path / "site"
    render_site(small_db, out)
    old = _digest(out)
    proc = subprocess.Popen([sys.executable, "-m", "headwiki.cli", "site", "--db", str(small_db), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    prefix = f".site.tmp-{proc.pid}-"
    _wait_for(lambda: any(p.name.startswith(prefix) and (p / "assets").exists() for p in tmp_path.iterdir()),
              "the render's temporary folder", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _digest(out) == old  # the old site, whole
    litter = [p for p in tmp_path.iterdir() if p.name.startswith(prefix)]
    assert litter  # what the killed render left ...
    render_site(small_db, out)
    assert not any(p.exists() for p in litter)  # ... the next render removes
    assert (out / "index.html").exists() and _digest(out).keys() == old.keys()


def test_the_next_run_heals_a_crash_between_two_renames_and_spares_live_and_foreign_folders(small_db: Path, tmp_path: Path) -> None:
    from headwiki.atomic_dir import heal_and_clean
    from headwiki.wiki.render import render_site

    out = tmp_path / "site"
    render_site(small_db, out)
    old = _digest(out)
    dead = _dead_pid()
    moved_aside = tmp_path / f".site.tmp-{dead}-abc.old"
    out.rename(moved_aside)  # the state a crash between `out -> old` and `tmp -> out` would leave
    half = tmp_path / f".site.tmp-{dead}-abc"
    (half / "assets").mkdir(parents=True)
    live = tmp_path / f".site.tmp-{os.getpid()}-live"  # a render still running in this process
    live.mkdir()
    foreign = tmp_path / ".site.backup"
    foreign.mkdir()
    removed = heal_and_clean(out)
    assert _digest(out) == old and not moved_aside.exists()  # no site -> the previous site is back
    assert removed == [half] and not half.exists()
    assert live.exists() and foreign.exists()
    render_site(small_db, out)
    assert live.exists() and foreign.exists() and (out / "index.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".site.backup", live.name, "site"])


@pytest.mark.slow
def test_kill_9_during_ablate_compute_and_inside_its_commit(small_db: Path, random_gpt2_dir: Path, tmp_path: Path) -> None:
    import json

    from headwiki.ablation.synthetic import synthetic_items

    db = tmp_path / "hw.duckdb"
    db.write_bytes(small_db.read_bytes())
    before = _runs(db)
    items = tmp_path / "words.jsonl"  # in the random model's vocabulary (English is refused as unreadable)
    items.write_text("".join(json.dumps(it.as_dict()) + "\n" for it in synthetic_items(60, 250, seed=1)))
    args = [sys.executable, "-m", "headwiki.cli", "ablate", "--model", str(random_gpt2_dir), "--db", str(db),
            "--device", "cpu", "--dataset", str(items), "--n-boot", "2000"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lock = Path(f"{db}.lock")
    _wait_for(lambda: lock.exists() and "ablate rand-gpt2" in lock.read_text(errors="replace"), "the pass start", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _runs(db) == before
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM negation_items").fetchall() == [(0,)]
    con.close()
    tables = _snapshot(db)
    small = args[:-4] + ["--dataset", str(items), "--max-items", "8", "--n-boot", "20", "--no-groups", "--no-attribution"]
    _kill_at("commit", small[3:], tmp_path)  # inside the pass's one transaction, every row written
    assert _runs(db) == before and _snapshot(db) == tables
    rerun = subprocess.run(small, capture_output=True, text=True, timeout=300, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert [r[:2] for r in _runs(db)] == [("detect", "finished"), ("ablate", "finished")]


def _hw(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], capture_output=True, text=True, timeout=300,
                          env=ENV, cwd=cwd)


@pytest.mark.slow
def test_kill_9_during_validate_compute_and_inside_its_commit(small_db: Path, random_gpt2_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    db.write_bytes(small_db.read_bytes())
    before, tables = _runs(db), _snapshot(db)
    assert before == [("detect", "finished", 0)] and tables["role_validation"] == []
    args = ["validate", "--model", str(random_gpt2_dir), "--db", str(db), "--device", "cpu"]
    # 1. a fixed time into the compute: the pass holds the lock (it names the pass) and is ablating
    proc = subprocess.Popen([sys.executable, "-m", "headwiki.cli", *args, "--n-seqs", "400", "--seq-len", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    lock = Path(f"{db}.lock")
    _wait_for(lambda: lock.exists() and "validate rand-gpt2" in lock.read_text(errors="replace"), "the pass start", proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _runs(db) == before and _snapshot(db) == tables
    # 2. inside the one transaction: role_validation rows, head columns and the runs row written, not committed
    _kill_at("commit", args, tmp_path)
    assert _runs(db) == before  # the DB opens; no run of the killed pass, finished or otherwise
    assert _snapshot(db) == tables  # nor any row it wrote
    rerun = _hw(*args)
    assert rerun.returncode == 0, rerun.stderr  # the dead holders' lock went with them
    assert _runs(db) == [*before, ("validate", "finished", 0)]
    assert len(_snapshot(db)["role_validation"]) > 0


@pytest.mark.parametrize("command, point", [("export", "tmp-dir"), ("export", "swap"), ("site", "tmp-dir"), ("site", "swap")])
def test_kill_9_while_writing_an_output_folder_keeps_the_old_one(small_db: Path, tmp_path: Path, command: str, point: str) -> None:
    from headwiki.atomic_dir import MARKER
    from headwiki.export import export_parquet
    from headwiki.wiki.render import render_site

    db = tmp_path / "hw.duckdb"
    db.write_bytes(small_db.read_bytes())
    out = tmp_path / "out"
    (export_parquet if command == "export" else render_site)(db, out)
    (out / "previous-version.txt").write_text("only the old folder has this file")  # tells old from new apart
    old, db_bytes, tables = _digest(out), db.read_bytes(), _snapshot(db)
    args = [command, "--db", str(db), "--parquet" if command == "export" else "--out", str(out)]
    pid = _kill_at(point, args, tmp_path)
    assert _digest(out) == old  # the old folder, whole
    assert db.read_bytes() == db_bytes and _snapshot(db) == tables  # it only read the DB
    litter = [p for p in tmp_path.iterdir() if p.name.startswith(f".out.tmp-{pid}-")]
    assert len(litter) == 1  # what the killed writer left ...
    if point == "swap":  # ... complete, swapped in a moment later had it lived
        assert (litter[0] / MARKER).exists() and _digest(litter[0]).keys() == old.keys() - {"previous-version.txt"}
    else:
        assert list(litter[0].iterdir()) == []
    rerun = _hw(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert not litter[0].exists()  # ... the re-run removes
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    new = _digest(out)
    assert new.keys() == old.keys() - {"previous-version.txt"}  # the new folder, whole
