"""Bad input fails with one line before the first expensive step; `heads` sorts both ways; CSV lists are joined."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwiki.errors import HeadwikiError
from headwiki.models import resolve_source


def hw(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], capture_output=True, text=True, timeout=600, env=env)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: "), proc.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> Path:
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    path = tmp_path_factory.mktemp("val") / "hw.duckdb"
    detect_model(load_model(str(random_gpt2_dir), device="cpu"), path, n_seqs=4, seq_len=6)
    return path


def test_build_with_a_misspelled_dataset_fails_before_detect(tmp_path: Path, random_gpt2_dir: Path) -> None:
    db, site = tmp_path / "hw.duckdb", tmp_path / "site"
    line = one_line_error(hw("build", "--model", str(random_gpt2_dir), "--dataset", "multinl", "--db", str(db),
                             "--out", str(site), "--device", "cpu"))
    assert "unknown dataset 'multinl'" in line and "multinli" in line
    assert not db.exists() and not site.exists()


def test_build_refuses_a_dataset_the_model_cannot_read_before_detect(tmp_path: Path, random_gpt2_dir: Path) -> None:
    """English through the random model's word-level tokenizer is nearly all <unk>: refused before any pass."""
    from headwiki.build import build

    db, site = tmp_path / "hw.duckdb", tmp_path / "site"
    with pytest.raises(HeadwikiError, match=r"dataset english: \d+% of its tokens are unknown to rand-gpt2's tokenizer"):
        build([str(random_gpt2_dir)], db, site, device="cpu")
    assert not db.exists() and not site.exists()


def test_a_file_passed_as_model_is_named_as_a_file(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(HeadwikiError, match=r"is a file, not a model directory"):
        resolve_source(str(weights))
    with pytest.raises(HeadwikiError, match=r"does not exist"):
        resolve_source(str(tmp_path / "missing"))


def test_heads_sorts_ascending_and_descending(db: Path) -> None:
    from headwiki.detectors.cli import list_heads

    down = list_heads(str(db), "rand-gpt2", sort="bos_sink", columns="label,bos_sink")
    up = list_heads(str(db), "rand-gpt2", sort="bos_sink", columns="label,bos_sink", ascending=True)
    assert list(down["bos_sink"]) == sorted(down["bos_sink"], reverse=True)
    assert list(up["bos_sink"]) == sorted(up["bos_sink"])
    proc = hw("heads", "--model", "rand-gpt2", "--db", str(db), "--sort", "entropy", "--asc", "--limit", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert [r["entropy"] for r in rows] == sorted(up := [r["entropy"] for r in rows]) and len(up) == 2


def test_csv_writes_list_columns_joined_not_as_numpy_text(db: Path) -> None:
    proc = hw("query", "SELECT ['L1H5', 'L1H0'] AS heads, [1, 2] AS n, 'x' AS s", "--db", str(db), "--csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["heads,n,s", "L1H5;L1H0,1;2,x"]


def test_heads_role_names_what_the_database_holds(db: Path) -> None:
    from headwiki.detectors.cli import list_heads

    with pytest.raises(HeadwikiError, match=r"unknown role 'inducton' for 'rand-gpt2': its runs declared induction, previous_token, duplicate_token"):
        list_heads(str(db), "rand-gpt2", role="inducton")
    # a role of a pass that has not run on this model is not silently empty: the error says which pass declares it
    with pytest.raises(HeadwikiError, match=r"unknown role 'negation_supporter'.*headwiki ablate --model rand-gpt2"):
        list_heads(str(db), "rand-gpt2", role="negation_supporter")
    held = list_heads(str(db), "rand-gpt2", role="duplicate_token")  # declared; held by some heads or none
    assert all("duplicate_token" in list(r) for r in held["roles"])
