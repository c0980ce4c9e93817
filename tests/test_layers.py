"""The layer rules (pyproject [tool.importlinter]) hold: application > passes > base; no pass imports the
application or the toy trainer. Checked by running the real `lint-imports` on the installed layout.

The installed package maps top-level folders into ``headwiki.*`` (pyproject ``package-dir``), which the
import graph builder cannot follow, so the test stages a copy of the sources in the installed layout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage(dest: Path) -> Path:
    """Copy every package's .py files into ``dest`` in the installed layout (headwiki/, headwiki/detectors/, ...)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = config["package-dir"]
    for package in config["packages"]:
        top = next(p for p in sorted(mapping, key=len, reverse=True) if package == p or package.startswith(p + "."))
        src = REPO / mapping[top] / Path(*package[len(top):].strip(".").split(".") if package != top else ())
        target = dest / Path(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for py in src.glob("*.py"):
            shutil.copy2(py, target / py.name)
    return dest


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "importlinter.cli"]
    return subprocess.run([*cmd, "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=300, env=env)


def test_import_layers_hold(tmp_path: Path) -> None:
    root = stage(tmp_path)
    assert (root / "headwiki" / "detectors" / "run.py").exists() and (root / "headwiki" / "db" / "store.py").exists()
    proc = lint_imports(root)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_a_pass_importing_the_application_or_the_trainer_is_caught(tmp_path: Path) -> None:
    """The check can fail: one added import in a pass breaks a contract."""
    root = stage(tmp_path)
    for extra, broken in (("from headwiki.build import build\n", "application > passes > base"),
                          ("from headwiki.toy.train import train\n", "no pass imports the toy model's trainer")):
        victim = root / "headwiki" / "ablation" / "groups.py"
        original = victim.read_text()
        victim.write_text(original + extra)
        proc = lint_imports(root)
        victim.write_text(original)
        assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout[-3000:]
        assert broken in proc.stdout.split("Broken contracts")[-1]
