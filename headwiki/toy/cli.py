"""``headwiki toy ...`` commands (click group :data:`toy`).

Also runnable directly: ``python -m headwiki.toy.cli train --seed 0``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from headwiki.toy.train import DEFAULT_OUT, TrainConfig, summary_line, train


@click.group(name="toy")
def toy() -> None:
    """Build the small trained toy model with known circuits."""


@toy.command(name="train")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of world, data and init.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
              show_default=True, help="Output HF model directory.")
@click.option("--steps", type=click.IntRange(min=1), default=TrainConfig.steps, show_default=True,
              help="Optimizer steps.")
@click.option("--time-budget", type=float, default=TrainConfig.time_budget_s, show_default=True,
              help="Stop training after this many seconds (guard for slow machines).")
def train_cmd(seed: int, out: Path, steps: int, time_budget: float) -> None:
    """Train the toy GPT-2 from its generated corpus and save it to OUT (progress on stderr).

    Prints the held-out summary metrics as JSON on stdout.
    """
    metrics = train(TrainConfig(seed=seed, steps=steps, time_budget_s=time_budget), out)
    click.echo(summary_line(metrics), err=True)
    keys = ("steps_done", "train_wall_s", "stopped_early_by_time_budget")
    click.echo(json.dumps({k: metrics[k] for k in keys} | {"out": str(out)}))


if __name__ == "__main__":
    toy()
