"""One writer per database (issue 17): passes take `<db>.lock` before any work, so nothing computed is thrown
away on a locked file; a second build waits and then skips what the first finished; the final write waits
for a reader instead of failing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from headwiki.errors import HeadwikiError

ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
HOLDER = (
    "import sys\n"
    "from headwiki.db.lock import write_lock\n"
    "with write_lock(sys.argv[1], 'test holder'):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.readline()\n"
)


def _hold(db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=ENV)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


def test_fail_fast_names_the_holder_and_kill_9_releases(tmp_path: Path) -> None:
    from headwiki.db.lock import write_lock

    db = tmp_path / "hw.duckdb"
    holder = _hold(db)
    try:
        with pytest.raises(HeadwikiError) as info:
            with write_lock(db, "second", wait_s=0):
                pass
        assert f"is being written by PID {holder.pid}: test holder" in str(info.value)
        with pytest.raises(HeadwikiError, match="still being written by"):
            with write_lock(db, "second", wait_s=0.5):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        with write_lock(db, "after kill -9", wait_s=0):  # the kernel dropped the dead holder's lock
            with write_lock(db, "nested: build -> detect", wait_s=0):  # re-entrant in one process
                assert "after kill -9" in Path(f"{db}.lock").read_text()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_pass_waits_for_the_holder_before_computing(tmp_path: Path, random_gpt2_dir: Path) -> None:
    db = tmp_path / "hw.duckdb"
    holder = _hold(db)
    try:
        detect = subprocess.Popen(
            [sys.executable, "-m", "headwiki.cli", "detect", "--model", str(random_gpt2_dir), "--db", str(db),
             "--device", "cpu", "--n-seqs", "4", "--seq-len", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        assert detect.stderr is not None
        first = detect.stderr.readline()  # the model loads, then the pass asks for the lock
        assert f"is being written by PID {holder.pid}: test holder" in first and "waiting" in first, first
        assert detect.poll() is None and not db.exists()  # waiting, nothing computed or written yet
        _release(holder)
        out, err = detect.communicate(timeout=300)
        assert detect.returncode == 0, err
        assert "detect rand-gpt2" in err  # the compute ran after the wait
    finally:
        _release(holder)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT pass_name, status FROM runs").fetchall() == [("detect", "finished")]
    con.close()


def test_the_final_write_waits_for_a_reader(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from headwiki.db.store import transaction

    db = tmp_path / "hw.duckdb"
    with transaction(db):
        pass
    reader = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time\ncon = duckdb.connect({str(db)!r}, read_only=True)\n"
                               "print('reading', flush=True)\ntime.sleep(3)\ncon.close()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        with transaction(db) as con:  # before: 'database is locked by another process' at once
            con.execute("INSERT INTO meta VALUES ('probe', 'written after the reader left')")
    finally:
        reader.wait(timeout=60)
    err = capfd.readouterr().err
    assert f"PID {reader.pid}" in err and "retrying for up to" in err, err
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'probe'").fetchall() == [("written after the reader left",)]
    con.close()


BUILD = (
    "import json, sys\n"
    "from headwiki.build import build\n"
    "r = build(['toy'], sys.argv[1], sys.argv[2], device='cpu',\n"
    "          detect_options={'n_seqs': 4, 'seq_len': 6, 'n_boot': 20, 'batch_size': 4},\n"
    "          ablate_options={'max_items': 8, 'n_boot': 20, 'n_perm': 20, 'groups': False, 'attribution': False},\n"
    "          validate_options={'n_seqs': 4, 'seq_len': 6, 'n_boot': 20, 'n_perm': 20})\n"
    "print(json.dumps(r.passes))\n"
)


@pytest.mark.slow
def test_two_builds_at_once_run_the_work_once(tmp_path: Path) -> None:
    db, out = tmp_path / "hw.duckdb", tmp_path / "site"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(db), str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr
    passes = sorted((json.loads(stdout.strip().splitlines()[-1])["toy"] for stdout, _ in results), key=lambda p: p["detect"])
    assert passes == [{"detect": "ran", "ablate": "ran", "validate": "ran"},
                      {"detect": "skipped", "ablate": "skipped", "validate": "skipped"}]
    assert any("is being written by PID" in stderr and "waiting" in stderr for _, stderr in results)
    con = duckdb.connect(str(db), read_only=True)
    assert sorted(con.execute("SELECT pass_name FROM runs").fetchall()) == [("ablate",), ("detect",), ("validate",)]
    con.close()
    assert (out / "index.html").exists()
