"""`headwiki query "SQL"`: run SQL over the DB on a read-only, sandboxed connection."""

from __future__ import annotations

import click
import duckdb
import pandas as pd

from headwiki.cli_options import db_option, emit, format_options
from headwiki.errors import HeadwikiError

_READ_ONLY_HINTS = ("read-only", "read only", "readonly")
_EXTERNAL_HINTS = ("external access", "enable_external_access", "disabled by configuration", "permission error")


@click.command()
@click.argument("sql")
@db_option
@format_options
def query(sql: str, db_path: str, fmt: str) -> None:
    """Run SQL on the DB (read-only; no file access). Tables: models, runs, heads, metrics, controls,
    head_examples, negation_*; view head_metrics_long (model_id, label, layer, head, metric, value)."""
    frame = run_query(db_path, sql)
    if frame is not None:
        emit(frame, fmt)


def run_query(db_path: str, sql: str) -> pd.DataFrame | None:
    """Execute `sql` read-only with external access disabled; DuckDB errors -> one-line HeadwikiError."""
    from headwiki.db.store import reading

    if not sql.strip():
        raise HeadwikiError('empty SQL: pass a statement, e.g. headwiki query "SELECT * FROM models"')
    with reading(db_path) as con:
        try:
            relation = con.sql(sql)
            return None if relation is None else relation.fetchdf()
        except duckdb.Error as exc:
            raise query_error(exc) from None


def query_error(exc: duckdb.Error) -> HeadwikiError:
    """A one-line message for a failed query, naming write and file-access refusals plainly."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    low = first.lower()
    if any(h in low for h in _READ_ONLY_HINTS):
        return HeadwikiError(f"query is read-only: {first} (write with the headwiki passes, not with query)")
    if any(h in low for h in _EXTERNAL_HINTS):
        return HeadwikiError(f"query cannot read or write files outside the database (external access is disabled): {first}")
    return HeadwikiError(first)
