"""One progress-bar helper: rich bars on stderr with counts and ETA (stdout stays for data)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

stderr_console = Console(stderr=True)


def make_progress() -> Progress:
    """A Progress that draws `description [bar] done/total elapsed ETA` on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=False,
    )


HEARTBEAT_S = 30.0  # when stderr is not a terminal (a log file, CI), a plain progress line this often


@contextmanager
def progress_task(description: str, total: int) -> Iterator["TaskHandle"]:
    """Context manager yielding a handle whose `advance(n)` moves one bar forward.

    On a terminal the bar redraws live; otherwise (rich draws nothing until the end there) a line
    `description: done/total, elapsed` is written every HEARTBEAT_S seconds while the task runs."""
    with make_progress() as progress:
        task_id = progress.add_task(description, total=total)
        stop = threading.Event()
        beat = None
        if not stderr_console.is_terminal:
            beat = threading.Thread(target=_heartbeat, args=(progress, task_id, description, stop), daemon=True)
            beat.start()
        try:
            yield TaskHandle(progress, task_id)
        finally:
            stop.set()
            if beat is not None:
                beat.join()


def _heartbeat(progress: Progress, task_id: int, description: str, stop: threading.Event) -> None:
    started = time.monotonic()
    while not stop.wait(HEARTBEAT_S):
        task = next((t for t in progress.tasks if t.id == task_id), None)
        done = int(task.completed) if task is not None else 0
        total = int(task.total or 0) if task is not None else 0
        log(f"{description}: {done}/{total} after {time.monotonic() - started:.0f} s")


class TaskHandle:
    """A thin handle to one bar of a rich Progress."""

    def __init__(self, progress: Progress, task_id: int) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task_id, n)

    def describe(self, description: str) -> None:
        self._progress.update(self._task_id, description=description)


def track(items: Iterable[T], description: str, total: int) -> Iterator[T]:
    """Iterate `items` while drawing a bar on stderr."""
    with progress_task(description, total) as bar:
        for item in items:
            yield item
            bar.advance()


def log(message: str) -> None:
    """A status line on stderr (never stdout, which carries data); one line, not wrapped at the console width."""
    stderr_console.print(message, highlight=False, soft_wrap=True)
