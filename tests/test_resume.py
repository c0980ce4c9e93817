"""Resume sees code changes: the fingerprint holds the detector registry (names + versions), the pass's
source and the package version; a pass that re-runs says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from headwiki.db.store import reading
from headwiki.detectors.registry import REGISTRY, BatchMeta, Detector, default_registry
from headwiki.detectors.run import code_versions, detect_model
from headwiki.models import load_model
from headwiki.spec import Metric
from headwiki.resume import SkippedPass, explain_change


def max_attention_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """patterns [b, n_layers, n_heads, s, s] -> [b, n_layers, n_heads]: mean over rows of the row's largest weight."""
    return patterns.amax(-1).mean(-1)


def test_a_newly_registered_detector_makes_detect_rerun_and_say_why(
        random_gpt2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.duckdb"
    loaded = load_model(str(random_gpt2_dir), device="cpu")
    opts = {"n_seqs": 4, "seq_len": 6, "skip_if_done": True}
    first = detect_model(loaded, db, **opts)
    assert not isinstance(first, SkippedPass)
    assert "running, no finished run in the database" in capsys.readouterr().err
    assert isinstance(detect_model(loaded, db, **opts), SkippedPass)
    assert "skipped" in capsys.readouterr().err

    default_registry()
    REGISTRY.register(Detector(name="toy_max_attention", version="1", needs="text", fn=max_attention_scores, metrics=(
        Metric("toy_max_attention", "max attention", "detector", "score", "attention",
               "mean of each query row's largest attention weight (test detector)", ci=True),)))
    try:
        again = detect_model(loaded, db, **opts)
        err = capsys.readouterr().err
        assert not isinstance(again, SkippedPass)
        assert "re-running, detector registry changed: + toy_max_attention" in err
        with reading(db) as con:
            values = [r[0] for r in con.execute("SELECT toy_max_attention FROM heads ORDER BY layer, head").fetchall()]
            prov = json.loads(con.execute("SELECT provenance FROM runs ORDER BY finished_at DESC LIMIT 1").fetchall()[0][0])
        assert len(values) == 8 and all(0 < v <= 1 for v in values)
        assert prov["fingerprint_inputs"]["code"]["detector registry"]["toy_max_attention"] == "1"
        assert isinstance(detect_model(loaded, db, **opts), SkippedPass)
    finally:
        REGISTRY.unregister("toy_max_attention")
    assert "toy_max_attention" not in code_versions()["detector registry"]


def test_explain_change_names_versions_params_and_package() -> None:
    old = {"revision": "a", "dtype": "float32", "data": "d", "headwiki": "0.1.0", "params": {"seed": 0, "n": 4},
           "code": {"detector registry": {"induction": "1", "gone": "1"}}}
    new = {"revision": "a", "dtype": "float32", "data": "d", "headwiki": "0.2.0", "params": {"seed": 1, "n": 4},
           "code": {"detector registry": {"induction": "2", "new": "1"}}}
    why = explain_change(old, new)
    assert "headwiki version changed (0.1.0 -> 0.2.0)" in why
    assert "parameters changed: ~ seed 0->1" in why
    assert "detector registry changed: + new, - gone, ~ induction 1->2" in why
    assert explain_change(None, new) == "the last finished run predates recorded fingerprint inputs"
