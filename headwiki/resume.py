"""Resumable passes: a fingerprint of (pass, model weights, parameters, data) and a lookup of finished runs.

A pass called with skip_if_done=True returns a SkippedPass instead of recomputing when the database
already holds a finished run with the same fingerprint, so `headwiki build` is a no-op the second
time and resumes an interrupted build at the first pass that did not finish.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwiki import __version__
from headwiki.models import ModelInfo


@dataclass(frozen=True)
class SkippedPass:
    """A pass that did not run because an identical finished run exists."""

    model_id: str
    pass_name: str
    run_id: str
    skipped: bool = True


def file_digest(path: str | Path) -> str:
    """sha256 (16 hex) of a file's bytes, for data given as a path."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def fingerprint(pass_name: str, info: ModelInfo, params: Mapping[str, Any], data_key: str = "") -> str:
    """sha256 (16 hex) over the pass, the model's weights revision, its parameters and a data key."""
    payload = {
        "pass": pass_name, "model": info.name, "revision": info.revision, "dtype": info.dtype,
        "params": params, "data": data_key, "headwiki": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_finished(db_path: str | Path, model_id: str, pass_name: str, fp: str) -> str | None:
    """run_id of a finished run of `pass_name` for `model_id` with fingerprint `fp`, else None."""
    from headwiki.db.store import reading

    if not Path(db_path).exists():
        return None
    with reading(db_path) as con:
        rows = con.execute(
            "SELECT run_id FROM runs WHERE model_id = ? AND pass_name = ? AND fingerprint = ? AND status = 'finished' "
            "ORDER BY finished_at DESC LIMIT 1",
            [model_id, pass_name, fp],
        ).fetchall()
    return rows[0][0] if rows else None
