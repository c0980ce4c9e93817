"""`headwiki build --executor ray`: one Ray task per model on a local Ray instance, shards merged, the same
database as the serial build row for row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from headwiki.build import build
from headwiki.executors import build_with_ray, shard_dir

from test_merge import TABLES, _table

OPTIONS = {
    "detect_options": {"n_seqs": 6, "seq_len": 6},
    "ablate_options": {"max_items": 24, "n_boot": 100, "n_perm": 100, "ablations": ("zero", "mean")},
    "validate_options": {"n_seqs": 4, "n_boot": 100, "n_perm": 100},
}
MODELS = ["a=toy", "b=toy"]


@pytest.mark.slow
def test_ray_build_equals_the_serial_build_row_for_row(tmp_path: Path) -> None:
    serial, distributed = tmp_path / "serial.duckdb", tmp_path / "ray.duckdb"
    build(MODELS, serial, tmp_path / "site-serial", site=False, device="cpu", **OPTIONS)
    report = build_with_ray(MODELS, distributed, tmp_path / "site-ray", device="cpu", **OPTIONS)
    assert report.model_ids == ["a", "b"] and set(report.passes) == {"a", "b"}
    assert sorted(p.name for p in shard_dir(distributed).glob("*.duckdb")) == ["0.duckdb", "1.duckdb"]
    for table in (*TABLES, "negation_baselines", "negation_groups", "role_validation", "head_metrics_long"):
        pd.testing.assert_frame_equal(_table(distributed, table), _table(serial, table), check_like=True, obj=table)
    assert (tmp_path / "site-ray" / "index.html").is_file()
    # resumable: a second ray build finds every pass finished in its shard
    again = build_with_ray(MODELS, distributed, tmp_path / "site-ray", device="cpu", **OPTIONS)
    assert {p for m in again.passes.values() for p in m.values()} == {"skipped"}
