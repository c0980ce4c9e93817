"""Choose the committed toy model among finished training runs, by the validation split only.

Held-out negation accuracy still swings between seeds of one recipe (0.71-1.00 on never-negated
entities), so the project trains a few seeds with the same command and keeps the one with the
best negated accuracy on the *validation* entities (never negated in training, disjoint
from the test entities). The test split is recorded for every candidate but never consulted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from headwiki.atomic_dir import replaced_dir
from headwiki.errors import HeadwikiError
from headwiki.toy.card import write_metrics_and_card

#: Files of a run directory written by :func:`headwiki.toy.train.save`.
RUN_FILES: tuple[str, ...] = ("config.json", "generation_config.json", "model.safetensors",
                              "tokenizer.json", "tokenizer_config.json", "metrics.json")


def validation_key(m: dict[str, Any]) -> tuple[float, float]:
    """Sort key of one run's metrics (higher is better): validation negated accuracy, then the
    validation negated mean logit difference target - foil, negated (more negative = surer)."""
    v = m["negation_validation"]
    return (float(v["negated"]), -float(v["logit_diff_negated"]))


def choose(candidates: list[dict[str, Any]]) -> int:
    """Index of the best run by :func:`validation_key` (first one on an exact tie)."""
    if not candidates:
        raise HeadwikiError("no candidate runs to choose from")
    return max(range(len(candidates)), key=lambda i: (validation_key(candidates[i]), -i))


def selection_table(candidates: list[dict[str, Any]], chosen: int) -> list[dict[str, Any]]:
    """One JSON-able row per candidate: seed, validation and test negated accuracy, chosen flag."""
    rows = []
    for i, m in enumerate(candidates):
        rows.append({"seed": m["config"]["seed"], "chosen": i == chosen,
                     "validation_negated": m["negation_validation"]["negated"],
                     "validation_logit_diff_negated": m["negation_validation"]["logit_diff_negated"],
                     "test_negated": m["negation_heldout"]["negated"],
                     "train_wall_s": m["train_wall_s"]})
    return rows


def read_run(run_dir: Path) -> dict[str, Any]:
    """metrics.json of a finished run directory; HeadwikiError naming what is missing otherwise."""
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise HeadwikiError(f"{run_dir} is not a finished toy run (missing {', '.join(missing)}); "
                         f"train it with: headwiki toy train --seed S --out {run_dir}")
    m = json.loads((run_dir / "metrics.json").read_text())
    if "negation_validation" not in m:
        raise HeadwikiError(f"{run_dir}/metrics.json has no validation split; retrain it with this version")
    return m


def install(run_dirs: list[Path], out: Path) -> dict[str, Any]:
    """Copy the best of ``run_dirs`` into ``out`` with the selection table in its metrics.json and
    model card, written whole or not at all (:func:`headwiki.atomic_dir.replaced_dir`). Returns the chosen run's metrics (with ``selection``)."""
    candidates = [read_run(d) for d in run_dirs]
    seeds = [m["config"]["seed"] for m in candidates]
    if len(set(seeds)) != len(seeds):
        raise HeadwikiError(f"runs share a seed ({seeds}); pass one run directory per seed")
    best = choose(candidates)
    metrics = dict(candidates[best], selection=selection_table(candidates, best))
    with replaced_dir(out) as tmp:
        for f in RUN_FILES[:-1]:
            shutil.copy2(run_dirs[best] / f, tmp / f)
        write_metrics_and_card(tmp, metrics)
    return metrics
