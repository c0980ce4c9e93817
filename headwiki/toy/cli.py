"""``headwiki toy ...`` commands (click group :data:`toy`).

Also runnable directly: ``python -m headwiki.toy.cli train --seed 0``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from headwiki.toy import MODEL_DIR
from headwiki.toy.config import TrainConfig, default_out


@click.group(name="toy")
def toy() -> None:
    """Build the small trained toy model with known circuits."""


@toy.command(name="train")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of world, data and init.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output HF model directory (written whole; an existing folder only if headwiki wrote it)  "
                   "[default: ./toy-run-seed<SEED>]")
@click.option("--steps", type=click.IntRange(min=1), default=TrainConfig.steps, show_default=True,
              help="Optimizer steps.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.time_budget_s, show_default=True,
              help="Stop training after this many seconds (guard for slow machines).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also save the raw weights every N steps as OUT/checkpoints/step<N> (HF directories that load as "
                   "models '<OUT name>@step<N>' of one series; `headwiki build` over them draws the timeline page). 0 = none.")
def train_cmd(seed: int, out: Path, steps: int, time_budget: float, checkpoint_every: int) -> None:
    """Train the toy GPT-2 from its generated corpus and save it to OUT (progress on stderr).

    Prints the held-out summary metrics as JSON on stdout.
    """
    from headwiki.toy.train import summary_line, train

    out = out if out is not None else default_out(seed)
    metrics = train(TrainConfig(seed=seed, steps=steps, time_budget_s=time_budget, checkpoint_every=checkpoint_every), out)
    click.echo(summary_line(metrics), err=True)
    keys = ("steps_done", "train_wall_s", "stopped_early_by_time_budget", "checkpoints")
    click.echo(json.dumps({k: metrics[k] for k in keys} | {"out": str(out)}))


@toy.command(name="select")
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=MODEL_DIR,
              show_default=True, help="Where the chosen run is installed.")
def select_cmd(runs: tuple[Path, ...], out: Path) -> None:
    """Install the best of finished RUNS (one `toy train --out` directory per seed) into OUT.

    Best = highest negated accuracy on the validation entities (never negated in training,
    disjoint from the test entities); the test split is recorded for every run, never used.
    """
    from headwiki.toy.selection import install

    metrics = install(list(runs), out)
    for row in metrics["selection"]:
        click.echo(f"seed {row['seed']}: validation negated {row['validation_negated']:.3f} "
                   f"(logit diff {row['validation_logit_diff_negated']:.2f}), test negated "
                   f"{row['test_negated']:.3f}{'  <- chosen' if row['chosen'] else ''}", err=True)
    click.echo(json.dumps({"chosen_seed": metrics["config"]["seed"], "out": str(out)}))


if __name__ == "__main__":
    toy()
