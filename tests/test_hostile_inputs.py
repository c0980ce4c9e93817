"""Hostile and broken inputs (issue 17): each is one clear line, exit 2, and nothing is written.

Bad files and numbers are refused before the model loads; broken model directories are named as such
(no 'internet access' hint for a local directory, no traceback).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from headwiki.errors import HeadwikiError

ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("hostile-inputs")
    (root / "empty.txt").write_bytes(b"")
    (root / "blank.txt").write_text("\n\n   \n")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (root / "nul.txt").write_text("some text\x00more text\n")
    (root / "latin1.jsonl").write_bytes(json.dumps({"id": "caf\u00e9"}).encode("latin-1").replace(b"\\u00e9", b"\xe9") + b"\n")
    (root / "empty.jsonl").write_bytes(b"")
    (root / "huge.jsonl").write_text(json.dumps({"id": "x" * (1 << 20)}) + "\n")
    (root / "notdb.duckdb").write_text("this is not a database\n")
    return root


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "headwiki.cli", *args], capture_output=True, text=True, timeout=300,
                          env=ENV, cwd=cwd)


CASES = [
    (("detect", "--text-file", "empty.txt"), "holds no text"),
    (("detect", "--text-file", "blank.txt"), "holds no text"),
    (("detect", "--text-file", "binary.txt"), "is not UTF-8 text"),
    (("detect", "--text-file", "nul.txt"), "NUL bytes"),
    (("detect", "--n-seqs", "0"), "'--n-seqs': 0 is not in the range x>=2"),
    (("detect", "--batch-size", "0"), "'--batch-size': 0 is not in the range x>=1"),
    (("detect", "--seq-len", "-3"), "'--seq-len': -3 is not in the range"),
    (("detect", "--top", "-2"), "'--top': -2 is not in the range x>=1"),
    (("detect", "--db", "notdb.duckdb"), "--db notdb.duckdb is not a DuckDB database"),
    (("detect", "--db", "no/such/dir/x.duckdb"), "directory no/such/dir does not exist"),
    (("ablate", "--dataset", "latin1.jsonl"), "latin1.jsonl:1 is not UTF-8 text"),
    (("ablate", "--dataset", "empty.jsonl"), "contains no items"),
    (("ablate", "--dataset", "huge.jsonl"), "line longer than 64 KB"),
    (("ablate", "--n-boot", "0"), "'--n-boot': 0 is not in the range"),
    (("ablate", "--batch-size", "0"), "'--batch-size': 0 is not in the range"),
    (("ablate", "--max-items", "-1"), "'--max-items': -1 is not in the range"),
    (("ablate", "--db", "notdb.duckdb", "--dataset", "toy"), "is not a DuckDB database"),
    (("build", "--db", "no/such/dir/x.duckdb"), "directory no/such/dir does not exist"),
    (("query", "SELECT 1", "--db", "notdb.duckdb"), "notdb.duckdb"),
    (("serve", "--port", "-1"), "--port -1 is not a port"),
    (("serve", "--port", "70000"), "--port 70000 is not a port"),
]


@pytest.mark.parametrize("args, expected", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(inputs: Path, random_gpt2_dir: Path, args: tuple[str, ...], expected: str) -> None:
    before = sorted(p.name for p in inputs.rglob("*"))
    command, *rest = args
    extra = ["--model", str(random_gpt2_dir), "--device", "cpu"] if command in ("detect", "ablate", "build") else []
    if command in ("detect", "ablate") and "--db" not in rest:
        extra += ["--db", "new.duckdb"]
    if command == "serve":
        extra += ["--out", str(inputs)]
    proc = _run(inputs, command, *rest, *extra)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: ") and expected in lines[0], proc.stderr[-2000:]
    assert sorted(p.name for p in inputs.rglob("*")) == before  # no DB, no lock file, no folders


def _model_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("breakage, expected", [
    ("config_not_json", "config.json is not valid JSON"),
    ("no_model_type", "has no model_type"),
    ("no_weights", "has no weight files"),
    ("empty_weights", "is empty"),
    ("truncated_weights", "could not load the model in"),
])
def test_broken_model_directories_are_one_line_without_a_network_hint(random_gpt2_dir: Path, tmp_path: Path,
                                                                      breakage: str, expected: str) -> None:
    from headwiki.models import load_model

    model = _model_copy(random_gpt2_dir, tmp_path / "model")
    weights = model / "model.safetensors"
    config = model / "config.json"
    if breakage == "config_not_json":
        config.write_text('{"model_type": "gpt2", ')
    elif breakage == "no_model_type":
        data = json.loads(config.read_text())
        del data["model_type"]
        config.write_text(json.dumps(data))
    elif breakage == "no_weights":
        weights.unlink()
    elif breakage == "empty_weights":
        weights.write_bytes(b"")
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(HeadwikiError) as info:
        load_model(str(model), device="cpu")
    message = str(info.value)
    assert expected in message and "internet" not in message and "\n" not in message, message


# Read-only DB files and folders: tests/test_read_only_targets.py (the real CLI, as a user file modes stop).
