"""`headwiki detect` (run the detector pass) and `headwiki heads` (list heads from the DB, read-only)."""

from __future__ import annotations

import re

import click
import pandas as pd

from headwiki.cli_options import db_option, emit, format_options, model_options
from headwiki.errors import HeadwikiError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@click.command()
@model_options
@db_option
@click.option("--n-seqs", type=click.IntRange(min=2), default=None, help="sequences per input kind (repeat, text, random)  [default: 64]")
@click.option("--seq-len", type=click.IntRange(min=2), default=None, help="L, the random span length: sequences are [BOS, x_1..x_L, x_1..x_L] (2L+1 tokens)  [default: min(32, (n_ctx-2)//2)]")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for sequences, bootstrap and the random-init control")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="sequences per forward pass  [default: 16]")
@click.option("--text-dataset", default=None, help="HuggingFace dataset NAME for natural text (needs the hub); default: the shipped English passages (toy corpus for the toy model)")
@click.option("--text-file", type=click.Path(dir_okay=False), default=None, help="a local UTF-8 text file for natural text (passages separated by blank lines)")
@click.option("--threshold", "thresholds", multiple=True, metavar="ROLE=VALUE", help="override a role threshold, e.g. --threshold induction=0.5 (repeatable)")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="heads per role in the summary table")
@format_options
def detect(
    model: str, device: str, dtype: str, bos: str, db_path: str, n_seqs: int | None, seq_len: int | None, seed: int,
    batch_size: int | None, text_dataset: str | None, text_file: str | None, thresholds: tuple[str, ...], top: int, fmt: str,
) -> None:
    """Score every attention head with the detectors and store one row per head in the DB."""
    from headwiki.detectors.roles import parse_thresholds
    from headwiki.detectors.run import DEFAULT_BATCH_SIZE, DEFAULT_N_SEQS, detect_model, summary_frame
    from headwiki.models import load_model

    if text_dataset and text_file:
        raise HeadwikiError("pass either --text-dataset or --text-file, not both")
    from headwiki.db.lock import check_db_target
    from headwiki.detectors.data import file_passages

    overrides = parse_thresholds(thresholds)
    text = f"hf:{text_dataset}" if text_dataset else text_file
    check_db_target(db_path)  # bad input fails before the model loads
    if text_file:
        file_passages(text_file)
    loaded = load_model(model, device=device, dtype=dtype, bos=bos)
    result = detect_model(
        loaded, db_path, n_seqs=n_seqs or DEFAULT_N_SEQS, seq_len=seq_len, seed=seed, text=text,
        thresholds=overrides, batch_size=batch_size or DEFAULT_BATCH_SIZE,
    )
    summary = summary_frame(result.frame, result.thresholds, top=top)
    title = (f"{result.model_id}: top heads per role (run {result.run_id}; n={result.n_seqs}; "
             f"control {'reused' if result.control_reused else 'computed'}; written to {result.db_path})")
    emit(summary, fmt, title=title)


@click.command()
@click.option("--model", "model", required=True, help="model_id in the DB (see `headwiki query \"SELECT model_id FROM models\"`)")
@db_option
@click.option("--role", default=None, help="only heads holding this role (any role the model's runs declared: see the `roles` table)")
@click.option("--sort", "sort", default=None, help="column to sort by, descending unless --asc (default: layer, head; or the role's score)")
@click.option("--asc", "ascending", is_flag=True, help="sort ascending")
@click.option("--limit", type=int, default=None, help="at most N rows")
@click.option("--columns", default=None, help="comma-separated columns to show (default: the roles and every detector metric; with CIs for csv/json)")
@format_options
def heads(model: str, db_path: str, role: str | None, sort: str | None, ascending: bool, limit: int | None,
          columns: str | None, fmt: str) -> None:
    """List the heads of one model from the DB (read-only)."""
    frame = list_heads(db_path, model, role=role, sort=sort, limit=limit, columns=columns, with_ci=fmt != "table",
                       ascending=ascending)
    emit(frame, fmt, title=f"heads of {model} ({db_path})")


