"""Write a directory whole or not at all: build it in a temporary sibling, then swap it into place.

Only a directory headwiki wrote is ever replaced: every directory written through :func:`replaced_dir`
carries a marker file, and an existing non-empty directory without that marker is refused with one
line (nothing is moved, nothing deleted).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headwiki.errors import HeadwikiError

MARKER = ".headwiki-written"
LEGACY_MARKERS = (".headwiki-site",)  # what sites from earlier versions carry


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_replaceable(out: Path, option: str = "--out") -> Path:
    """Resolve ``out`` and refuse it unless it is absent, empty, or a directory headwiki wrote.

    Returns the resolved path (so ``.`` or ``..`` become real names that can be swapped)."""
    resolved = Path(out).expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise HeadwikiError(f"{option} {out} is a file: pass a directory path")
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve() or resolved == Path.cwd().resolve():
        if resolved.is_dir() and any(resolved.iterdir()):
            raise HeadwikiError(f"{option} {out} is the current, home or root directory: pass a new folder such as {option} ./out")
    if resolved.is_dir() and any(resolved.iterdir()) and not any((resolved / m).exists() for m in (MARKER, *LEGACY_MARKERS)):
        raise HeadwikiError(f"{option} {out} is a non-empty directory that headwiki did not write: "
                            f"choose another {option} or empty it yourself")
    if resolved.parent.exists() and not os.access(resolved.parent, os.W_OK | os.X_OK):
        raise HeadwikiError(f"{option} {out}: cannot write in {resolved.parent} (permission denied): choose another {option}")
    return resolved


@contextmanager
def replaced_dir(out: Path, option: str = "--out") -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out`` to fill. If the block succeeds it replaces ``out``
    whole (the old tree is moved aside, then deleted); if it raises, the temporary tree is deleted
    and ``out`` is left as it was. ``out`` must pass :func:`check_replaceable`; the result carries the
    marker and the usual directory mode (0777 minus the umask, not mkdtemp's 0700)."""
    out = check_replaceable(out, option)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = tmp.with_name(f"{tmp.name}.old")  # unique because tmp is
    try:
        yield tmp
        (tmp / MARKER).write_text("written by headwiki; safe to delete and re-create\n")
        tmp.chmod(0o777 & ~_umask())
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
