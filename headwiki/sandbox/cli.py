"""`headwiki sandbox`: check the inputs, then start the marimo app on 127.0.0.1 (no torch at import time)."""

from __future__ import annotations

import os
import subprocess

import click

from headwiki.cli_options import db_option
from headwiki.db.store import head_label
from headwiki.start_token import AUTO, CHOICES_HELP, check_choice
from headwiki.sandbox.launch import (DEFAULT_PORT, AppArgs, app_env, check_heads_fit, check_marimo, check_port, marimo_command,
                                     parse_heads)


@click.command()
@click.option("--model", "model", default="toy", show_default=True,
              help="the --model value the DB was built with (toy, a local directory, a .gguf file, a hub id, NAME=SOURCE)")
@db_option
@click.option("--dataset", default=None, help="negation items: english | toy | multinli | FILE  [default: toy for the toy model, english otherwise]")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="port on 127.0.0.1")
@click.option("--max-items", default=None, type=click.IntRange(min=2), help="a seeded random subset of this many items (as `headwiki ablate --max-items`)")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="seed of the subset, resample donors and bootstrap (as ablate)")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N")
@click.option("--bos", default=AUTO, show_default=True, help=CHOICES_HELP + " (as the DB's ablate run used)")
@click.option("--heads", default="", help="heads toggled when the app opens, e.g. L0H4,L1H2")
@click.option("--edit", is_flag=True, help="open the notebook in `marimo edit` instead of `marimo run`")
@click.option("--headless", is_flag=True, help="do not open a browser")
def sandbox(model: str, db_path: str, dataset: str | None, port: int, max_items: int | None, seed: int, device: str,
            bos: str, heads: str, edit: bool, headless: bool) -> None:
    """Toggle attention heads and watch negation accuracy: a marimo app over the model and the DB (127.0.0.1 only)."""
    from headwiki.ablation.items import check_dataset_spec, default_dataset
    from headwiki.sandbox.presets import check_db_holds_model

    check_port(port)
    check_choice(bos)
    toggled = parse_heads(heads)
    check_marimo()
    dataset = dataset or default_dataset(model)
    check_dataset_spec(dataset)
    from headwiki.models import resolve_source  # the model id the DB holds (imports torch, loads nothing)

    model_id = resolve_source(model)[0]
    n_layers, n_heads = check_db_holds_model(db_path, model_id)
    check_heads_fit(toggled, n_layers, n_heads, model_id)
    args = AppArgs(model=model, db=db_path, dataset=dataset, max_items=max_items, seed=seed, device=device,
                   heads=",".join(head_label(L, h) for L, h in toggled), bos=bos)
    cmd = marimo_command(args, port, edit=edit, headless=headless)
    click.echo(f"headwiki sandbox: http://127.0.0.1:{port} (Ctrl-C stops it)", err=True)
    try:
        code = subprocess.call(cmd, env=app_env(os.environ))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
