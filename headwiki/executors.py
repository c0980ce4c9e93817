"""Run a build's per-model work somewhere else: one task per model, each writing its own shard database,
then one merge (headwiki.db.merge) and one site.

`ray`: each model is a Ray task (a GPU each when CUDA is available) on the cluster named by $RAY_ADDRESS, or
on a local Ray instance started for the build. Shards live in `.<db name>.shards/` beside the database and
persist, so a re-run resumes each model's passes where its shard left them. The merged database equals the
serial build's row for row (tests/test_executors.py).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headwiki.build import BuildReport, build, check_build_inputs, diff_series
from headwiki.models import resolve_source
from headwiki.start_token import AUTO
from headwiki.db.merge import merge_databases
from headwiki.errors import HeadwikiError
from headwiki.progress import log

EXECUTORS = ("serial", "ray")


def shard_dir(db_path: str | Path) -> Path:
    db = Path(db_path)
    return db.with_name(f".{db.name}.shards")


def _one_model(spec: str, shard: str, dataset: str | Mapping[str, str] | None, device: str, dtype: str, force: bool,
               options: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The task: every pass for one model into its shard (no site)."""
    report = build([spec], shard, out_dir=shard + ".site-unused", dataset=dataset, device=device, dtype=dtype,
                   force=force, site=False, **options)
    return report.passes


def build_with_ray(
    models: list[str], db_path: str | Path, out_dir: str | Path, dataset: str | Mapping[str, str] | None = None,
    device: str = "auto", dtype: str = "float32", force: bool = False, site: bool = True, **options: Any,
) -> BuildReport:
    """`headwiki build --executor ray`: one Ray task per model, then merge the shards into `db_path` and render."""
    try:
        import ray
    except ImportError:
        raise HeadwikiError("--executor ray needs Ray: pip install 'headwiki[ray]' (or use --executor serial)") from None
    from headwiki.wiki.render import render_site

    check_build_inputs(models, db_path, out_dir if site else None, dataset)
    started = time.perf_counter()
    shards = shard_dir(db_path)
    shards.mkdir(exist_ok=True)
    paths = [str(shards / f"{i}.duckdb") for i in range(len(models))]
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    try:
        import torch

        gpus = 1 if device != "cpu" and torch.cuda.is_available() else 0
        task = ray.remote(num_gpus=gpus, max_retries=0)(_one_model)
        log(f"ray: {len(models)} tasks ({gpus} GPU each) on {ray.cluster_resources().get('CPU', 0):g} CPUs; shards in {shards}")
        passes = ray.get([task.remote(spec, path, dataset, device, dtype, force, options) for spec, path in zip(models, paths)])
    finally:
        if started_here:
            ray.shutdown()
    merged = merge_databases(paths, db_path)
    diffs = diff_series({resolve_source(spec)[0]: spec for spec in models}, db_path, device, dtype,
                        options.get("bos", AUTO), force)
    if site:
        render_site(db_path, out_dir)
    report = BuildReport(db_path=Path(db_path), out_dir=Path(out_dir), model_ids=sorted(merged.taken), diffs=diffs)
    for p in passes:
        report.passes.update(p)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report
