"""Outputs never destroy what headwiki did not write, and no user string is pasted into SQL.

Regression tests for two defects: `export --parquet DIR` emptied a folder of the user's files, and a
model directory's name was pasted into the SQL page's example query (injection: a quote crashed the
render; a UNION published the meta table)."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from headwiki.atomic_dir import MARKER
from headwiki.build import build
from headwiki.errors import HeadwikiError
from headwiki.export import export_parquet

SMALL_DETECT = {"n_seqs": 4, "seq_len": 10, "n_boot": 50}
SMALL_ABLATE = {"max_items": 12, "n_boot": 50, "n_perm": 50}
INJECTION = "a' UNION ALL SELECT key, value, 'X', 0 FROM meta --"


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> tuple[Path, Path]:
    """A build whose only model lives in a directory named like an SQL injection, plus one with a quote."""
    root = tmp_path_factory.mktemp("hostile")
    models = []
    for name in (INJECTION, "bob's-gpt2"):
        target = root / name
        shutil.copytree(random_gpt2_dir, target)
        models.append(str(target))
    db, out = root / "hw.duckdb", root / "site"
    import json

    from headwiki.ablation.synthetic import synthetic_items

    items = root / "words.jsonl"  # in the random model's vocabulary: English is all <unk> to it (refused)
    items.write_text("".join(json.dumps(it.as_dict()) + "\n" for it in synthetic_items(12, 250, seed=1)))
    build(models, db, out, device="cpu", dataset=str(items), detect_options=SMALL_DETECT, ablate_options=SMALL_ABLATE)
    return db, out


def test_model_ids_with_quotes_render_and_leak_nothing(hostile_build: tuple[Path, Path]) -> None:
    db, out = hostile_build
    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = sorted(r[0] for r in con.execute("SELECT model_id FROM models").fetchall())
        meta_keys = [r[0] for r in con.execute("SELECT key FROM meta").fetchall()]
    finally:
        con.close()
    assert ids == sorted([INJECTION, "bob's-gpt2"])
    sql_page = (out / "sql.html").read_text(encoding="utf-8")
    assert "schema_version" in meta_keys
    assert "schema_version" not in sql_page, "the meta table leaked into the SQL page"
    assert "What each metric means" in sql_page


def _user_folder(root: Path) -> Path:
    folder = root / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return folder


def test_export_refuses_a_folder_it_did_not_write(hostile_build: tuple[Path, Path], tmp_path: Path) -> None:
    db, _ = hostile_build
    folder = _user_folder(tmp_path)
    with pytest.raises(HeadwikiError, match="did not write"):
        export_parquet(db, folder)
    assert (folder / "notes.txt").read_text() == "my notes"
    assert (folder / "sub" / "data.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "no temp directory left behind"


def test_export_cli_on_dot_and_foreign_folder_is_one_line_exit_2(hostile_build: tuple[Path, Path], tmp_path: Path) -> None:
    db, _ = hostile_build
    folder = _user_folder(tmp_path)
    for cwd, arg in ((folder, "."), (tmp_path, "mine")):
        result = subprocess.run([sys.executable, "-m", "headwiki.cli", "export", "--db", str(db), "--parquet", arg],
                                cwd=cwd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "headwiki: error:" in result.stderr
        assert "Traceback" not in result.stderr
    assert (folder / "notes.txt").read_text() == "my notes" and (folder / "sub" / "data.csv").exists()


def test_export_rewrites_its_own_folder_world_readable(hostile_build: tuple[Path, Path], tmp_path: Path) -> None:
    db, _ = hostile_build
    out = tmp_path / "pq"
    first = export_parquet(db, out)
    assert (out / MARKER).exists()
    again = export_parquet(db, out)  # its own folder: replaced, not refused
    assert [p.name for p in first] == [p.name for p in again]
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode == 0o777 & ~_umask(), oct(mode)  # not mkdtemp's 0700: a web server can read it


def test_site_dir_is_world_readable_and_marked(hostile_build: tuple[Path, Path]) -> None:
    _, out = hostile_build
    assert (out / MARKER).exists()
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
