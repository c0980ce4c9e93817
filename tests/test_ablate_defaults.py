"""`headwiki ablate` picks the dataset the model can read, refuses one it cannot (mostly unknown tokens)
with one line before any forward pass, and says what it replaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwiki.ablation.items import default_dataset, resolve_dataset
from headwiki.ablation.scoring import MAX_UNKNOWN_RATE, bridge_encoder, unknown_token_rate
from headwiki.models import load_model


def hw(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], capture_output=True, text=True, timeout=600, env=env)


def test_build_and_ablate_share_one_default() -> None:
    from headwiki import build

    assert default_dataset("toy") == "toy" and default_dataset("gpt2") == "english"
    assert not hasattr(build, "default_dataset")  # one definition, in headwiki.ablation.items


def test_unknown_rate_of_english_through_the_toy_tokenizer_is_measured() -> None:
    bridge = load_model("toy", device="cpu").bridge
    encode, unk = bridge_encoder(bridge), bridge.tokenizer.unk_token_id
    english = unknown_token_rate(resolve_dataset("english").items, encode, unk)
    toy = unknown_token_rate(resolve_dataset("toy").items, encode, unk)
    assert english > MAX_UNKNOWN_RATE > toy == 0.0, (english, toy)


@pytest.mark.slow
def test_ablate_refuses_a_dataset_the_model_cannot_read(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    proc = hw("ablate", "--model", "toy", "--dataset", "english", "--db", str(db), "--device", "cpu")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: dataset english: "), proc.stderr
    assert "unknown to toy's tokenizer (limit 20%)" in lines[0] and "--dataset toy" in lines[0]
    assert not db.exists()


@pytest.mark.slow
def test_ablate_toy_defaults_to_toy_data_and_says_what_it_replaces(tmp_path: Path) -> None:
    db = tmp_path / "hw.duckdb"
    args = ("ablate", "--model", "toy", "--db", str(db), "--device", "cpu", "--max-items", "24", "--n-boot", "100",
            "--ablation", "zero", "--no-groups", "--no-attribution")
    first = hw(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "toy on toy: clean baselines" in first.stdout
    assert "replacing" not in first.stderr
    second = hw(*args, "--seed", "1")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "ablate toy: replacing the negation results of run " in second.stderr and "(dataset toy, 24 items" in second.stderr
    from headwiki.db.store import reading

    with reading(db) as con:
        prov = [json.loads(r[0]) for r in con.execute("SELECT provenance FROM runs ORDER BY finished_at").fetchall()]
    assert prov[-1]["dataset"] == "toy" and prov[-1]["unknown_token_rate"] == 0.0
