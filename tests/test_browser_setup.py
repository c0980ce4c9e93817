"""The browser tests get their Chromium or fail with one line; they are never skipped."""

from __future__ import annotations

import os
import subprocess

from browser_setup import INSTRUCTION, apt_install_chromium, chromium_or_error, find_chromium


def test_a_machine_without_chromium_gets_one_line_saying_what_to_run() -> None:
    executable, problem = chromium_or_error(candidates=("/nonexistent/chromium",), install=False, playwright_bundle=False)
    assert executable is None and problem == INSTRUCTION
    assert "\\n" not in problem and "apt-get install -y chromium" in problem and "playwright install chromium" in problem


def test_this_machine_has_a_chromium_the_tests_can_launch() -> None:
    executable, problem = chromium_or_error()
    assert executable is not None, problem
    assert find_chromium() == executable
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "chromium" in version.stdout.lower()


def test_apt_install_runs_update_then_install_only_as_root() -> None:
    calls: list[list[str]] = []

    def record(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    ran = apt_install_chromium(run=record)
    if os.geteuid() == 0 and os.path.exists("/usr/bin/apt-get"):
        assert ran and calls == [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]]
    else:
        assert not ran and calls == []
