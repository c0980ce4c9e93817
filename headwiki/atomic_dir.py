"""Write a directory whole or not at all: build it in a temporary sibling, then swap it into place."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_dir(out: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out`` to fill. If the block succeeds it replaces ``out``
    whole (the old tree is moved aside, then deleted); if it raises, the temporary tree is deleted
    and ``out`` is left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = tmp.with_name(f"{tmp.name}.old")  # unique because tmp is
    try:
        yield tmp
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
