"""Model identity (issue 17): two different models never share a model_id silently.

The id defaults to the directory's name, so two directories called `checkpoint` collide: the second is
refused before any compute, with the fix (NAME=SOURCE), and the database keeps the first model whole.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from headwiki.errors import HeadwikiError

ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
SMALL = {"n_seqs": 4, "seq_len": 4, "n_boot": 20, "batch_size": 4}


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from headwiki.random_models import write_random_model

    root = tmp_path_factory.mktemp("ident")
    a = write_random_model(root / "a" / "checkpoint", arch="gpt2", n_layers=2, n_heads=4, seed=0)
    b = write_random_model(root / "b" / "checkpoint", arch="gpt2", n_layers=1, n_heads=2, seed=1)
    return a, b


def _rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_same_name_different_weights_is_refused_before_compute(two_checkpoints: tuple[Path, Path], tmp_path: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    a, b = two_checkpoints
    db = tmp_path / "hw.duckdb"
    first = load_model(str(a), device="cpu")
    detect_model(first, db, **SMALL)
    before = _rows(db, "SELECT model_id, path, fingerprint, n_layers FROM models")
    assert before == [("checkpoint", str(a), first.info.fingerprint, 2)] and len(first.info.fingerprint) == 16
    n_heads_before = _rows(db, "SELECT count(*) FROM heads")
    capfd.readouterr()

    second = load_model(str(b), device="cpu")
    assert second.info.name == "checkpoint" and second.info.fingerprint != first.info.fingerprint
    with pytest.raises(HeadwikiError) as info:
        detect_model(second, db, **SMALL)
    message = str(info.value)
    assert "is a different model" in message and f"--model NAME={b}" in message and "\n" not in message
    assert "detect checkpoint" not in capfd.readouterr().err  # refused before the first forward pass
    assert _rows(db, "SELECT model_id, path, fingerprint, n_layers FROM models") == before
    assert _rows(db, "SELECT count(*) FROM heads") == n_heads_before
    assert _rows(db, "SELECT count(*) FROM runs") == [(1,)]

    from headwiki.ablation.run import ablate_model

    with pytest.raises(HeadwikiError, match="is a different model"):
        ablate_model(second, db, dataset="toy", max_items=4, n_boot=10, n_perm=10, groups=False, attribution=False)

    # the same directory again is the same model; the other one under its own name is a second model
    detect_model(load_model(str(a), device="cpu"), db, **SMALL)
    named = load_model(f"other-ckpt={b}", device="cpu")
    assert named.info.name == "other-ckpt" and named.info.path == str(b)
    detect_model(named, db, **SMALL)
    assert _rows(db, "SELECT model_id, n_layers FROM models ORDER BY model_id") == [("checkpoint", 2), ("other-ckpt", 1)]
    assert _rows(db, "SELECT model_id, count(*) FROM heads GROUP BY 1 ORDER BY 1") == [("checkpoint", 8), ("other-ckpt", 2)]


def test_the_cli_refuses_a_colliding_id_in_one_line(two_checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    from headwiki.db.store import transaction, write_model
    from headwiki.models import load_model

    a, b = two_checkpoints
    db = tmp_path / "hw.duckdb"
    with transaction(db) as con:
        write_model(con, load_model(str(a), device="cpu").info.as_dict())
    proc = subprocess.run([sys.executable, "-m", "headwiki.cli", "detect", "--model", str(b), "--db", str(db),
                           "--device", "cpu", "--n-seqs", "4", "--seq-len", "4"],
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: model id 'checkpoint'") and "--model NAME=" in lines[0]


@pytest.mark.parametrize("spec, expected", [
    ("=./x", "NAME=SOURCE with both parts"),
    ("name=", "NAME=SOURCE with both parts"),
    ("a\tb=toy", "printable characters"),
    ("x" * 300 + "=toy", "printable characters"),
])
def test_bad_names_are_refused(spec: str, expected: str) -> None:
    from headwiki.models import resolve_source

    with pytest.raises(HeadwikiError, match=expected):
        resolve_source(spec)


def test_names_resolve_for_toy_and_hub_ids() -> None:
    from headwiki.models import TOY_DIR, resolve_source

    assert resolve_source("toy") == ("toy", "toy", str(TOY_DIR))
    assert resolve_source("my toy=toy") == ("my toy", "toy", str(TOY_DIR))
    assert resolve_source("</script><script>alert(1)</script>=gpt2") == ("</script><script>alert(1)</script>", "hub", "gpt2")