def list_heads(
    db_path: str, model: str, role: str | None = None, sort: str | None = None, limit: int | None = None,
    columns: str | None = None, with_ci: bool = True, ascending: bool = False,
) -> pd.DataFrame:
    """The heads of `model` as a DataFrame (read-only connection); bad names -> HeadwikiError.

    Everything comes from the database's own declarations: the `roles` table says which roles exist, which
    column holds each (a list of detector roles, or a negation role's value) and which metric scores it; the
    `metrics` table says which columns are detector metrics (the default columns) and which have a CI.
    role: any declared role; one no head of the model holds is reported with the roles it does hold."""
    from headwiki.db.store import reading

    if limit is not None and limit < 1:
        raise HeadwikiError(f"--limit {limit} must be at least 1")
    with reading(db_path) as con:
        types = dict(con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'heads' ORDER BY ordinal_position").fetchall())
        available = list(types)
        models = [r[0] for r in con.execute("SELECT DISTINCT model_id FROM heads ORDER BY 1").fetchall()]
        if model not in models:
            known = ", ".join(models) or "none yet"
            raise HeadwikiError(f"model {model!r} is not in {db_path} (models: {known}): run `headwiki detect --model ...` first")
        declared = {r[0]: (r[1], r[2]) for r in con.execute(
            "SELECT role, metric, held_in FROM roles WHERE model_id = ? ORDER BY sort_order, role", [model]).fetchall()}
        holders = [c for c in dict.fromkeys(h for _, h in declared.values()) if c in types]
        wanted = [c.strip() for c in columns.split(",")] if columns else _default_columns(con, model, holders, with_ci)
        for col in [*wanted, *([sort] if sort else [])]:
            if not _IDENT.match(col) or col not in available:
                raise HeadwikiError(f"unknown column {col!r}: heads has {', '.join(available)}")
        role_sql = " OR ".join(f'list_contains("{c}", ?)' if types[c].endswith("[]") else f'"{c}" = ?' for c in holders)
        if role:
            if not role_sql:
                raise HeadwikiError(f"{db_path} has no role results for {model!r}: run `headwiki detect --model {model}` first")
            held = _roles_held(con, model, holders, types)
            if role not in held and role not in declared:
                raise HeadwikiError(f"unknown role {role!r} for {model!r}: its runs declared {', '.join(declared) or 'none'} "
                                    f"(held by its heads: {', '.join(sorted(held)) or 'none'}); a role is declared by the pass "
                                    f"that assigns it, so run that pass first (negation roles: `headwiki ablate --model {model}`)")
        where = "model_id = ?" + (f" AND ({role_sql})" if role else "")
        params: list[object] = [model] + ([role] * role_sql.count("?") if role else [])
        score = declared.get(role, (None, None))[0] if role else None
        order_col = sort or (score if score in available else None)
        direction = "ASC" if ascending else "DESC"
        order = f'"{order_col}" {direction} NULLS LAST, layer, head' if order_col else "layer, head"
        select = ", ".join(f'"{c}"' for c in wanted)
        sql = f"SELECT {select} FROM heads WHERE {where} ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit else "")
        return con.execute(sql, params).fetchdf()


def _default_columns(con: object, model: str, holders: list[str], with_ci: bool) -> list[str]:
    """label, the role columns, then every detector metric in its declared order (with its CI bounds if asked)."""
    rows = con.execute(  # type: ignore[attr-defined]
        "SELECT metric, has_ci FROM metrics WHERE model_id = ? AND family = 'detector' ORDER BY sort_order, metric", [model]).fetchall()
    out = ["label", *holders]
    for metric, has_ci in rows:
        out += [metric, *((f"{metric}_lo", f"{metric}_hi") if with_ci and has_ci else ())]
    return out


def _roles_held(con: object, model: str, holders: list[str], types: dict[str, str]) -> set[str]:
    """Every role some head of `model` holds, from each column that holds roles."""
    held: set[str] = set()
    for c in holders:
        sql = (f'SELECT DISTINCT unnest("{c}") FROM heads WHERE model_id = ?' if types[c].endswith("[]")
               else f'SELECT DISTINCT "{c}" FROM heads WHERE model_id = ? AND "{c}" IS NOT NULL')
        held |= {r[0] for r in con.execute(sql, [model]).fetchall() if r[0]}  # type: ignore[attr-defined]
    return held
