"""`headwiki query` is bounded: it never writes (not even beside the DB), cannot change its own settings,
stops at --timeout and on Ctrl-C, stays under --memory-limit, and caps terminal output (issue 17).

Every attack runs through the real CLI entry point in a subprocess against a real DuckDB file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ctrl_c_reaches_child

ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
CROSS_JOIN = "SELECT count(*) FROM range(1e9::BIGINT) a, range(1e9::BIGINT) b WHERE a.range + b.range < 0"
FOREVER = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"


def hw_cmd(*args: str) -> list[str]:
    """The real entry point (headwiki.cli.main: one-line errors, exit codes)."""
    return [sys.executable, "-m", "headwiki.cli", *args]


def hw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(hw_cmd(*args), capture_output=True, text=True, timeout=timeout, env=ENV)


def refused(db: Path, sql: str, **limits: object) -> str:
    """The one-line message a refused or stopped query raises (in process)."""
    from headwiki.db.cli import QueryLimits, run_query
    from headwiki.errors import HeadwikiError

    with pytest.raises(HeadwikiError) as info:
        run_query(str(db), sql, QueryLimits(**limits))  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("query running")]
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from headwiki.db.store import transaction

    path = tmp_path_factory.mktemp("bounds") / "hw.duckdb"
    with transaction(path) as con:
        con.execute("INSERT INTO heads (model_id, layer, head, label) VALUES ('m', 0, 0, 'L0H0'), ('m', 0, 1, 'L0H1')")
    return path


def test_nothing_is_written_into_the_duckdb_temp_directory(db: Path) -> None:
    """DuckDB lets a read-only connection write into its temp directory (<db>.tmp) unless it has none."""
    tmp_dir = Path(f"{db}.tmp")
    tmp_dir.mkdir(exist_ok=True)
    try:
        for sql in (f"COPY heads TO '{tmp_dir}/x.csv'", f"EXPORT DATABASE '{tmp_dir}/exp'",
                    f"COPY (SELECT 1) TO '{db}.tmp/y.parquet' (FORMAT parquet)", "COPY heads TO 'hw.duckdb.tmp/z.csv'"):
            assert "external access is disabled" in refused(db, sql), sql
        assert "external access is disabled" in one_line_error(hw("query", f"COPY heads TO '{tmp_dir}/x.csv'", "--db", str(db)))
        assert list(tmp_dir.iterdir()) == []
    finally:
        tmp_dir.rmdir()


@pytest.mark.parametrize("sql, expected", [
    ("INSTALL httpfs", "external access is disabled"),
    ("FORCE INSTALL httpfs", "external access is disabled"),
    ("LOAD httpfs", "external access is disabled"),
    ("SELECT * FROM read_text('/etc/passwd')", "external access is disabled"),
    ("SELECT * FROM read_blob('/etc/passwd')", "external access is disabled"),
    ("SELECT * FROM glob('/etc/*')", "external access is disabled"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "external access is disabled"),
    ("SELECT * FROM read_csv('{beside}')", "external access is disabled"),
    ("SELECT * FROM '{beside}'", "external access is disabled"),
    ("SELECT * FROM read_text('{beside}.lock')", "external access is disabled"),
    ("SELECT * FROM 'https://example.com/x.csv'", "external access is disabled"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "external access is disabled"),
    ("COPY (SELECT 1) TO '{dir}/out.csv'", "external access is disabled"),
    ("EXPORT DATABASE '{dir}/exp'", "external access is disabled"),
    ("INSERT INTO heads (model_id, layer, head, label) VALUES ('x', 9, 9, 'L9H9')", "query is read-only"),
    ("ALTER TABLE heads ADD COLUMN evil INTEGER", "query is read-only"),
    ("CREATE VIEW v AS SELECT 1", "query is read-only"),
    ("ATTACH ':memory:' AS m", "query is read-only"),
    ("SET allowed_directories = ['/']", "cannot change settings"),
    ("CALL enable_logging()", "cannot change settings"),
])
def test_the_other_escape_attempts_are_refused_and_write_nothing(db: Path, sql: str, expected: str) -> None:
    """The rest of the issue's escape list: extensions, file readers on system files and on files beside the
    DB, remote URLs, writes through DML/DDL/ATTACH, settings through other statements."""
    beside = db.parent / "beside.csv"
    beside.write_text("a,b\n1,2\n")
    Path(f"{beside}.lock").write_text("PID 1: detect m [headwiki detect --model /home/me/private]\n")
    listing = sorted(p.name for p in db.parent.iterdir())
    assert expected in refused(db, sql.format(beside=beside, db=db, dir=db.parent))
    assert sorted(p.name for p in db.parent.iterdir()) == listing  # no out.csv, no exp/, no .tmp


def test_the_default_memory_limit_is_the_documented_one_not_80_percent_of_ram(db: Path) -> None:
    from headwiki.db.cli import DEFAULT_MEMORY_LIMIT, run_query

    frame = run_query(str(db), "SELECT current_setting('memory_limit') AS m, current_setting('temp_directory') AS t")
    assert DEFAULT_MEMORY_LIMIT == "1GB" and frame.iloc[0]["m"] == "953.6 MiB"  # DuckDB shows 1GB (10^9 B) in MiB
    assert frame.iloc[0]["t"] == ""  # and no spill: no temp directory at all
    help_text = hw("query", "--help").stdout
    assert "--memory-limit" in help_text and "default: 1GB" in help_text and "no spill to disk" in help_text


@pytest.mark.parametrize("sql", [
    "SET memory_limit = '100GB'", "SET max_expression_depth = 100000", "SET threads = 64",
    "SET temp_directory = '/tmp'", "SET lock_configuration = false", "RESET memory_limit",
    "PRAGMA memory_limit = '100GB'", "SET GLOBAL memory_limit = '100GB'", "SET enable_external_access = true",
])
def test_settings_cannot_be_changed_by_the_query(db: Path, sql: str) -> None:
    assert "cannot change settings" in refused(db, sql)


def test_the_configuration_is_fixed_before_the_statement(db: Path) -> None:
    from headwiki.db.cli import QueryLimits, run_query

    frame = run_query(str(db), "SELECT current_setting('memory_limit') AS m, current_setting('temp_directory') AS t, "
                               "current_setting('lock_configuration') AS l, current_setting('threads') AS n",
                      QueryLimits(memory_limit="300MB", threads=1))
    row = frame.iloc[0]
    assert row["m"].startswith("286") and row["t"] == "" and bool(row["l"]) and int(row["n"]) == 1


def test_a_runaway_join_and_a_recursive_cte_stop_at_the_timeout(db: Path) -> None:
    for sql in (CROSS_JOIN, FOREVER):
        message = refused(db, sql, timeout_s=1.5, memory_limit="64GB")
        assert "stopped after 1.5 s (--timeout)" in message and "raise --timeout" in message
    line = one_line_error(hw("query", FOREVER, "--db", str(db), "--timeout", "1"))
    assert "stopped after 1 s (--timeout)" in line


def test_a_query_past_the_memory_limit_fails_without_spilling(db: Path) -> None:
    message = refused(db, "SELECT list(range) AS l FROM range(3e8::BIGINT)", memory_limit="128MB")
    assert "--memory-limit 128MB" in message and "raise --memory-limit" in message
    message = refused(db, "SELECT range % 7 AS k, list(range) FROM range(1e8::BIGINT) GROUP BY 1 ORDER BY 1", memory_limit="128MB")
    assert "--memory-limit 128MB" in message
    assert not Path(f"{db}.tmp").exists()


def test_ctrl_c_interrupts_a_running_query(db: Path) -> None:
    proc = subprocess.Popen(hw_cmd("query", CROSS_JOIN, "--db", str(db), "--timeout", "600", "--memory-limit", "64GB"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            preexec_fn=ctrl_c_reaches_child)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # printed once the statement has run for a while
        assert first.startswith("query running (Ctrl-C stops it"), first
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["headwiki: error: query interrupted (Ctrl-C); nothing was changed"]


def test_terminal_output_is_capped_with_a_pointer_to_csv(db: Path) -> None:
    shown = hw("query", "SELECT range AS n FROM range(5000)", "--db", str(db), "--max-rows", "20")
    assert shown.returncode == 0, shown.stderr
    assert "│ 19 │" in shown.stdout and "│ 20 │" not in shown.stdout
    assert "first 20 rows only: use --csv or --json for all rows" in shown.stderr
    csv = hw("query", "SELECT range AS n FROM range(5000)", "--db", str(db), "--csv")
    assert csv.stdout.splitlines() == ["n", *map(str, range(5000))] and csv.stderr == ""
    import json

    rows = json.loads(hw("query", "SELECT range AS n FROM range(5000)", "--db", str(db), "--json").stdout)
    assert [r["n"] for r in rows] == list(range(5000))
    assert json.loads(hw("query", "SELECT 1 AS n WHERE false", "--db", str(db), "--json").stdout) == []
    assert hw("query", "SELECT 1 AS n WHERE false", "--db", str(db), "--csv").stdout.splitlines() == ["n"]


def test_sql_starting_with_a_comment_is_not_read_as_an_option(db: Path) -> None:
    sql = "-- the answer\nSELECT 42 AS answer"
    for args in (("query", sql, "--db", str(db), "--csv"), ("query", "--db", str(db), "--csv", "--", sql)):
        proc = hw(*args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["answer", "42"]


@pytest.mark.parametrize("args, expected", [
    (("--memory-limit", "lots"), "--memory-limit 'lots' is not a size"),
])
def test_bad_limits_are_one_line(db: Path, args: tuple[str, ...], expected: str) -> None:
    assert expected in one_line_error(hw("query", "SELECT 1", "--db", str(db), *args))


@pytest.mark.parametrize("args", [("--timeout", "0"), ("--max-rows", "0"), ("--threads", "0")])
def test_out_of_range_limits_exit_2(db: Path, args: tuple[str, ...]) -> None:
    proc = hw("query", "SELECT 1", "--db", str(db), *args)
    assert proc.returncode == 2 and args[0] in proc.stderr and "Traceback" not in proc.stderr
