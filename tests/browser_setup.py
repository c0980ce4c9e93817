"""Find (or, as root on Debian, install) the Chromium the browser tests drive; otherwise fail with one line.

The test command itself gets what it needs: README command 2 (`pytest -q`) works on a fresh Debian machine as root
(apt-get install -y chromium) and on a developer machine that has any Chromium (system package or
`playwright install chromium`). A machine with neither FAILS the browser tests with the command to run; they are
never skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence

INSTRUCTION = ("the browser tests need Chromium: run `apt-get install -y chromium` (Debian/Ubuntu, as root) or "
               "`.venv/bin/python -m playwright install chromium` (any OS, needs internet), then re-run pytest")
SYSTEM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser")


def find_chromium(candidates: Sequence[str] = SYSTEM_CANDIDATES, playwright_bundle: bool = True) -> str | None:
    """A usable Chromium executable: a system one, else playwright's downloaded one; None if there is none."""
    for name in candidates:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if playwright_bundle:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                bundled = p.chromium.executable_path
            if bundled and os.path.isfile(bundled):
                return bundled
        except Exception:  # playwright missing or its browser not downloaded
            return None
    return None


def apt_install_chromium(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> bool:
    """As root with apt-get: install Debian's chromium (what .ci/run did by hand). True when it ran cleanly."""
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if run(cmd, env=env, capture_output=True, text=True, timeout=900).returncode != 0:
            return False
    return True


def chromium_or_error(candidates: Sequence[str] = SYSTEM_CANDIDATES, install: bool = True,
                      playwright_bundle: bool = True) -> tuple[str | None, str]:
    """(executable, "") or (None, one-line instruction). Test workers running in parallel (pytest -n) install once:
    the install runs under an exclusive file lock and each worker looks again once it holds the lock."""
    found = find_chromium(candidates, playwright_bundle)
    if found is None and install:
        with exclusive_lock("headwiki-chromium-install"):
            found = find_chromium(candidates, playwright_bundle)
            if found is None and apt_install_chromium():
                found = find_chromium(candidates, playwright_bundle)
    return (found, "") if found else (None, INSTRUCTION)


@contextlib.contextmanager
def exclusive_lock(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process on this machine (a file in the temp directory; flock where
    available), so parallel test workers do one-time set-up once."""
    path = os.path.join(tempfile.gettempdir(), f"{name}.lock")
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no parallel set-up guard
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
