"""`headwiki query "SQL"`: run SQL over the DB on a read-only, sandboxed, bounded connection.

The connection is read-only, has no file access and no temp directory, and its configuration is
locked before the statement runs (so the statement cannot raise its own limits). The statement
runs in a worker thread; the main thread interrupts the connection on Ctrl-C or when --timeout
passes, so neither a runaway join nor a recursive CTE can hold the machine. Results stream in
batches: --csv/--json write every row, the terminal table shows at most --max-rows.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click
import duckdb
import pandas as pd

from headwiki.cli_options import csv_ready, db_option, emit, format_options
from headwiki.errors import HeadwikiError
from headwiki.progress import log

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_THREADS = 2
DEFAULT_MAX_ROWS = 1000
BATCH_ROWS = 2048
NOTICE_AFTER_S = 2.0  # a long query says once on stderr how to stop it
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_READ_ONLY_HINTS = ("read-only", "read only", "readonly")
_EXTERNAL_HINTS = ("external access", "enable_external_access", "disabled by configuration", "permission error")
_LOCKED_HINTS = ("configuration has been locked",)


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on one query: wall-clock seconds, DuckDB memory limit, threads, rows shown as a table."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_limit: str = DEFAULT_MEMORY_LIMIT
    threads: int = DEFAULT_THREADS
    max_rows: int = DEFAULT_MAX_ROWS

    def settings(self) -> dict[str, Any]:
        if not _MEMORY.match(self.memory_limit):
            raise HeadwikiError(f"--memory-limit {self.memory_limit!r} is not a size: use e.g. 512MB, 1GB or 4GB")
        return {"memory_limit": self.memory_limit.replace(" ", ""), "threads": int(self.threads)}


@dataclass
class QueryResult:
    """What a query returned: the rows kept (all of them, or the first max_rows) and whether more existed."""

    frame: pd.DataFrame | None
    truncated: bool = False


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("sql")
@db_option
@format_options
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="stop the query after this many seconds")
@click.option("--memory-limit", default=DEFAULT_MEMORY_LIMIT, show_default=True,
              help="DuckDB memory limit for the query (e.g. 512MB, 4GB); there is no spill to disk")
@click.option("--threads", type=click.IntRange(min=1, max=256), default=DEFAULT_THREADS, show_default=True,
              help="DuckDB worker threads")
@click.option("--max-rows", type=click.IntRange(min=1), default=DEFAULT_MAX_ROWS, show_default=True,
              help="rows shown as a table (--csv and --json write all rows)")
def query(sql: str, db_path: str, fmt: str, timeout_s: float, memory_limit: str, threads: int, max_rows: int) -> None:
    """Run SQL on the DB (read-only; no file access; bounded time and memory). Tables: models, runs, heads,
    metrics, controls, head_examples, negation_*; view head_metrics_long (model_id, label, layer, head,
    metric, value). SQL that starts with '-' (a '-- comment'): put `--` before it."""
    limits = QueryLimits(timeout_s=timeout_s, memory_limit=memory_limit, threads=threads, max_rows=max_rows)
    if fmt == "table":
        result = run_query_bounded(db_path, sql, limits, keep_rows=max_rows)
        if result.frame is not None:
            emit(result.frame, fmt)
        if result.truncated:
            click.echo(f"headwiki: showing the first {max_rows} rows only: use --csv or --json for all rows "
                       f"(or --max-rows N, or a LIMIT)", err=True)
        return
    writer = _Streamer(fmt)
    run_query_bounded(db_path, sql, limits, on_batch=writer.write)
    writer.close()


class _Streamer:
    """Write result batches as they arrive: CSV with one header, or one JSON array of records."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.started = False
        self.any_result = False

    def write(self, batch: pd.DataFrame) -> None:
        self.any_result = True
        if self.fmt == "csv":
            click.echo(csv_ready(batch).to_csv(index=False, header=not self.started), nl=False)
            self.started = True
            return
        records = json.loads(batch.to_json(orient="records", default_handler=str))
        for rec in records:
            text = json.dumps(rec, indent=2).replace("\n", "\n  ")
            click.echo(("[\n  " if not self.started else ",\n  ") + text, nl=False)
            self.started = True

    def close(self) -> None:
        if self.fmt == "json" and self.any_result:
            click.echo("\n]" if self.started else "[]")


def run_query(db_path: str, sql: str, limits: QueryLimits | None = None) -> pd.DataFrame | None:
    """Execute `sql` read-only and bounded; every row as a DataFrame (None for statements without a result)."""
    return run_query_bounded(db_path, sql, limits or QueryLimits()).frame


