"""Every third-party package the installed code imports is declared in pyproject's dependencies."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name where they differ
DISTRIBUTION = {"jinja2": "jinja2", "yaml": "pyyaml", "sklearn": "scikit-learn", "transformer_lens": "transformer-lens"}


def imported_top_levels(files: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    # runtime dependencies, plus the optional extras a feature declares for itself (sandbox: marimo); never the test extra
    extras = [d for name, deps in config["project"].get("optional-dependencies", {}).items() if name != "test" for d in deps]
    declared = {_norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in [*config["project"]["dependencies"], *extras]}
    folders = set(config["tool"]["setuptools"]["package-dir"].values())
    files = [p for folder in folders for p in (REPO / folder).rglob("*.py")]
    assert len(files) > 40
    third_party = imported_top_levels(files) - set(sys.stdlib_module_names) - {"headwiki", "__future__"}
    missing = sorted(n for n in third_party if _norm(DISTRIBUTION.get(n, n)) not in declared)
    assert not missing, f"imported but not declared in pyproject [project] dependencies: {missing}"
