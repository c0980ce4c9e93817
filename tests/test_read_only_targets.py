"""Read-only databases and folders, tested as a user whom file modes stop (issue 17).

Root ignores file modes, so under root (CI) the real CLI runs as uid 65534 through `setpriv` (or, where
that user cannot reach this interpreter or checkout, as root without the capabilities that override file
modes). Every command that writes -- detect / ablate / validate / build into a read-only DB file or a
read-only folder, site --out and export --parquet into a read-only folder -- must refuse with one line,
exit 2, before any model loads, and leave every file as it was (bytes and mtime) with nothing added.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
NOBODY = 65534
RO_FILE, RO_DIR, RW_DIR = 0o444, 0o555, 0o777


def _probe(prefix: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-c", "import headwiki.cli"], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**ENV, "HOME": str(cwd)})


def unprivileged(cwd: Path) -> list[str]:
    """The command prefix that runs a process as someone file modes stop ([] when this is not root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without `setpriv` (util-linux): install it so the read-only tests can drop root")
    nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if _probe(nobody, cwd).returncode == 0:
        return nobody
    # uid 65534 cannot reach this interpreter or checkout (e.g. both under /root): stay uid 0, but without the
    # capabilities that let root ignore file modes (the files here belong to root and deny their owner writes)
    no_override = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all"]
    probe = _probe(no_override, cwd)
    assert probe.returncode == 0, probe.stderr
    return no_override


@pytest.fixture(scope="module")
def written_db(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> Path:
    """A headwiki DB holding a detect run of the random 2x4 GPT-2 (what validate, site and export read)."""
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    db = tmp_path_factory.mktemp("ro-source") / "hw.duckdb"
    detect_model(load_model(str(random_gpt2_dir), device="cpu"), db, n_seqs=4, seq_len=4, n_boot=20)
    return db


@pytest.fixture
def workspace(random_gpt2_dir: Path) -> Iterator[Path]:
    """A folder every user can read (pytest's tmp_path is private to root): model, rw/ and ro/ inside."""
    root = Path(tempfile.mkdtemp(prefix="headwiki-ro-", dir="/tmp"))
    try:
        root.chmod(RW_DIR)
        shutil.copytree(random_gpt2_dir, root / "rand-gpt2")
        for path in (root / "rand-gpt2").rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "rand-gpt2").chmod(0o755)
        (root / "rw").mkdir()
        (root / "rw").chmod(RW_DIR)
        (root / "ro").mkdir()
        yield root
    finally:
        for path in [root, *root.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(root)


def _state(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path under root: (sha256 or 'dir', mtime_ns, mode)."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(root))] = (digest, info.st_mtime_ns, stat.S_IMODE(info.st_mode))
    return state


def _setup(root: Path, db: Path, case: str) -> None:
    """Lay out one case's files, then make its targets read-only."""
    from headwiki.atomic_dir import MARKER

    ro = root / "ro"
    if case == "ro-db-file":
        shutil.copyfile(db, root / "rw" / "hw.duckdb")
        (root / "rw" / "hw.duckdb").chmod(RO_FILE)
    elif case == "ro-dir-existing-db":  # a writable DB (and its lock file, from an earlier run) in a read-only folder
        shutil.copyfile(db, ro / "hw.duckdb")
        (ro / "hw.duckdb.lock").write_bytes(b"")
        for name in ("hw.duckdb", "hw.duckdb.lock"):
            (ro / name).chmod(0o666)
    elif case == "ro-dir-existing-output":  # a site/export folder headwiki wrote, in a read-only folder
        shutil.copyfile(db, root / "rw" / "hw.duckdb")
        (ro / "out").mkdir()
        (ro / "out" / MARKER).write_text("written by headwiki; safe to delete and re-create\n")
        (ro / "out" / "index.html").write_text("<p>the previous site</p>")
    elif case == "ro-dir-new-output":
        shutil.copyfile(db, root / "rw" / "hw.duckdb")
    elif case != "ro-dir-new-db":
        raise AssertionError(case)
    if (root / "rw" / "hw.duckdb").exists() and case != "ro-db-file":
        (root / "rw" / "hw.duckdb").chmod(0o644)  # readable by all, the DB itself is not the read-only target
    ro.chmod(RO_DIR)


def _words(root: Path) -> Path:
    from headwiki.ablation.synthetic import synthetic_items

    items = root / "words.jsonl"  # items in the random model's vocabulary
    items.write_text("".join(json.dumps(it.as_dict()) + "\n" for it in synthetic_items(8, 250, seed=1)))
    items.chmod(0o644)
    return items


M = ["--model", "./rand-gpt2", "--device", "cpu"]
CASES = [
    # (case, command line, expected in the one error line)
    ("ro-db-file", ["detect", *M, "--db", "rw/hw.duckdb"], "--db rw/hw.duckdb is read-only"),
    ("ro-db-file", ["ablate", *M, "--db", "rw/hw.duckdb", "--dataset", "words.jsonl"], "--db rw/hw.duckdb is read-only"),
    ("ro-db-file", ["validate", *M, "--db", "rw/hw.duckdb"], "--db rw/hw.duckdb is read-only"),
    ("ro-db-file", ["build", *M, "--db", "rw/hw.duckdb", "--dataset", "words.jsonl", "--out", "rw/site"],
     "--db rw/hw.duckdb is read-only"),
    ("ro-dir-new-db", ["detect", *M, "--db", "ro/hw.duckdb"], "--db ro/hw.duckdb: cannot write in ro (permission denied)"),
    ("ro-dir-new-db", ["build", *M, "--db", "ro/hw.duckdb", "--dataset", "words.jsonl", "--out", "rw/site"],
     "--db ro/hw.duckdb: cannot write in ro (permission denied)"),
    ("ro-dir-existing-db", ["detect", *M, "--db", "ro/hw.duckdb"], "--db ro/hw.duckdb: cannot write in ro (permission denied)"),
    ("ro-dir-existing-db", ["validate", *M, "--db", "ro/hw.duckdb"], "--db ro/hw.duckdb: cannot write in ro (permission denied)"),
    ("ro-dir-new-output", ["site", "--db", "rw/hw.duckdb", "--out", "ro/site"], "--out ro/site: cannot write in"),
    ("ro-dir-new-output", ["export", "--db", "rw/hw.duckdb", "--parquet", "ro/pq"], "--parquet ro/pq: cannot write in"),
    ("ro-dir-existing-output", ["site", "--db", "rw/hw.duckdb", "--out", "ro/out"], "--out ro/out: cannot write in"),
    ("ro-dir-existing-output", ["export", "--db", "rw/hw.duckdb", "--parquet", "ro/out"], "--parquet ro/out: cannot write in"),
    ("ro-dir-new-output", ["build", *M, "--db", "rw/new.duckdb", "--dataset", "words.jsonl", "--out", "ro/site"],
     "--out ro/site: cannot write in"),
]


@pytest.mark.parametrize("case, args, expected", CASES, ids=[f"{c}: {a[0]}" for c, a, _ in CASES])
def test_a_read_only_target_is_one_line_exit_2_and_nothing_changes(written_db: Path, workspace: Path, case: str,
                                                                    args: list[str], expected: str) -> None:
    _words(workspace)
    _setup(workspace, written_db, case)
    prefix = unprivileged(workspace)
    if prefix:  # the identity really cannot write there (else this test would prove nothing)
        denied = subprocess.run([*prefix, sys.executable, "-c", "open('ro/probe', 'w')"], cwd=workspace,
                                capture_output=True, text=True, timeout=60)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied.stderr
    before = _state(workspace)
    proc = subprocess.run([*prefix, sys.executable, "-m", "headwiki.cli", *args], cwd=workspace, capture_output=True,
                          text=True, timeout=300, env={**ENV, "HOME": str(workspace)})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("headwiki: error: "), proc.stderr[-3000:]
    assert expected in lines[0], lines[0]
    assert _state(workspace) == before  # bytes, mtimes and modes as they were; no DB, lock, WAL or folder added


def test_a_read_only_database_is_still_read_by_the_reading_commands(written_db: Path, workspace: Path) -> None:
    """A published, read-only DB in a read-only folder: query, heads and site read it and write nothing beside it."""
    shutil.copyfile(written_db, workspace / "ro" / "hw.duckdb")
    (workspace / "ro" / "hw.duckdb").chmod(RO_FILE)
    (workspace / "ro").chmod(RO_DIR)
    prefix = unprivileged(workspace)
    before = _state(workspace / "ro")
    run = [*prefix, sys.executable, "-m", "headwiki.cli"]
    kw = {"cwd": workspace, "capture_output": True, "text": True, "timeout": 300, "env": {**ENV, "HOME": str(workspace)}}
    query = subprocess.run([*run, "query", "SELECT count(*) AS n FROM heads", "--db", "ro/hw.duckdb", "--csv"], **kw)
    assert query.returncode == 0 and query.stdout.split() == ["n", "8"], query.stderr
    site = subprocess.run([*run, "site", "--db", "ro/hw.duckdb", "--out", "rw/site"], **kw)
    assert site.returncode == 0 and (workspace / "rw" / "site" / "index.html").exists(), site.stderr
    assert _state(workspace / "ro") == before
