"""Reusable click option bundles so every command spells --model/--device/--db/--json the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import pandas as pd

from headwiki.db.store import DEFAULT_DB

F = Callable[..., Any]


def model_options(func: F) -> F:
    """--model, --device, --dtype, --bos."""
    from headwiki.start_token import AUTO, CHOICES_HELP

    func = click.option("--bos", default=AUTO, show_default=True, help=CHOICES_HELP)(func)
    func = click.option("--dtype", default="float32", show_default=True, help="float32 | bfloat16 | float16")(func)
    func = click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda, cuda:N")(func)
    func = click.option(
        "--model", "model", default="toy", show_default=True,
        help="'toy' (embedded), a hub id (gpt2, EleutherAI/pythia-70m) or a local HuggingFace directory; "
             "NAME=SOURCE stores it under the model id NAME (default id: toy, the hub id, or the directory's name)",
    )(func)
    return func


def db_option(func: F) -> F:
    return click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False), help="DuckDB file")(func)


def format_options(func: F) -> F:
    """--table (default) | --json | --csv, as one option `fmt`."""
    func = click.option("--csv", "fmt", flag_value="csv", help="CSV on stdout")(func)
    func = click.option("--json", "fmt", flag_value="json", help="JSON records on stdout")(func)
    func = click.option("--table", "fmt", flag_value="table", default=True, help="a table on stdout (default)")(func)
    return func


def emit(frame: pd.DataFrame, fmt: str, title: str | None = None) -> None:
    """Write a DataFrame to stdout as table, JSON records or CSV."""
    if fmt == "json":
        click.echo(json.dumps(json.loads(frame.to_json(orient="records", default_handler=str)), indent=2))
    elif fmt == "csv":
        click.echo(csv_ready(frame).to_csv(index=False), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_lines=False)
        for col in frame.columns:
            table.add_column(str(col), overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*[_fmt_cell(v) for v in row])
        Console(width=max(100, Console().width)).print(table)


def csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """List cells (DuckDB LIST columns arrive as numpy arrays) joined with ';' ("L1H5;L1H0"), not numpy text."""
    import numpy as np

    def joined(v: Any) -> Any:
        return ";".join(map(str, list(v))) if isinstance(v, (list, tuple, np.ndarray)) else v

    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(joined)
    return out


def _fmt_cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    try:
        if hasattr(value, "tolist"):
            return ", ".join(map(str, value.tolist()))
    except Exception:  # pragma: no cover
        pass
    return str(value)
