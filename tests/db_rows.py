"""Test helper: the rows of one read-only query against a headwiki DuckDB file (connection always closed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb


def db_rows(db: Path | str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
