"""`headwiki toy train` writes a new folder by default (never the installed model), whole or not at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwiki.atomic_dir import MARKER
from headwiki.toy import MODEL_DIR


def toy_train(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "headwiki.cli", "toy", "train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def test_toy_train_refuses_a_foreign_folder_before_training(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    proc = toy_train(tmp_path, "--steps", "1", "--out", "mine")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "headwiki: error: --out mine is a non-empty directory that headwiki did not write: "
        "choose another --out or empty it yourself"]
    assert "toy train" not in proc.stderr  # no progress bar: refused before training
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_toy_train_default_is_a_new_folder_not_the_installed_model(tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in MODEL_DIR.iterdir()}
    proc = toy_train(tmp_path, "--steps", "1", "--seed", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "toy-run-seed3"
    assert json.loads(proc.stdout)["out"] == "toy-run-seed3"
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", MARKER} <= {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["toy-run-seed3"]  # no temporary sibling left behind
    assert json.loads((out / "metrics.json").read_text())["config"]["seed"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in MODEL_DIR.iterdir()} == before


@pytest.mark.slow
def test_a_time_budget_spent_before_the_first_step_still_trains_one_step() -> None:
    """A budget shorter than one step stopped before any step and died reading the loss (UnboundLocalError)."""
    from headwiki.toy.config import TrainConfig
    from headwiki.toy.train import train

    metrics = train(TrainConfig(steps=3, time_budget_s=1e-9, eval_every=0))
    assert metrics["steps_done"] == 1 and metrics["stopped_early_by_time_budget"] is True
    assert metrics["final_train_loss"] > 0
