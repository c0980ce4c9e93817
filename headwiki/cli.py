"""The `headwiki` command line: a thin layer over the passes; data on stdout, progress on stderr."""

from __future__ import annotations

import os
import sys

# Before anything imports torch (libgomp reads this once, when it is loaded): threads that wait at a
# parallel region's barrier sleep instead of spinning. On a machine shared with other jobs a spinning
# thread burns the core the thread it waits for needs; on SmolLM2's validation forwards under load ~7
# on 2 cores this more than halved both CPU and wall time (benchmarks/bench_cpu_paths.py measures the
# ratio side by side). It changes no number (same kernels, same reduction order). A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click
import pandas as pd

from headwiki import __version__
from headwiki.cli_options import db_option, emit, format_options, model_options
from headwiki.errors import HeadwikiError
from headwiki.start_token import AUTO, CHOICES_HELP


# Pass commands live next to the code they drive; each is imported only when it is run (or listed by
# --help), so `headwiki query` starts without importing torch.
_LAZY_COMMANDS = {
    "detect": "headwiki.detectors.cli:detect",
    "heads": "headwiki.detectors.cli:heads",
    "query": "headwiki.db.cli:query",
    "merge": "headwiki.db.cli:merge",
    "ablate": "headwiki.ablation.cli:ablate",
    "validate": "headwiki.ablation.cli:validate",
    "site": "headwiki.wiki.cli:site",
    "toy": "headwiki.toy.cli:toy",
    "sandbox": "headwiki.sandbox.cli:sandbox",
    "diff": "headwiki.modeldiff.cli:diff",
}


class _LazyGroup(click.Group):
    """A group whose pass commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in _LAZY_COMMANDS:
            import importlib

            module, attr = _LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="headwiki")
def cli() -> None:
    """Characterize every attention head of a transformer; store it in DuckDB; publish a wiki."""


@cli.command()
@model_options
@format_options
def info(model: str, device: str, dtype: str, bos: str, fmt: str) -> None:
    """Load a model and print its ModelInfo record."""
    from headwiki.models import load_model

    loaded = load_model(model, device=device, dtype=dtype, bos=bos)
    record = loaded.info.as_dict()
    if fmt == "table":
        emit(pd.DataFrame({"field": list(record), "value": [str(v) for v in record.values()]}), fmt, title=f"model {loaded.info.name}")
    else:
        emit(pd.DataFrame([record]), fmt)


@cli.command()
@click.option("--model", "models", multiple=True, default=("toy",), show_default=True,
              help="repeat for several models: toy, a hub id, or a local HuggingFace directory; NAME=SOURCE picks the model id")
@db_option
@click.option("--out", "out_dir", default="site", show_default=True, type=click.Path(file_okay=False), help="site folder")
@click.option("--dataset", default=None, help="negation items: english | toy | multinli | FILE (default: toy for the toy model, english otherwise)")
@click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda, cuda:N")
@click.option("--dtype", default="float32", show_default=True, help="float32 | bfloat16 | float16")
@click.option("--bos", default=AUTO, show_default=True, help=CHOICES_HELP)
@click.option("--force", is_flag=True, help="re-run passes even when an identical finished run is in the database")
@click.option("--shard", default=None, metavar="I/N",
              help="build only every N-th --model starting at I (0 <= I < N), e.g. $SLURM_ARRAY_TASK_ID/8, each into its own "
                   "--db; then `headwiki merge SHARDS... --db ALL`")
@click.option("--executor", type=click.Choice(["serial", "ray"]), default="serial", show_default=True,
              help="ray: one Ray task per model ($RAY_ADDRESS or a local instance; needs headwiki[ray]), shards merged")
@click.option("--max-items", default=None, type=click.IntRange(min=2),
              help="ablate on a seeded random subset of this many negation items (as `ablate --max-items`)")
def build(models: tuple[str, ...], db_path: str, out_dir: str, dataset: str | None, device: str, dtype: str, bos: str, force: bool,
          shard: str | None, executor: str, max_items: int | None) -> None:
    """Detect -> ablate -> site for every --model, into one database and one site (resumable)."""
    from headwiki.build import build as run_build
    from headwiki.summary import print_build_summary

    if shard is not None:
        models = shard_models(models, shard)
        if not models:
            click.echo(f"shard {shard}: no model falls in this shard; nothing to do", err=True)
            return

    ablate_options = {"max_items": max_items} if max_items is not None else None
    if executor == "ray":
        from headwiki.executors import build_with_ray

        report = build_with_ray(list(models), db_path, out_dir, dataset=dataset, device=device, dtype=dtype, force=force,
                                ablate_options=ablate_options, bos=bos)
    else:
        report = run_build(list(models), db_path, out_dir, dataset=dataset, device=device, dtype=dtype, force=force,
                           ablate_options=ablate_options, bos=bos)
    print_build_summary(report)


def shard_models(models: tuple[str, ...], shard: str) -> tuple[str, ...]:
    """The models of shard "I/N": models[I::N]; a malformed shard is one HeadwikiError line."""
    i, sep, n = shard.partition("/")
    if not (sep and i.strip().isdigit() and n.strip().isdigit() and 0 <= int(i) < int(n)):
        raise HeadwikiError(f"--shard {shard!r}: use I/N with 0 <= I < N, e.g. --shard 0/4")
    return models[int(i)::int(n)]


@cli.command()
@click.option("--out", "out_dir", default="site", show_default=True, type=click.Path(file_okay=False), help="site folder")
@click.option("--port", default=8000, show_default=True, type=int, help="port on 127.0.0.1 (0 picks a free one)")
def serve(out_dir: str, port: int) -> None:
    """Serve the static site on 127.0.0.1 only."""
    from headwiki.export import serve_site

    serve_site(out_dir, port)


@cli.command()
@db_option
@click.option("--parquet", "parquet_dir", required=True, type=click.Path(file_okay=False), help="output folder")
def export(db_path: str, parquet_dir: str) -> None:
    """Write every table of the database as <table>.parquet into a folder."""
    from headwiki.export import export_parquet

    for path in export_parquet(db_path, parquet_dir):
        click.echo(str(path))


def main(argv: list[str] | None = None) -> None:
    """Entry point: HeadwikiError becomes one line on stderr and its exit code (2 for bad input)."""
    try:
        cli.main(args=argv, prog_name="headwiki", standalone_mode=False)
    except HeadwikiError as exc:
        click.echo(f"headwiki: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("headwiki: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # bad option values: one line, with where to look
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"headwiki: error: {exc.format_message()}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
