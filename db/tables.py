"""The database's tables as files for the site: Parquet, CSV and JSON downloads, and the SQL console's data.

Every table and view of the database (`exported_tables`) is written by DuckDB `COPY` into one folder of the
site (`write_site_tables`): `<table>.parquet`, and for a table of at most TEXT_MAX_CELLS cells `<table>.csv`,
`<table>.json` (one JSON array of records) and `console/<table>.js`, the rows the in-page SQL console (SQLite compiled to WebAssembly, sql.js) loads with a
`<script>` tag, since a page opened from file:// may not fetch files. The console's copy is SQLite-typed:

* integers and booleans -> INTEGER (true = 1), floating point -> REAL, everything else -> TEXT;
* lists, structs, maps, timestamps and JSON -> their DuckDB text form (`CAST(x AS VARCHAR)`, e.g. a `roles` list
  is `[induction, previous_token]`), so `CAST(roles AS VARCHAR)` prints the same text in both engines;
* NaN and infinities -> NULL (SQLite has no NaN; JSON has neither); the JSON download does the same.

Rows are sorted (ORDER BY ALL) and written on one thread, so an unchanged database gives byte-identical files.
Callers write into a folder they own (the site's temporary folder under `atomic_dir.replaced_dir`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

CONSOLE_DIR = "console"
# A table with more cells than this ships as Parquet only: no CSV, JSON or console script (as text it would be tens of
# MB: the per-item negation effects of 384 heads x 200 items x 2 ablations are 19 MB of CSV and 37 MB of JSON against
# 4.9 MB of Parquet; SmolLM2's composition edges, 105,705 rows x 11 columns, 51 MB of CSV + JSON + console script;
# `headwiki query --csv` writes any table as CSV).
TEXT_MAX_CELLS = 500_000
CONSOLE_CALLBACK = "headwikiSqlTable"  # what each console/<table>.js calls (wiki/static/sql-console.js defines it)
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
            "UHUGEINT", "BOOLEAN")
_REAL = ("FLOAT", "DOUBLE", "REAL")
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a table name that is also a safe file name


@dataclass(frozen=True)
class SiteTable:
    """One exported table: its name, size and the files written for it (paths relative to the folder)."""

    name: str
    n_rows: int
    columns: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)  # format ("parquet", "csv", "json") -> relative path
    console: str | None = None  # console/<name>.js; None (and Parquet only) when the table is over TEXT_MAX_CELLS

    @property
    def in_console(self) -> bool:
        return self.console is not None


def sqlite_type(duckdb_type: str) -> str:
    """The SQLite column type the console gives a DuckDB column type."""
    t = duckdb_type.upper()
    if t in _INTEGER:
        return "INTEGER"
    if t in _REAL or t.startswith("DECIMAL"):
        return "REAL"
    return "TEXT"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def exported_tables(con: duckdb.DuckDBPyConnection, schema: str = "main", catalog: str | None = None) -> list[str]:
    """Every table and view the site exports: all of them in `schema` (plugins' tables too), sorted by name; a name
    that is not a plain identifier (it becomes a file name) is left out."""
    where = "table_schema = ?" + (" AND table_catalog = ?" if catalog else "")
    params = [schema, catalog] if catalog else [schema]
    names = [r[0] for r in con.execute(
        f"SELECT table_name FROM information_schema.tables WHERE {where} ORDER BY table_name", params).fetchall()]
    return [n for n in names if _SAFE_NAME.match(n)]


def _console_select(columns: list[tuple[str, str]], source: str) -> str:
    """SELECT the console's (and JSON download's) SQLite-friendly copy of `source` (see the module docstring)."""
    parts = []
    for name, typ in columns:
        q = _ident(name)
        kind = sqlite_type(typ)
        if kind == "INTEGER":
            parts.append(f"CAST({q} AS BIGINT) AS {q}" if typ.upper() == "BOOLEAN" else q)
        elif kind == "REAL":
            parts.append(f"CASE WHEN isfinite({q}) THEN CAST({q} AS DOUBLE) END AS {q}")
        elif typ.upper() == "VARCHAR":
            parts.append(q)
        else:
            parts.append(f"CAST({q} AS VARCHAR) AS {q}")
    return f"SELECT {', '.join(parts)} FROM {source} ORDER BY ALL"


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_site_tables(db_path: str | Path, out: Path) -> list[SiteTable]:
    """Write every exported table of `db_path` into the folder `out` (created; must be the caller's own temporary
    folder): Parquet, CSV, JSON and the console script. -> one SiteTable per table, sorted by name."""
    out.mkdir(parents=True, exist_ok=True)
    (out / CONSOLE_DIR).mkdir(exist_ok=True)
    con = duckdb.connect(":memory:", config={"threads": 1})  # one thread: row order and bytes are deterministic
    try:
        con.execute(f"ATTACH {_literal(str(Path(db_path)))} AS src (READ_ONLY)")
        tables = []
        for name in exported_tables(con, catalog="src"):
            source = f"src.main.{_ident(name)}"
            columns = [(d[0], str(d[1])) for d in con.execute(f"SELECT * FROM {source} LIMIT 0").description]
            n_rows = int(con.execute(f"SELECT count(*) FROM {source}").fetchone()[0])
            ordered = f"SELECT * FROM {source} ORDER BY ALL"
            con.execute(f"COPY ({ordered}) TO {_literal(str(out / f'{name}.parquet'))} (FORMAT parquet)")
            files = {"parquet": f"{name}.parquet"}
            console = None
            if n_rows * max(len(columns), 1) <= TEXT_MAX_CELLS:
                con.execute(f"COPY ({ordered}) TO {_literal(str(out / f'{name}.csv'))} (FORMAT csv, HEADER true)")
                friendly = _console_select(columns, source)
                con.execute(f"COPY ({friendly}) TO {_literal(str(out / f'{name}.json'))} (FORMAT json, ARRAY true)")
                files.update(csv=f"{name}.csv", json=f"{name}.json")
                rows = [[_json_value(v) for v in r] for r in con.execute(friendly).fetchall()]
                payload = {"name": name, "columns": [[c, sqlite_type(t)] for c, t in columns], "rows": rows}
                console = f"{CONSOLE_DIR}/{name}.js"
                text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
                text = text.replace("</", "<\\/")  # with ensure_ascii: inert inside a script, whatever the strings hold
                (out / console).write_text(f"{CONSOLE_CALLBACK}({text});\n", encoding="utf-8")
            tables.append(SiteTable(name, n_rows, tuple(c for c, _ in columns), files, console))
        con.execute("DETACH src")
    finally:
        con.close()
    return tables