def run_query_bounded(
    db_path: str,
    sql: str,
    limits: QueryLimits,
    keep_rows: int | None = None,
    on_batch: Callable[[pd.DataFrame], None] | None = None,
) -> QueryResult:
    """Run `sql` in a worker thread on a sandboxed connection; interrupt it on Ctrl-C or after the timeout.

    keep_rows: stop after this many rows (QueryResult.truncated says whether more existed).
    on_batch: called with each batch of rows as it arrives instead of keeping them."""
    from headwiki.db.store import reading

    if not sql.strip():
        raise HeadwikiError('empty SQL: pass a statement, e.g. headwiki query "SELECT * FROM models"')
    settings = limits.settings()
    with reading(db_path, limits=settings) as con:
        outcome: dict[str, Any] = {}
        done = threading.Event()  # not Thread.join: a join interrupted by Ctrl-C can report a live thread as dead

        def work() -> None:
            try:
                outcome["result"] = _execute(con, sql, keep_rows, on_batch)
            except BaseException as exc:  # re-raised in the main thread
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="headwiki-query", daemon=True).start()
        started = time.monotonic()
        stopped: str | None = None
        noticed = False
        try:
            while not done.wait(0.05):
                elapsed = time.monotonic() - started
                if not noticed and elapsed > NOTICE_AFTER_S:
                    noticed = True
                    log(f"query running (Ctrl-C stops it; --timeout {limits.timeout_s:g} s, --memory-limit {limits.memory_limit})")
                if elapsed > limits.timeout_s:
                    stopped = "timeout"
                    _stop(con, done)
        except KeyboardInterrupt:
            stopped = "ctrl-c"
            _stop(con, done)
        if stopped == "ctrl-c":
            raise HeadwikiError("query interrupted (Ctrl-C); nothing was changed", exit_code=130)
        if stopped == "timeout" and "result" not in outcome:
            raise HeadwikiError(f"query stopped after {limits.timeout_s:g} s (--timeout): narrow it (WHERE, LIMIT) or raise --timeout")
        if "error" in outcome:
            exc = outcome["error"]
            if isinstance(exc, duckdb.Error):
                raise query_error(exc, limits) from None
            raise exc
        return outcome["result"]


def _stop(con: duckdb.DuckDBPyConnection, done: threading.Event) -> None:
    """Interrupt the running statement and wait until the worker has let go of the connection
    (a second Ctrl-C interrupts again rather than leaving a busy connection behind)."""
    con.interrupt()
    while True:
        try:
            if done.wait(0.1):
                return
        except KeyboardInterrupt:
            con.interrupt()


def _batches(relation: Any) -> Iterator[pd.DataFrame]:
    reader = relation.to_arrow_reader(BATCH_ROWS)
    for batch in reader:
        yield batch.to_pandas()


def _execute(
    con: duckdb.DuckDBPyConnection, sql: str, keep_rows: int | None, on_batch: Callable[[pd.DataFrame], None] | None,
) -> QueryResult:
    relation = con.sql(sql)
    if relation is None:
        return QueryResult(frame=None)
    kept: list[pd.DataFrame] = []
    n = 0
    truncated = False
    empty = pd.DataFrame(columns=list(relation.columns))
    seen = False
    for batch in _batches(relation):
        if on_batch is not None:
            on_batch(batch)
            seen = True
            continue
        if keep_rows is not None and n + len(batch) > keep_rows:
            kept.append(batch.iloc[: keep_rows - n])
            truncated = True
            break
        kept.append(batch)
        n += len(batch)
    if on_batch is not None and not seen:
        on_batch(empty)  # a header line / an empty JSON array for a result with no rows
    frame = pd.concat(kept, ignore_index=True) if kept else empty
    return QueryResult(frame=frame, truncated=truncated)


def query_error(exc: duckdb.Error, limits: QueryLimits | None = None) -> HeadwikiError:
    """A one-line message for a failed query, naming write, file-access, settings and memory refusals plainly."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    low = first.lower()
    if isinstance(exc, duckdb.OutOfMemoryException) or "out of memory" in low:
        limit = limits.memory_limit if limits else DEFAULT_MEMORY_LIMIT
        return HeadwikiError(f"query needs more than --memory-limit {limit}: {first} (aggregate or filter it, or raise --memory-limit)")
    if any(h in low for h in _LOCKED_HINTS):
        return HeadwikiError(f"query cannot change settings (they are fixed for headwiki query): {first} "
                             "(use --memory-limit, --threads or --timeout)")
    if any(h in low for h in _READ_ONLY_HINTS):
        return HeadwikiError(f"query is read-only: {first} (write with the headwiki passes, not with query)")
    if any(h in low for h in _EXTERNAL_HINTS):
        return HeadwikiError(f"query cannot read or write files outside the database (external access is disabled): {first}")
    return HeadwikiError(first)


@click.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@db_option
def merge(shards: tuple[str, ...], db_path: str) -> None:
    """Merge shard databases (one model per task) into --db, atomically; a model in several shards: the newest
    finished run wins (said on stderr)."""
    from headwiki.db.merge import merge_databases

    report = merge_databases(list(shards), db_path)
    for mid, src in sorted(report.taken.items()):
        click.echo(f"{mid}: from {src}")
    click.echo(f"merged {len(report.taken)} models from {len(shards)} shards into {report.out}")
