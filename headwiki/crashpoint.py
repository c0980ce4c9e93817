"""Fault-injection points for the crash-safety tests (tests/test_crash_safety.py).

A test starts a real `headwiki` process with HEADWIKI_PAUSE_AT=<point> and HEADWIKI_PAUSE_FILE=<path>;
when the process reaches :func:`pause_point` with that name it writes its PID to the file and sleeps
until it is killed, so the test can `kill -9` it at exactly that moment (e.g. inside an open DB
transaction with every row written, or with a finished temporary site folder not yet swapped in).
Without HEADWIKI_PAUSE_AT (always, outside those tests) a pause point does nothing.

Points: "commit" (db.store.transaction, just before COMMIT), "tmp-dir" (atomic_dir.replaced_dir, the
empty temporary folder just made), "swap" (replaced_dir, the temporary folder complete, before the swap).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_POINT = "HEADWIKI_PAUSE_AT"
ENV_FILE = "HEADWIKI_PAUSE_FILE"


def pause_point(name: str) -> None:
    """Sleep here until killed when HEADWIKI_PAUSE_AT == name (announcing it in HEADWIKI_PAUSE_FILE)."""
    if os.environ.get(ENV_POINT) != name:
        return
    Path(os.environ[ENV_FILE]).write_text(f"{os.getpid()} {name}\n")
    while True:
        time.sleep(3600)
