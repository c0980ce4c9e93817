"""Commands that only read the database or the site never import torch or transformers.

Each command runs in a fresh interpreter under ``python -X importtime``, which logs every module as it is
imported (lazy imports inside the command included); the log must name neither torch nor transformers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "transformer_lens")
_IMPORT_LINE = re.compile(r"^import time:\s*\d+\s*\|\s*\d+\s*\|\s*(\S+)\s*$")


def _env() -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "COLUMNS": "160", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def imported_modules(stderr: str) -> set[str]:
    """Top-level module names from a ``-X importtime`` log."""
    return {m.group(1).split(".")[0] for line in stderr.splitlines() if (m := _IMPORT_LINE.match(line))}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "headwiki.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=_env())


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, random_gpt2_dir: Path) -> Path:
    """A real database: the detector pass on a random-init 2-layer GPT-2 (in this process)."""
    from headwiki.detectors.run import detect_model
    from headwiki.models import load_model

    path = tmp_path_factory.mktemp("fast") / "hw.duckdb"
    detect_model(load_model(str(random_gpt2_dir), device="cpu"), path, n_seqs=4, seq_len=6)
    return path


def test_importtime_parser_sees_torch_when_it_is_imported() -> None:
    """The check below can fail: a command that does load a model shows torch in the same log."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch"], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert "torch" in imported_modules(proc.stderr)


@pytest.mark.parametrize("args", [
    ("--help",),
    ("query", "SELECT 1 AS one", "--csv"),
    ("query", "SELECT label FROM heads ORDER BY layer, head LIMIT 2", "--json"),
    ("heads", "--model", "rand-gpt2", "--limit", "3"),
    ("heads", "--model", "rand-gpt2", "--role", "previous_token", "--csv"),
], ids=["help", "query-select-1", "query-heads", "heads", "heads-role"])
def test_reading_commands_do_not_import_torch(db: Path, args: tuple[str, ...]) -> None:
    extra = () if args == ("--help",) else ("--db", str(db))
    proc = run_cli(*args, *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    heavy = imported_modules(proc.stderr) & set(HEAVY)
    assert not heavy, f"`headwiki {' '.join(args)}` imported {sorted(heavy)}"


def test_site_export_and_serve_do_not_import_torch(db: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = run_cli("site", "--db", str(db), "--out", str(site))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not imported_modules(proc.stderr) & set(HEAVY)
    assert (site / "index.html").exists()

    proc = run_cli("export", "--db", str(db), "--parquet", str(tmp_path / "pq"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not imported_modules(proc.stderr) & set(HEAVY)
    assert (tmp_path / "pq" / "heads.parquet").exists()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "headwiki.cli", "serve", "--out", str(site),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        body = b""
        for _ in range(600):  # wait for the listening socket (no timing assertion: only a give-up bound)
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read()
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1][-2000:]
                time.sleep(0.1)
        assert b"<html" in body.lower()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert not imported_modules(err) & set(HEAVY)
