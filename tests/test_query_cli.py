"""`headwiki query`, `headwiki heads` and `headwiki detect` end to end through the real CLI entry point.

Commands run in a subprocess through headwiki.cli.main (the one-line error / exit-code handler),
with the commands attached the same way the lead registers them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REGISTER = (
    "import sys\n"
    "from headwiki.cli import cli, main\n"
    "from headwiki.db.cli import query\n"
    "from headwiki.detectors.cli import detect, heads\n"
    "for c in (detect, heads, query):\n"
    "    cli.commands.setdefault(c.name, c)\n"
    "main(sys.argv[1:])\n"
)


def hw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", REGISTER, *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("q") / "hw.duckdb"
    proc = hw("detect", "--model", str(random_gpt2_dir), "--db", str(path), "--n-seqs", "6", "--seq-len", "8",
              "--device", "cpu", "--threshold", "previous_token=0.35")
    assert proc.returncode == 0, proc.stderr
    assert "top heads per role" in proc.stdout and "previous_token" in proc.stdout  # summary on stdout
    assert "detect rand-gpt2" in proc.stderr  # progress bar on stderr
    return path


def test_query_returns_rows_as_json_csv_and_table(db: Path) -> None:
    proc = hw("query", "SELECT label, induction, roles FROM heads ORDER BY layer, head", "--db", str(db), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["label"] for r in rows] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0", "L1H1", "L1H2", "L1H3"]
    csv = hw("query", "SELECT count(*) AS n FROM head_metrics_long WHERE metric = 'entropy'", "--db", str(db), "--csv")
    assert csv.stdout.splitlines() == ["n", "8"]
    table = hw("query", "SELECT params->>'$.thresholds.previous_token' AS t FROM runs", "--db", str(db))
    assert table.returncode == 0 and "0.35" in table.stdout


BAD_SQL = [
    ("SELEC * FROM heads", "syntax error"),
    ("SELECT nope FROM heads", "nope"),
    ("SELECT * FROM no_such_table", "no_such_table"),
]
REFUSED = [
    ("CREATE TABLE x (a INT)", "query is read-only"),
    ("DELETE FROM heads", "query is read-only"),
    ("UPDATE heads SET induction = 1", "query is read-only"),
    ("DROP TABLE heads", "query is read-only"),
    ("COPY heads TO '{tmp}/out.csv'", "external access is disabled"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "external access is disabled"),
    ("SELECT * FROM read_csv('/etc/passwd')", "external access is disabled"),
    ("SET enable_external_access = true", "cannot change settings"),
]


def test_bad_sql_and_refused_statements_give_one_line_errors_in_process(db: Path, tmp_path: Path) -> None:
    from headwiki.db.cli import run_query
    from headwiki.errors import HeadwikiError

    for sql, expected in BAD_SQL + REFUSED:
        with pytest.raises(HeadwikiError) as info:
            run_query(str(db), sql.format(tmp=tmp_path))
        message = str(info.value)
        assert expected in message and "\n" not in message, (sql, message)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "other.duckdb").exists()
    assert run_query(str(db), "SELECT count(*) AS n FROM heads")["n"].tolist() == [8]


def test_bad_sql_and_a_write_attempt_exit_2_through_the_cli(db: Path, tmp_path: Path) -> None:
    assert "syntax error" in one_line_error(hw("query", "SELEC * FROM heads", "--db", str(db)))
    assert "query is read-only" in one_line_error(hw("query", "DELETE FROM heads", "--db", str(db)))
    assert "external access is disabled" in one_line_error(hw("query", f"COPY heads TO '{tmp_path}/o.csv'", "--db", str(db)))
    assert hw("query", "SELECT count(*) AS n FROM heads", "--db", str(db), "--csv").stdout.splitlines() == ["n", "8"]


def test_missing_db_file_is_a_clear_error(tmp_path: Path) -> None:
    line = one_line_error(hw("query", "SELECT 1", "--db", str(tmp_path / "absent.duckdb")))
    assert "does not exist" in line and "absent.duckdb" in line
    assert not (tmp_path / "absent.duckdb").exists()
    assert "does not exist" in one_line_error(hw("heads", "--model", "x", "--db", str(tmp_path / "absent.duckdb")))


def test_locked_db_is_a_clear_error(db: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time\ncon = duckdb.connect({str(db)!r})\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        line = one_line_error(hw("query", "SELECT 1", "--db", str(db)))
        assert "locked by another process" in line and f"PID {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.2)
    assert hw("query", "SELECT 1 AS one", "--db", str(db), "--csv").returncode == 0


def test_heads_lists_filters_and_sorts(db: Path) -> None:
    proc = hw("heads", "--model", "rand-gpt2", "--db", str(db), "--sort", "bos_sink", "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 3 and [r["bos_sink"] for r in rows] == sorted((r["bos_sink"] for r in rows), reverse=True)
    assert {"label", "induction_lo", "induction_hi", "roles"} <= set(rows[0])
    full = json.loads(hw("query", "SELECT max(bos_sink) AS m FROM heads", "--db", str(db), "--json").stdout)
    assert rows[0]["bos_sink"] == pytest.approx(full[0]["m"])
    role = hw("heads", "--model", "rand-gpt2", "--db", str(db), "--role", "previous_token", "--json")
    expected = json.loads(hw("query", "SELECT count(*) AS n FROM heads WHERE list_contains(roles, 'previous_token')", "--db", str(db), "--json").stdout)[0]["n"]
    assert len(json.loads(role.stdout)) == expected
    assert "unknown column 'nope'" in one_line_error(hw("heads", "--model", "rand-gpt2", "--db", str(db), "--sort", "nope"))
    assert "not in" in one_line_error(hw("heads", "--model", "gpt5", "--db", str(db)))


def test_detect_rejects_bad_input_before_touching_the_db(tmp_path: Path, random_gpt2_dir: Path) -> None:
    target = tmp_path / "never.duckdb"
    assert "--threshold" in one_line_error(hw("detect", "--model", str(random_gpt2_dir), "--db", str(target), "--threshold", "induction"))
    assert "--seq-len" in one_line_error(hw("detect", "--model", str(random_gpt2_dir), "--db", str(target), "--seq-len", "500", "--device", "cpu"))
    assert not target.exists()
