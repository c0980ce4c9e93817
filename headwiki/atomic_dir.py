"""Write a directory whole or not at all: build it in a temporary sibling, then swap it into place.

Only a directory headwiki wrote is ever replaced: every directory written through :func:`replaced_dir`
carries a marker file, and an existing non-empty directory without that marker is refused with one
line (nothing is moved, nothing deleted).

The swap is one atomic exchange (Linux renameat2 RENAME_EXCHANGE), so there is no moment without
`out`; where that call is missing it falls back to two renames, and the next run heals a crash
between them. Temporary siblings carry their writer's PID in their name (`.out.tmp-<pid>-...`), so
the next run deletes those whose writer is gone (killed renders leave no litter behind for long).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headwiki.crashpoint import pause_point
from headwiki.errors import HeadwikiError

MARKER = ".headwiki-written"
LEGACY_MARKERS = (".headwiki-site",)  # what sites from earlier versions carry
LEGACY_TMP_AGE_S = 24 * 3600  # temp siblings from versions without a PID in the name: removed after a day
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False when the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heal_and_clean(out: Path) -> list[Path]:
    """Put back `out` if a crash left it only as a `.old` sibling; delete temp siblings whose writer is gone.

    Only names headwiki makes (`.{out.name}.tmp-<pid>-*`) are touched; returns what was deleted."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.tmp-(?:(\d+)-)?[^/]*$")
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    siblings = sorted(p for p in out.parent.iterdir() if pattern.match(p.name) and p.is_dir() and not p.is_symlink())
    for path in siblings:
        pid = pattern.match(path.name).group(1)  # type: ignore[union-attr]
        if pid is not None and _alive(int(pid)):
            continue
        if pid is None and time.time() - path.stat().st_mtime < LEGACY_TMP_AGE_S:
            continue
        if path.name.endswith(".old") and not out.exists() and any((path / m).exists() for m in (MARKER, *LEGACY_MARKERS)):
            path.rename(out)  # a crash between the two fallback renames: the previous tree comes back
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


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
    heal_and_clean(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    old = tmp.with_name(f"{tmp.name}.old")  # unique because tmp is
    try:
        pause_point("tmp-dir")  # crash-safety tests kill the process here and at "swap" (headwiki.crashpoint)
        yield tmp
        (tmp / MARKER).write_text("written by headwiki; safe to delete and re-create\n")
        tmp.chmod(0o777 & ~_umask())
        pause_point("swap")
        if out.exists() and _exchange(tmp, out):
            old = tmp  # tmp now holds the previous tree
        else:
            if out.exists():
                out.rename(old)
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)
