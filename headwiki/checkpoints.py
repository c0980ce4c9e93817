"""Checkpoint series: which training run (series) and step a model is, read before any load (torch-free).

Two ways a model carries a series and a step:
* a local HF directory written by ``headwiki toy train --checkpoint-every N`` holds :data:`MARKER`
  (``{"series": "toy-run-seed0", "step": 200, "seed": 0}``); its model id is ``<series>@step<step>``;
* a hub spec ``REPO@REVISION`` (``EleutherAI/pythia-70m@step3000``): the revision is passed to the hub loader,
  the series is REPO and the step is read from a revision named ``step<N>`` (Pythia's branch names).
A final (non-checkpoint) toy run directory holds the marker with its seed only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from headwiki.errors import HeadwikiError

MARKER = "headwiki_model.json"
_STEP = re.compile(r"^step[-_]?(\d+)$")
_REV = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def checkpoint_id(series: str, step: int) -> str:
    """The model id of a checkpoint: 'toy-run-seed0@step200'."""
    return f"{series}@step{int(step)}"


def step_of_revision(revision: str) -> int | None:
    """'step3000' -> 3000 (Pythia's branch names); any other revision -> None."""
    m = _STEP.match(revision.strip())
    return int(m.group(1)) if m else None


def split_revision(spec: str) -> tuple[str, str | None]:
    """'REPO@REV' -> (REPO, REV); a spec without '@' -> (spec, None). One HeadwikiError line for an empty part."""
    if "@" not in spec:
        return spec, None
    repo, _, rev = spec.rpartition("@")
    if not repo or not rev or not _REV.match(rev):
        raise HeadwikiError(f"--model {spec!r}: use REPO@REVISION with both parts, e.g. --model EleutherAI/pythia-70m@step3000")
    return repo, rev


TOY_TRAINER = "headwiki toy train"


def is_toy_run(path: str | Path) -> bool:
    """A directory written by `headwiki toy train` (a run or one of its checkpoints): the toy tokenizer, so its
    natural text and negation items are the toy world's, as for the embedded toy model."""
    try:
        return Path(path).is_dir() and read_marker(path).get("trainer") == TOY_TRAINER
    except HeadwikiError:
        return False


def read_marker(directory: str | Path) -> dict[str, Any]:
    """The series/step/seed a model directory declares ({} when it has no marker). Bad marker -> HeadwikiError."""
    path = Path(directory) / MARKER
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise HeadwikiError(f"{path} is not valid JSON ({str(exc).splitlines()[0][:100]}): delete it or re-save the checkpoint") from None
    if not isinstance(data, dict):
        raise HeadwikiError(f"{path} must hold a JSON object with series, step, seed")
    out: dict[str, Any] = {}
    if isinstance(data.get("series"), str) and data["series"]:
        out["series"] = data["series"]
    if isinstance(data.get("trainer"), str):
        out["trainer"] = data["trainer"]
    for key in ("step", "seed"):
        if data.get(key) is not None:
            if not isinstance(data[key], int) or data[key] < 0:
                raise HeadwikiError(f"{path}: {key} must be a non-negative integer, got {data[key]!r}")
            out[key] = int(data[key])
    return out


def write_marker(directory: str | Path, *, series: str | None = None, step: int | None = None, seed: int | None = None,
                 trainer: str | None = None) -> None:
    """Write :data:`MARKER` into a model directory (keys with None left out)."""
    data = {k: v for k, v in (("series", series), ("step", step), ("seed", seed), ("trainer", trainer)) if v is not None}
    (Path(directory) / MARKER).write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
