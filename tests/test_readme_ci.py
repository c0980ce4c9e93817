"""The README's two opening commands are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The first two fenced shell blocks of README.md (install+build, then tests)."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_commands_verbatim() -> None:
    install, tests = readme_commands()
    assert "headwiki build" in install and "pip install" in install
    assert "pytest" in tests
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert install in ci_lines, "README install command differs from .ci/run"
    assert tests in ci_lines, "README test command differs from .ci/run"


def test_readme_opens_with_the_commands() -> None:
    head = "\n".join((REPO / "README.md").read_text().splitlines()[:20])
    install, tests = readme_commands()
    assert install in head and tests in head
