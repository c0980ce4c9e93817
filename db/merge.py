"""Merge headwiki databases (shards built one model per task: `build --shard i/n`, SLURM arrays, Ray) into one.

Rules (said out loud, one line each):
* every input must be a headwiki database of this schema version (the usual one-line refusals otherwise);
* a model id present in several inputs is taken whole from the input whose newest *finished* run is newest
  ("newest finished run wins"); two inputs whose model rows carry different weight fingerprints under the same
  id are refused (two different models under one name: rename one with NAME=SOURCE and rebuild it);
* a model diff (`headwiki diff`) moves whole per pair of models, the newest diff of a pair winning;
* all of a model's rows move together (`models`, `runs` and every per-model table), so no merged row mixes
  two runs; `heads` gains the union of the inputs' metric columns; random-init controls (shared per
  architecture) are the union, first input first;
* the output is written to a temporary file beside it and renamed over it only when complete; an existing
  output is one of the inputs (merge into it) and is replaced only by the complete result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from headwiki.crashpoint import pause_point
from headwiki.db.lock import DUCKDB_MAGIC, check_db_target, write_lock
from headwiki.db.schema import DIFF_TABLES, MODEL_TABLES
from headwiki.db.store import connect, reading, refresh_long_view
from headwiki.errors import HeadwikiError
from headwiki.progress import log

PER_MODEL = ("models", "runs", *MODEL_TABLES)


@dataclass
class MergeReport:
    """What `merge_databases` did: the output, and for each model id the input it was taken from."""

    out: Path
    taken: dict[str, Path] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)  # one sentence per model id found in several inputs


def _model_runs(path: Path) -> dict[str, tuple[str, str | None]]:
    """model_id -> (newest finished run's finished_at as text, the model row's weight fingerprint)."""
    with reading(path) as con:
        rows = con.execute(
            "SELECT m.model_id, CAST(max(r.finished_at) AS VARCHAR), any_value(m.fingerprint) FROM models m "
            "LEFT JOIN runs r ON r.model_id = m.model_id AND r.status = 'finished' GROUP BY m.model_id").fetchall()
    return {mid: (str(ts or ""), fp) for mid, ts, fp in rows}


def plan_merge(inputs: list[Path]) -> tuple[dict[str, Path], list[str]]:
    """(model_id -> the input it is taken from, sentences about ids found in several inputs); refuses conflicts."""
    seen: dict[str, list[tuple[Path, str, str | None]]] = {}
    for path in inputs:
        for mid, (ts, fp) in _model_runs(path).items():
            seen.setdefault(mid, []).append((path, ts, fp))
    taken: dict[str, Path] = {}
    said: list[str] = []
    for mid, found in sorted(seen.items()):
        prints = {fp for _, _, fp in found if fp}
        if len(prints) > 1:
            where = ", ".join(str(p) for p, _, _ in found)
            raise HeadwikiError(f"model id {mid!r} names different weights in {where}: rebuild one under another id "
                                f"(--model NEWNAME=SOURCE), then merge")
        best = max(found, key=lambda x: x[1])  # ISO timestamps order as text; '' (no finished run) loses
        taken[mid] = best[0]
        if len(found) > 1:
            others = ", ".join(f"{p} ({ts or 'no finished run'})" for p, ts, _ in found if p != best[0])
            said.append(f"model {mid!r} is in {len(found)} inputs: newest finished run wins, taken from {best[0]} "
                        f"({best[1]}); not from {others}")
    return taken, said


def merge_databases(shards: list[str | Path], out: str | Path) -> MergeReport:
    """Merge `shards` (and `out`, when it exists) into `out`, atomically. See the module docstring for the rules."""
    out = Path(out)
    inputs = [Path(s) for s in shards]
    if not inputs:
        raise HeadwikiError("merge needs at least one shard: headwiki merge SHARD.duckdb... --db OUT.duckdb")
    for p in inputs:
        if not p.is_file():
            raise HeadwikiError(f"shard {p} does not exist: pass the .duckdb files written by `headwiki build --db`")
        with p.open("rb") as handle:
            if handle.read(12)[8:12] != DUCKDB_MAGIC:
                raise HeadwikiError(f"shard {p} is not a DuckDB database: pass the .duckdb files written by `headwiki build --db`")
    check_db_target(out)
    if any(p.resolve() == out.resolve() for p in inputs):
        raise HeadwikiError(f"--db {out} is also listed as a shard: an existing --db is merged into automatically")
    with write_lock(out, f"merge into {out.name}"):
        if out.exists():
            inputs = [out, *inputs]
        taken, said = plan_merge(inputs)
        for line in said:
            log(line)
        for stale in out.parent.glob(f".{out.name}.merge-*.tmp*"):  # a killed merge's leftovers (we hold the lock)
            stale.unlink(missing_ok=True)
        tmp = out.with_name(f".{out.name}.merge-{os.getpid()}.tmp")
        try:
            _write(tmp, inputs, taken)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
            Path(f"{tmp}.wal").unlink(missing_ok=True)
    return MergeReport(out, taken, said)


def _write(tmp: Path, inputs: list[Path], taken: dict[str, Path]) -> None:
    con = connect(tmp)  # creates the schema
    try:
        con.begin()
        for i, path in enumerate(inputs):
            alias = f"shard{i}"
            con.execute(f"ATTACH '{_sql_path(path)}' AS {alias} (READ_ONLY)")
            try:
                _add_head_columns(con, alias)
                mine = [mid for mid, src in taken.items() if src == path]
                tables = {r[0] for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_catalog = ?", [alias]).fetchall()}
                for table in PER_MODEL:
                    if table in tables and mine:
                        con.execute(f"INSERT INTO main.{table} BY NAME SELECT * FROM {alias}.main.{table} "
                                    "WHERE model_id IN (SELECT unnest(?::VARCHAR[]))", [mine])
                if "model_diffs" in tables:
                    _merge_diffs(con, alias)
                if "controls" in tables:
                    con.execute(f"INSERT INTO main.controls BY NAME SELECT * FROM {alias}.main.controls c WHERE NOT EXISTS "
                                "(SELECT 1 FROM main.controls m WHERE m.arch_key = c.arch_key AND m.metric = c.metric "
                                "AND m.layer = c.layer AND m.head = c.head)")
            finally:
                con.execute(f"DETACH {alias}")
        refresh_long_view(con)
        pause_point("commit")  # a crash-safety test kills the process here (headwiki.crashpoint)
        con.commit()
    finally:
        con.close()


def _merge_diffs(con: object, alias: str) -> None:
    """Model diffs (`headwiki diff`, keyed by the pair (model_a, model_b)) move whole per pair: a pair the output
    lacks, or holds from an older diff (created_at), is taken from this input in all four diff tables."""
    pairs = con.execute(  # type: ignore[attr-defined]
        f"SELECT s.model_a, s.model_b FROM {alias}.main.model_diffs s LEFT JOIN main.model_diffs m "
        "ON m.model_a = s.model_a AND m.model_b = s.model_b WHERE m.created_at IS NULL OR s.created_at > m.created_at").fetchall()
    for a, b in pairs:
        for table in DIFF_TABLES:
            con.execute(f"DELETE FROM main.{table} WHERE model_a = ? AND model_b = ?", [a, b])  # type: ignore[attr-defined]
            con.execute(f"INSERT INTO main.{table} BY NAME SELECT * FROM {alias}.main.{table} "  # type: ignore[attr-defined]
                        "WHERE model_a = ? AND model_b = ?", [a, b])


def _add_head_columns(con: object, alias: str) -> None:
    """Give main.heads every column the shard's `heads` has (same type), in the shard's order."""
    have = {r[0] for r in con.execute(  # type: ignore[attr-defined]
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() AND table_name = 'heads'"
    ).fetchall()}
    for name, dtype in con.execute(  # type: ignore[attr-defined]
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = ? AND table_name = 'heads' "
            "ORDER BY ordinal_position", [alias]).fetchall():
        if name not in have:
            con.execute(f'ALTER TABLE main.heads ADD COLUMN "{name}" {dtype}')  # type: ignore[attr-defined]


def _sql_path(path: Path) -> str:
    """A file path as a SQL string literal body (ATTACH takes no parameters): quotes doubled."""
    return str(path.resolve()).replace("'", "''")
