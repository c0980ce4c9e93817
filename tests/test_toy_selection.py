"""`headwiki toy select`: the committed toy model is chosen among seed runs by the validation split only.

Run directories are real copies of the committed model with their metrics.json edited (seed and
scores), so the test exercises the real copy / rename / card rendering through the real CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from headwiki.atomic_dir import MARKER
from headwiki.toy import MODEL_DIR
from headwiki.toy.selection import RUN_FILES, choose


def _metrics(seed: int, validation: float, test: float, logit_diff: float = -1.0) -> dict[str, Any]:
    m = json.loads((MODEL_DIR / "metrics.json").read_text())
    m["config"]["seed"] = seed
    base = dict(m["negation_heldout"])
    m["negation_validation"] = dict(base, n_items=216, negated=validation, logit_diff_negated=logit_diff)
    m["negation_heldout"] = dict(base, negated=test)
    m.pop("selection", None)
    return m


def _run_dir(root: Path, m: dict[str, Any]) -> Path:
    d = root / f"s{m['config']['seed']}"
    d.mkdir()
    for f in RUN_FILES[:-1]:
        shutil.copy2(MODEL_DIR / f, d / f)
    (d / "metrics.json").write_text(json.dumps(m))
    return d


def _select(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwiki.cli", "toy", "select", *args],
                          capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_choose_uses_validation_then_logit_difference_never_the_test() -> None:
    runs = [_metrics(0, 0.90, 0.99), _metrics(1, 0.95, 0.80), _metrics(2, 0.95, 0.70, logit_diff=-3.0)]
    assert choose(runs) == 2  # same validation accuracy as seed 1, surer; the test column is ignored
    assert choose(runs[:2]) == 1
    assert choose([_metrics(0, 0.9, 0.9), _metrics(1, 0.9, 0.9)]) == 0  # exact tie: the first


def test_select_installs_the_best_run_with_its_selection_table(tmp_path: Path) -> None:
    runs = [_run_dir(tmp_path, _metrics(s, v, t)) for s, v, t in ((3, 0.91, 0.97), (4, 0.96, 0.88), (5, 0.93, 0.99))]
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier install")
    (out / MARKER).write_text("")  # an earlier install: headwiki wrote it, so it may be replaced
    proc = _select(*map(str, runs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chosen_seed"] == 4
    assert "seed 4: validation negated 0.960" in proc.stderr and "<- chosen" in proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["seed"] == 4
    assert [(r["seed"], r["chosen"]) for r in m["selection"]] == [(3, False), (4, True), (5, False)]
    assert [r["test_negated"] for r in m["selection"]] == [0.97, 0.88, 0.99]
    card = (out / "README.md").read_text()
    assert "## Selection" in card and "| 4 | 0.960 |" in card and "headwiki toy select" in card
    assert (out / "model.safetensors").read_bytes() == (runs[1] / "model.safetensors").read_bytes()
    assert not (out / "stale.txt").exists()  # the directory was replaced whole, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "s3", "s4", "s5"]  # no temp leftovers


def test_select_rejects_unfinished_runs_without_touching_out(tmp_path: Path) -> None:
    good = _run_dir(tmp_path, _metrics(0, 0.9, 0.9))
    broken = tmp_path / "s1"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("untouched")
    proc = _select(str(good), str(broken), "--out", str(out))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is not a finished toy run" in lines[0] and "headwiki toy train" in lines[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_select_rejects_two_runs_of_one_seed(tmp_path: Path) -> None:
    a = _run_dir(tmp_path, _metrics(0, 0.9, 0.9))
    b = tmp_path / "copy"
    shutil.copytree(a, b)
    proc = _select(str(a), str(b), "--out", str(tmp_path / "model"))
    assert proc.returncode == 2 and "share a seed" in proc.stderr
    assert not (tmp_path / "model").exists()
