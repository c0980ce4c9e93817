"""Opening the DuckDB file and writing pass results in short, all-or-nothing transactions.

Writers take whole DataFrames computed beforehand, so a pass killed midway never touches
the file; a failed write rolls back and leaves the previous values intact.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from headwiki import __version__
from headwiki.crashpoint import pause_point
from headwiki.spec import STAT_SUFFIXES
from headwiki.db.schema import DDL, HEAD_KEY_COLUMNS, LONG_VIEW, SCHEMA_VERSION
from headwiki.errors import HeadwikiError

DEFAULT_DB = "headwiki.duckdb"
WRITE_WAIT_S = 120.0  # a pass's final write waits this long for readers (query's default --timeout is 60 s)
WRITE_RETRY_S = 0.5
# Every read-only connection: no file access outside the DB, no temp directory (so nothing can be
# written next to the DB, not even spill files), and a configuration no statement can change.
# (enable_progress_bar is session-only, so it and the lock are SET right after connecting.)
READ_CONFIG: dict[str, Any] = {"enable_external_access": False, "temp_directory": ""}
READ_SESSION = ("SET enable_progress_bar = false", "SET lock_configuration = true")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def head_label(layer: int, head: int) -> str:
    """The canonical head label, e.g. L5H1."""
    return f"L{layer}H{head}"


def _lock_error(path: str | Path, exc: duckdb.Error) -> HeadwikiError:
    pid = re.search(r"PID (\d+)", str(exc))
    who = f" (PID {pid.group(1)})" if pid else ""
    return HeadwikiError(
        f"database {path} is locked by another process{who}: wait for it to finish, or use --db with another file"
    )


def _check_version(con: duckdb.DuckDBPyConnection, path: str | Path, writable: bool) -> None:
    """Create the schema in a new file; refuse files from other schema versions with the fix."""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchall()[0][0]
    if not has_meta:
        if not writable:
            raise HeadwikiError(f"{path} is not a headwiki database (no meta table): pass the --db written by headwiki")
        con.begin()
        for statement in DDL:
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created_by', ?)", [str(SCHEMA_VERSION), __version__])
        con.commit()
        return
    found = int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])
    if found > SCHEMA_VERSION:
        raise HeadwikiError(
            f"{path} has schema version {found}, newer than this headwiki ({SCHEMA_VERSION}): upgrade headwiki (pip install -U headwiki)"
        )
    if found < SCHEMA_VERSION:
        raise HeadwikiError(
            f"{path} has schema version {found}, older than this headwiki ({SCHEMA_VERSION}) and no migration exists: rebuild it with `headwiki build --force --db NEW`"
        )
    if writable:  # tables added later in the same schema version are created idempotently
        for statement in DDL:
            con.execute(statement)


def connect(
    path: str | Path, read_only: bool = False, limits: Mapping[str, Any] | None = None, wait_s: float = 0.0,
) -> duckdb.DuckDBPyConnection:
    """Open the database with a clear error for a missing, locked or foreign file.

    Read-only connections get :data:`READ_CONFIG` plus `limits` (DuckDB settings such as memory_limit,
    threads), all fixed before the first statement and locked."""
    path = Path(path)
    if read_only and not path.exists():
        raise HeadwikiError(f"database {path} does not exist: run `headwiki build` (or `headwiki detect`) first, or pass --db PATH")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {**READ_CONFIG, **(limits or {})} if read_only else {}
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise HeadwikiError(f"cannot open database {path}: {str(exc).splitlines()[0]}") from exc
            if time.monotonic() > deadline:
                raise _lock_error(path, exc) from exc
            if not said:  # e.g. a `headwiki query` is reading: its --timeout bounds the wait
                said = True
                from headwiki.progress import log

                log(f"{_lock_error(path, exc)}: retrying for up to {wait_s:g} s")
            time.sleep(WRITE_RETRY_S)
    try:
        if read_only:
            for statement in READ_SESSION:
                con.execute(statement)
        _check_version(con, path, writable=not read_only)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def reading(path: str | Path, limits: Mapping[str, Any] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection (external access off, no temp directory, configuration locked), closed on exit.

    limits: extra DuckDB settings fixed at connect time, e.g. {"memory_limit": "1GB", "threads": 2}."""
    con = connect(path, read_only=True, limits=limits)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short read-write transaction: commit on success, roll back on any error, always close."""
    con = connect(path, read_only=False, wait_s=WRITE_WAIT_S)
    try:
        con.begin()
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        pause_point("commit")  # a crash-safety test kills the process here (headwiki.crashpoint)
        con.commit()
    finally:
        con.close()


def _sql_type(series: pd.Series) -> str:
    """DuckDB column type for a DataFrame column."""
    if pd.api.types.is_bool_dtype(series):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(series):
        return "BIGINT"
    if pd.api.types.is_float_dtype(series):
        return "DOUBLE"
    sample = next((v for v in series if v is not None and not (isinstance(v, float) and pd.isna(v))), None)
    if isinstance(sample, (list, tuple)):
        return "VARCHAR[]"
    return "VARCHAR"


def check_model_identity(con: duckdb.DuckDBPyConnection, info: Mapping[str, Any]) -> None:
    """Refuse to store a model under an id that already stands for different weights or config."""
    cols = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'models'").fetchall()}
    if "fingerprint" not in cols or not info.get("fingerprint"):
        return
    rows = con.execute("SELECT fingerprint, path FROM models WHERE model_id = ?", [info["name"]]).fetchall()
    if rows and rows[0][0] and rows[0][0] != info["fingerprint"]:
        raise HeadwikiError(
            f"model id {info['name']!r} in this database is a different model (weights/config of {rows[0][1]}, "
            f"not of {info['path']}): store this one under its own id with --model NAME={info['path']}, or use another --db"
        )


def assert_same_model(path: str | Path, info: Mapping[str, Any]) -> None:
    """Before a pass computes anything: its model id must be new in `path` or stand for the same model."""
    if not Path(path).exists():
        return
    with reading(path) as con:
        check_model_identity(con, info)


def write_model(con: duckdb.DuckDBPyConnection, info: Mapping[str, Any]) -> None:
    """Insert or replace one `models` row from a ModelInfo dict (inside the caller's transaction);
    a different model under the same id is refused (:func:`check_model_identity`)."""
    check_model_identity(con, info)
    row = {k: info[k] for k in (
        "source", "path", "revision", "architecture", "n_layers", "n_heads", "n_kv_heads", "d_model",
        "d_head", "n_ctx", "d_vocab", "n_params", "positional_embedding", "dtype", "device")}
    row["fingerprint"] = info.get("fingerprint") or None
    for key in ("quantization", "file_sha256", "dequantized_dtype"):  # GGUF sources only; NULL otherwise
        row[key] = info.get(key) or None
    row["series"] = info.get("series") or None  # checkpoint series (headwiki.checkpoints); NULL otherwise
    for key in ("step", "seed"):
        row[key] = None if info.get(key) is None else int(info[key])
    row["model_id"] = info["name"]
    row["added_at"] = datetime.now(timezone.utc).replace(tzinfo=None)
    frame = pd.DataFrame([row])
    con.execute("DELETE FROM models WHERE model_id = ?", [row["model_id"]])
    con.execute("INSERT INTO models BY NAME SELECT * FROM frame")


def ensure_head_rows(con: duckdb.DuckDBPyConnection, model_id: str, n_layers: int, n_heads: int) -> None:
    """Make sure `heads` has one row per (layer, head) of the model."""
    grid = pd.DataFrame(
        [(model_id, layer, head, head_label(layer, head)) for layer in range(n_layers) for head in range(n_heads)],
        columns=list(HEAD_KEY_COLUMNS),
    )
    con.execute(
        "INSERT INTO heads (model_id, layer, head, label) SELECT * FROM grid "
        "WHERE NOT EXISTS (SELECT 1 FROM heads h WHERE h.model_id = grid.model_id AND h.layer = grid.layer AND h.head = grid.head)"
    )


def write_head_metrics(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    frame: pd.DataFrame,
    docs: Mapping[str, Mapping[str, Any]] | None = None,
    run_id: str | None = None,
    pass_name: str | None = None,
) -> None:
    """Set metric columns of `heads` for one model from `frame` (one row per head: layer, head, metrics...).

    New columns are added with ALTER TABLE ... ADD COLUMN IF NOT EXISTS; columns not in `frame`
    keep their values; every head of the model present in `frame` gets the new values.
    docs: optional {metric: {"description":..., "data":..., "n":...}} written to `metrics`.
    """
    metric_cols = [c for c in frame.columns if c not in ("layer", "head", "model_id", "label")]
    for col in metric_cols:
        if not _IDENT.match(col):
            raise ValueError(f"metric column name {col!r} must be a lowercase SQL identifier")
    if frame.duplicated(["layer", "head"]).any():
        raise ValueError("duplicate (layer, head) rows in metric frame")
    for col in metric_cols:
        con.execute(f'ALTER TABLE heads ADD COLUMN IF NOT EXISTS "{col}" {_sql_type(frame[col])}')
    upd = frame[["layer", "head", *metric_cols]].copy()
    sets = ", ".join(f'"{c}" = upd."{c}"' for c in metric_cols)
    con.execute(
        f"UPDATE heads SET {sets} FROM upd WHERE heads.model_id = ? AND heads.layer = upd.layer AND heads.head = upd.head",
        [model_id],
    )
    if docs:
        rows = [
            {"model_id": model_id, "metric": m, "pass_name": pass_name, "run_id": run_id,
             "description": d.get("description"), "data": d.get("data"), "n": d.get("n"),
             **(d["spec"].row() if d.get("spec") is not None else {})}
            for m, d in docs.items()
        ]
        doc_frame = pd.DataFrame(rows)
        con.execute(
            "DELETE FROM metrics WHERE model_id = ? AND metric IN (SELECT metric FROM doc_frame)", [model_id]
        )
        con.execute("INSERT INTO metrics BY NAME SELECT * FROM doc_frame")
    refresh_long_view(con)


def write_roles(con: duckdb.DuckDBPyConnection, model_id: str, rows: list[Mapping[str, Any]], family: str,
                run_id: str | None) -> None:
    """Replace the `roles` rows of one family (detector | negation) for a model: each a Role.row() plus the
    threshold the run used."""
    con.execute("DELETE FROM roles WHERE model_id = ? AND family = ?", [model_id, family])
    if rows:
        role_frame = pd.DataFrame([{**r, "model_id": model_id, "run_id": run_id} for r in rows])
        con.execute("INSERT INTO roles BY NAME SELECT * FROM role_frame")


def refresh_long_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the long view: one row per (model, head, metric) with the metric's value and, where they exist,
    its 95% CI (lo, hi) and test (p, q) — statistics are columns of the view, never metrics of their own."""
    cols = [c[0] for c in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'heads' "
        "AND data_type IN ('DOUBLE', 'BIGINT', 'INTEGER', 'FLOAT', 'BOOLEAN') ORDER BY ordinal_position"
    ).fetchall() if c[0] not in HEAD_KEY_COLUMNS]
    present = set(cols)
    metrics = [c for c in cols if not any(c.endswith(s) and c[: -len(s)] in present for s in STAT_SUFFIXES)]
    stats = ("lo", "hi", "p", "q")
    if not metrics:
        none = ", ".join(f"NULL::DOUBLE AS {s}" for s in stats)
        con.execute(f"CREATE OR REPLACE VIEW {LONG_VIEW} AS SELECT model_id, label, layer, head, "
                    f"NULL::VARCHAR AS metric, NULL::DOUBLE AS value, {none} FROM heads WHERE false")
        return
    parts = []
    for m in metrics:
        extra = ", ".join(f'CAST("{m}_{s}" AS DOUBLE) AS {s}' if f"{m}_{s}" in present else f"NULL::DOUBLE AS {s}" for s in stats)
        parts.append(f"SELECT model_id, label, layer, head, '{m}' AS metric, CAST(\"{m}\" AS DOUBLE) AS value, {extra} "
                     f'FROM heads WHERE "{m}" IS NOT NULL')
    con.execute(f"CREATE OR REPLACE VIEW {LONG_VIEW} AS " + " UNION ALL ".join(parts))


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, where: Mapping[str, Any]) -> None:
    """Delete the rows of `table` matching `where` (e.g. model_id, dataset) and insert `frame` by name."""
    if not _IDENT.match(table):
        raise ValueError(f"bad table name {table!r}")
    clause = " AND ".join(f'"{k}" = ?' for k in where) or "true"
    con.execute(f"DELETE FROM {table} WHERE {clause}", list(where.values()))
    if len(frame):
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def versions() -> dict[str, str]:
    """Versions of the software a run depends on, recorded with it."""
    import torch
    import transformer_lens  # noqa: F401
    from importlib.metadata import version

    return {"headwiki": __version__, "transformer_lens": version("transformer-lens"), "torch": torch.__version__}


def record_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    model_id: str,
    pass_name: str,
    params: Mapping[str, Any],
    data_hash: str,
    seed: int,
    n: int,
    device: str,
    started_at: datetime,
    status: str = "finished",
    provenance: Mapping[str, Any] | None = None,
    fingerprint: str | None = None,
) -> None:
    """Write one `runs` row (inside the caller's transaction, together with the pass's results)."""
    v = versions()
    frame = pd.DataFrame([{
        "run_id": run_id, "model_id": model_id, "pass_name": pass_name,
        "params": json.dumps(params, sort_keys=True, default=str), "data_hash": data_hash, "seed": seed, "n": n,
        "headwiki_version": v["headwiki"], "transformer_lens_version": v["transformer_lens"], "torch_version": v["torch"],
        "device": device, "started_at": started_at.replace(tzinfo=None),
        "finished_at": datetime.now(timezone.utc).replace(tzinfo=None), "status": status,
        "provenance": json.dumps(provenance or {}, sort_keys=True, default=str), "fingerprint": fingerprint,
    }])
    con.execute("INSERT INTO runs BY NAME SELECT * FROM frame")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
