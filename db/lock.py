"""One writer per database: passes take `<db>.lock` (an flock) before any expensive work.

A second pass on the same database waits for the first (saying once who holds the lock), then starts
its own work, so nothing computed is thrown away on a locked file, and a second build of the same
model finds the first one's finished runs and skips them. The lock is re-entrant within a process
(build -> detect -> ablate), released when the holder exits however it exits (the kernel drops an
flock with its process, kill -9 included), and the lock file is left in place (deleting it would race).
"""

from __future__ import annotations

import fcntl
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from headwiki.errors import HeadwikiError
from headwiki.progress import log

F = TypeVar("F", bound=Callable[..., Any])
POLL_S = 0.2
_held: dict[str, tuple[int, int]] = {}  # resolved lock path -> (fd, depth)
_guard = threading.Lock()


def lock_path(db_path: str | Path) -> Path:
    return Path(f"{db_path}.lock")


def holder(path: str | Path) -> str:
    """Who holds (or last held) the lock, as written by the holder: 'PID n: command (since ...)'."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "another process"
    return text.splitlines()[0][:300] if text else "another process"


DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB file


def check_db_target(db_path: str | Path) -> None:
    """Before any work: --db must be a writable DuckDB file, or a new name in an existing writable folder."""
    db = Path(db_path)
    parent = db.parent
    if not parent.is_dir():
        raise HeadwikiError(f"--db {db_path}: directory {parent} does not exist: create it first, or pass another --db")
    if db.is_dir():
        raise HeadwikiError(f"--db {db_path} is a directory: pass a file path such as {db / 'headwiki.duckdb'}")
    if db.exists():
        try:
            with db.open("rb") as handle:
                head = handle.read(12)
        except OSError as exc:
            raise HeadwikiError(f"cannot read --db {db_path} ({exc.strerror}): pass another --db") from None
        if head and head[8:12] != DUCKDB_MAGIC:
            raise HeadwikiError(f"--db {db_path} is not a DuckDB database: pass a headwiki database or a new file name")
        if not os.access(db, os.W_OK):
            raise HeadwikiError(f"--db {db_path} is read-only: make it writable, or pass another --db")
    if not os.access(parent, os.W_OK | os.X_OK):  # DuckDB also writes its journal (<db>.wal) beside the file
        raise HeadwikiError(f"--db {db_path}: cannot write in {parent} (permission denied): pass a --db in a writable folder")


def _open(db_path: str | Path) -> tuple[int, Path]:
    check_db_target(db_path)
    path = lock_path(db_path)
    parent = path.parent
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666), path
    except PermissionError:
        raise HeadwikiError(f"--db {db_path}: cannot write in {parent} (permission denied): pass a --db in a writable folder") from None
    except OSError as exc:
        raise HeadwikiError(f"--db {db_path}: cannot create the lock file {path} ({exc.strerror}): pass another --db") from None


@contextmanager
def write_lock(db_path: str | Path, what: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold the database's write lock for the block (re-entrant in one process).

    what: a short description written for other processes to read (e.g. 'detect toy').
    wait_s: None waits as long as the holder runs; a number fails after that many seconds with one
    line naming the holder."""
    key = str(lock_path(db_path).resolve())
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                fd, depth = _held[key]
                _held[key] = (fd, depth - 1)
        return
    fd, path = _open(db_path)
    try:
        _acquire(fd, path, db_path, wait_s)
        os.ftruncate(fd, 0)
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv and sys.argv[0] else "python"
        os.pwrite(fd, f"PID {os.getpid()}: {what} [{command}] (since {started})\n".encode(), 0)
        with _guard:
            _held[key] = (fd, 1)
        try:
            yield
        finally:
            with _guard:
                _held.pop(key, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, db_path: str | Path, wait_s: float | None) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    who = holder(path)
    if wait_s is not None and wait_s <= 0:
        raise HeadwikiError(f"database {db_path} is being written by {who}: wait for it to finish, or use another --db")
    log(f"database {db_path} is being written by {who}: waiting for it (Ctrl-C stops; no work is lost)")
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        time.sleep(POLL_S)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() > deadline:
                raise HeadwikiError(
                    f"database {db_path} is still being written by {holder(path)} after {wait_s:g} s: "
                    "wait for it to finish, or use another --db") from None


def locked_pass(pass_name: str) -> Callable[[F], F]:
    """Decorator for a pass entry point `fn(loaded, db_path, ...)`: the whole pass (its resume check,
    its compute and its write) runs under the database's write lock."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(loaded: Any, db_path: str | Path, *args: Any, **kwargs: Any) -> Any:
            with write_lock(db_path, f"{pass_name} {loaded.info.name}"):
                return fn(loaded, db_path, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
