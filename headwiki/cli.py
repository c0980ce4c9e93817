"""The `headwiki` command line: a thin layer over the passes; data on stdout, progress on stderr."""

from __future__ import annotations

import sys

import click
import pandas as pd

from headwiki import __version__
from headwiki.cli_options import emit, format_options, model_options
from headwiki.errors import HeadwikiError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="headwiki")
def cli() -> None:
    """Characterize every attention head of a transformer; store it in DuckDB; publish a wiki."""


@cli.command()
@model_options
@format_options
def info(model: str, device: str, dtype: str, fmt: str) -> None:
    """Load a model and print its ModelInfo record."""
    from headwiki.models import load_model

    loaded = load_model(model, device=device, dtype=dtype)
    record = loaded.info.as_dict()
    if fmt == "table":
        emit(pd.DataFrame({"field": list(record), "value": [str(v) for v in record.values()]}), fmt, title=f"model {loaded.info.name}")
    else:
        emit(pd.DataFrame([record]), fmt)


def _register() -> None:
    """Attach the pass commands (each lives next to the code it drives)."""
    from headwiki.db.cli import query
    from headwiki.detectors.cli import detect, heads

    for command in (detect, heads, query):
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: HeadwikiError becomes one line on stderr and its exit code (2 for bad input)."""
    _register()
    try:
        cli.main(args=argv, prog_name="headwiki", standalone_mode=False)
    except HeadwikiError as exc:
        click.echo(f"headwiki: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("headwiki: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
