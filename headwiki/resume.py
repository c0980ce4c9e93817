"""Resumable passes: a fingerprint of (pass, model weights, parameters, data, code) and a lookup of finished runs.

A pass called with skip_if_done=True returns a SkippedPass instead of recomputing when the database
already holds a finished run with the same fingerprint, so `headwiki build` is a no-op the second
time and resumes an interrupted build at the first pass that did not finish.

The code part of the fingerprint (``code=``) holds what the pass computes with: the headwiki package
version, the pass's registry (e.g. detector name -> version) and a digest of the pass's source files, so
a newly registered detector or an edited pass re-runs. Every run stores its fingerprint inputs
(``runs.provenance.fingerprint_inputs``), so :func:`decide` can say why a pass re-runs.
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


def source_digest(*packages: str) -> str:
    """sha256 (16 hex) over the .py files of the named installed packages (e.g. "headwiki.detectors")."""
    import importlib

    digest = hashlib.sha256()
    for name in packages:
        for folder in importlib.import_module(name).__path__:
            for path in sorted(p for p in Path(folder).glob("*.py") if p.name != "cli.py"):
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint_inputs(pass_name: str, info: ModelInfo, params: Mapping[str, Any], data_key: str = "",
                       code: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything a pass's result depends on, as a JSON-able dict (hashed by :func:`fingerprint`)."""
    return json.loads(json.dumps({
        "pass": pass_name, "model": info.name, "revision": info.revision, "dtype": info.dtype,
        "params": params, "data": data_key, "headwiki": __version__, "code": dict(code or {}),
    }, sort_keys=True, default=str))


def fingerprint(pass_name: str, info: ModelInfo, params: Mapping[str, Any], data_key: str = "",
                code: Mapping[str, Any] | None = None) -> str:
    """sha256 (16 hex) over the pass, the model's weights revision, its parameters, a data key and the code."""
    return fingerprint_of(fingerprint_inputs(pass_name, info, params, data_key, code))


def fingerprint_of(inputs: Mapping[str, Any]) -> str:
    """sha256 (16 hex) of fingerprint inputs (:func:`fingerprint_inputs`)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diff_mapping(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """'+ added, - removed, ~ changed old->new' for two flat mappings."""
    parts = [f"+ {k}" for k in new if k not in old] + [f"- {k}" for k in old if k not in new]
    parts += [f"~ {k} {old[k]}->{new[k]}" for k in new if k in old and old[k] != new[k]]
    return ", ".join(parts)


_LABELS = {"revision": "model weights changed", "dtype": "dtype changed", "data": "data changed",
           "headwiki": "headwiki version changed"}


def explain_change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """Why a pass with fingerprint inputs ``new`` re-runs, given the last finished run's inputs ``old``."""
    if old is None:
        return "the last finished run predates recorded fingerprint inputs"
    reasons: list[str] = []
    for key in ("revision", "dtype", "data", "headwiki"):
        if old.get(key) != new.get(key):
            reasons.append(f"{_LABELS[key]} ({old.get(key)} -> {new.get(key)})")
    if old.get("params") != new.get("params"):
        reasons.append(f"parameters changed: {_diff_mapping(old.get('params') or {}, new.get('params') or {})}")
    old_code, new_code = old.get("code") or {}, new.get("code") or {}
    for key in sorted(set(old_code) | set(new_code)):
        a, b = old_code.get(key), new_code.get(key)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            reasons.append(f"{key} changed: {_diff_mapping(a, b)}")
        else:
            reasons.append(f"{key} changed ({a} -> {b})")
    return "; ".join(reasons) or "inputs differ"


def decide(db_path: str | Path, model_id: str, pass_name: str, inputs: Mapping[str, Any]) -> tuple[str | None, str]:
    """(run_id of a finished run with these fingerprint inputs, or None; and why the pass runs, as a phrase:
    "running, no finished run in the database" or "re-running, detector registry changed: + x")."""
    done = find_finished(db_path, model_id, pass_name, fingerprint_of(inputs))
    if done:
        return done, ""
    from headwiki.db.store import reading

    if not Path(db_path).exists():
        return None, "running, no finished run in the database"
    with reading(db_path) as con:
        rows = con.execute(
            "SELECT provenance->'$.fingerprint_inputs' FROM runs WHERE model_id = ? AND pass_name = ? "
            "AND status = 'finished' ORDER BY finished_at DESC LIMIT 1", [model_id, pass_name]).fetchall()
    if not rows:
        return None, "running, no finished run in the database"
    return None, "re-running, " + explain_change(json.loads(rows[0][0]) if rows[0][0] else None, inputs)


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
