"""`headwiki build`: detect -> ablate -> validate -> site for each model into one DB and one site, resumably.

Checkpoints of one training series built together are also diffed step to step (`headwiki diff` of consecutive steps,
earlier -> later), so the site gets a diff page per training interval beside the timeline.

Each pass skips itself when a finished run with the same parameters and data hash is already in
the database (unless force=True), so re-running a build is a no-op and an interrupted build
resumes at the first pass that did not finish.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwiki.atomic_dir import check_replaceable
from headwiki.db.lock import check_db_target, write_lock
from headwiki.models import load_model, resolve_source
from headwiki.progress import log
from headwiki.start_token import AUTO, check_choice


@dataclass
class BuildReport:
    """What a build did: per model and pass, 'ran' or 'skipped'; where outputs went; time taken."""

    db_path: Path
    out_dir: Path
    passes: dict[str, dict[str, str]] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)  # "A -> B": ran | skipped (consecutive checkpoints of a series)
    model_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # peak resident memory of this process (ru_maxrss)


def build(
    models: list[str],
    db_path: str | Path,
    out_dir: str | Path,
    dataset: str | Mapping[str, str] | None = None,
    device: str = "auto",
    dtype: str = "float32",
    force: bool = False,
    detect_options: dict[str, Any] | None = None,
    ablate_options: dict[str, Any] | None = None,
    validate_options: dict[str, Any] | None = None,
    site: bool = True,
    bos: str = AUTO,
) -> BuildReport:
    """Run every pass for every model (in order), then render the site from the database.

    dataset: one negation dataset for every model, or {model spec: dataset} (a model not in it, or None,
    gets :func:`headwiki.ablation.items.default_dataset`). bos: the start token choice (headwiki.start_token)."""
    check_choice(bos)
    check_build_inputs(models, db_path, out_dir if site else None, dataset)
    # one build at a time per database: a second one waits here, then skips what the first finished
    with write_lock(db_path, f"build {' '.join(models)}"):
        return _build_locked(models, db_path, out_dir, dataset, device, dtype, bos, force, detect_options, ablate_options,
                             validate_options, site)


def check_build_inputs(models: list[str], db_path: str | Path, out_dir: str | Path | None,
                       dataset: str | Mapping[str, str] | None) -> None:
    """Every check a build makes before its first expensive step (one HeadwikiError line each)."""
    from headwiki.ablation.items import check_dataset_spec, default_dataset
    from headwiki.ablation.scoring import check_local_tokenizer_reads

    check_db_target(db_path)  # the cheapest check first
    if out_dir is not None:
        check_replaceable(Path(out_dir))  # a site it could not write would throw every pass's work away
    for spec in models:  # a bad --model or --dataset fails before any pass runs for any model
        name, source, path = resolve_source(spec)
        check_dataset_spec(_dataset_for(spec, dataset))
        if source in ("toy", "local") and _dataset_for(spec, dataset) != "multinli":  # tokenizer on disk: check it reads the items
            check_local_tokenizer_reads(path, name, _dataset_for(spec, dataset), default_dataset(spec))


def _dataset_for(spec: str, dataset: str | Mapping[str, str] | None) -> str:
    from headwiki.ablation.items import default_dataset

    chosen = dataset.get(spec) if isinstance(dataset, Mapping) else dataset
    return chosen or default_dataset(spec)


def _build_locked(
    models: list[str], db_path: str | Path, out_dir: str | Path, dataset: str | Mapping[str, str] | None, device: str,
    dtype: str, bos: str, force: bool, detect_options: dict[str, Any] | None, ablate_options: dict[str, Any] | None,
    validate_options: dict[str, Any] | None, site: bool,
) -> BuildReport:
    from headwiki.ablation.run import ablate_model
    from headwiki.ablation.validation import validate_model
    from headwiki.detectors.run import detect_model
    from headwiki.wiki.render import render_site

    started = time.perf_counter()
    report = BuildReport(db_path=Path(db_path), out_dir=Path(out_dir))
    for spec in models:
        log(f"[bold]model {spec}[/bold]: loading")
        loaded = load_model(spec, device=device, dtype=dtype, bos=bos)
        model_id = loaded.info.name
        report.model_ids.append(model_id)
        detected = detect_model(loaded, db_path, skip_if_done=not force, **(detect_options or {}))
        ablated = ablate_model(
            loaded, db_path, dataset=_dataset_for(spec, dataset), skip_if_done=not force, **(ablate_options or {})
        )
        validated = validate_model(loaded, db_path, skip_if_done=not force, **(validate_options or {}))
        report.passes[model_id] = {
            "detect": "skipped" if getattr(detected, "skipped", False) else "ran",
            "ablate": "skipped" if getattr(ablated, "skipped", False) else "ran",
            "validate": "skipped" if getattr(validated, "skipped", False) else "ran",
        }
        del loaded
    report.diffs = diff_series({resolve_source(spec)[0]: spec for spec in models}, db_path, device, dtype, bos, force)
    if site:
        render_site(db_path, out_dir)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report


def series_pairs(db_path: str | Path, model_ids: list[str]) -> list[tuple[str, str]]:
    """(earlier, later) for consecutive steps of each checkpoint series among `model_ids` (models.series / models.step)."""
    from headwiki.db.store import reading

    with reading(db_path) as con:
        rows = con.execute("SELECT model_id, series, step FROM models WHERE series IS NOT NULL AND step IS NOT NULL "
                           "ORDER BY series, step").fetchall()
    by_series: dict[str, list[str]] = {}
    for model_id, series, _ in rows:
        if model_id in model_ids:
            by_series.setdefault(series, []).append(model_id)
    return [(ids[i], ids[i + 1]) for ids in by_series.values() for i in range(len(ids) - 1)]


def diff_series(specs: Mapping[str, str], db_path: str | Path, device: str, dtype: str, bos: str, force: bool,
                diff_options: dict[str, Any] | None = None) -> dict[str, str]:
    """Diff consecutive checkpoints of every series among the built models ({model id: spec}); a pair already in
    model_diffs is skipped unless `force`. diff_options: keyword arguments of diff_models. Returns {"A -> B": "ran" |
    "skipped"}."""
    from headwiki.db.store import reading
    from headwiki.modeldiff.run import diff_models

    out: dict[str, str] = {}
    for a, b in series_pairs(db_path, list(specs)):
        with reading(db_path) as con:
            done = con.execute("SELECT count(*) FROM model_diffs WHERE model_a = ? AND model_b = ?", [a, b]).fetchall()[0][0]
        if done and not force:
            log(f"diff {a} -> {b}: skipped, already in the database (--force re-runs)")
            out[f"{a} -> {b}"] = "skipped"
            continue
        diff_models(load_model(specs[a], device=device, dtype=dtype, bos=bos),
                    load_model(specs[b], device=device, dtype=dtype, bos=bos), db_path, **(diff_options or {}))
        out[f"{a} -> {b}"] = "ran"
    return out
