"""Negation minimal-pair items: schema, strict JSONL loading, dataset resolution and data hash.

An item is a two-alternative minimal pair (see docs/architecture.md and the ablation issue)::

    {"id": "cap-fr", "template": "capital", "affirmative": "The capital of France is",
     "negated": "The capital of France is not", "control": "The capital of France is also",
     "target": " Paris", "foil": " Rome"}

Prompts end right before the answer; candidates carry their leading space so that
``prompt + candidate`` is the full text. ``target`` is correct after the affirmative and
control prompts, ``foil`` after the negated prompt. ``template`` groups items that share a
sentence frame; statistics resample templates as clusters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from headwiki.errors import HeadwikiError

FIELDS: tuple[str, ...] = ("id", "template", "affirmative", "negated", "control", "target", "foil")
CONDITIONS: tuple[str, ...] = ("affirmative", "negated", "control")
BUILTIN: tuple[str, ...] = ("english", "toy", "multinli")
ENGLISH_PATH = Path(__file__).resolve().parent / "data" / "english.jsonl"


@dataclass(frozen=True)
class NegationItem:
    """One minimal pair; field meanings in the module docstring."""

    id: str
    template: str
    affirmative: str
    negated: str
    control: str
    target: str
    foil: str

    def prompt(self, condition: str) -> str:
        """The prompt of `condition` (affirmative | negated | control)."""
        return getattr(self, condition)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Dataset:
    """A resolved item set: its name (stored as `dataset` in the DB), items and where they came from."""

    name: str
    items: list[NegationItem]
    source: str
    description: str

    @property
    def hash(self) -> str:
        return data_hash(self.items)


def item_from_dict(obj: object, where: str) -> NegationItem:
    """Validate one decoded JSON object; `where` ("file.jsonl line 7") prefixes every error."""
    if not isinstance(obj, dict):
        raise HeadwikiError(f"{where}: expected a JSON object with fields {', '.join(FIELDS)}, got {type(obj).__name__}")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise HeadwikiError(f"{where}: missing field {missing[0]!r} (every item needs {', '.join(FIELDS)})")
    for field in FIELDS:
        value = obj[field]
        if not isinstance(value, str) or not value.strip():
            raise HeadwikiError(f"{where}: field {field!r} must be a non-empty string, got {value!r}")
    if obj["target"] == obj["foil"]:
        raise HeadwikiError(f"{where}: target and foil are both {obj['target']!r}: a minimal pair needs two different answers")
    for field in ("target", "foil"):
        if not obj[field].startswith(" "):
            raise HeadwikiError(
                f"{where}: {field} {obj[field]!r} must start with a space (prompt + candidate is the full text), e.g. ' Paris'"
            )
    return NegationItem(**{f: obj[f] for f in FIELDS})


def parse_items(lines: Iterable[str], source: str) -> list[NegationItem]:
    """Parse JSONL lines (blank lines allowed); any bad line raises HeadwikiError naming its line number."""
    items: list[NegationItem] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HeadwikiError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno}): fix or remove the line") from exc
        item = item_from_dict(obj, where)
        if item.id in seen:
            raise HeadwikiError(f"{where}: duplicate id {item.id!r} (first on line {seen[item.id]}): ids must be unique")
        seen[item.id] = lineno
        items.append(item)
    if not items:
        raise HeadwikiError(f"{source} contains no items: write one JSON object per line with fields {', '.join(FIELDS)}")
    return items


MAX_LINE_BYTES = 64 * 1024  # a negation item is a few hundred bytes


def load_jsonl(path: str | Path) -> list[NegationItem]:
    """Read and validate a JSONL item file."""
    path = Path(path)
    if not path.is_file():
        raise HeadwikiError(f"dataset file {path} does not exist: pass english, toy, multinli or a JSONL file")
    lines: list[str] = []
    with path.open("rb") as handle:  # line by line, so one huge line is refused before it is held whole
        for lineno, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise HeadwikiError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES // 1024} KB: "
                                    "one negation item per line, each a short JSON object")
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise HeadwikiError(f"{path}:{lineno} is not UTF-8 text: save the JSONL file as UTF-8") from None
    return parse_items(lines, str(path))


def data_hash(items: list[NegationItem]) -> str:
    """sha256 (16 hex digits) of the items' canonical JSON: identifies the data a run used."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item.as_dict(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def toy_items() -> list[NegationItem]:
    """The embedded toy model's held-out negation items (entities never seen negated in training),
    from the world it was trained on (not the ablation seed, which only draws subsets and resamples)."""
    from headwiki.toy import world_seed
    from headwiki.toy.world import negation_items

    items = negation_items(seed=world_seed(), split="heldout")
    return [item_from_dict(obj, f"toy item {i}") for i, obj in enumerate(items)]


def default_dataset(model: str) -> str:
    """The negation dataset a model gets when --dataset is not given (ablate and build): the toy world's
    facts for the toy model (its word-level tokenizer cannot read English), English otherwise. `model` is a
    --model value ('toy', 'my-id=toy', a path or hub id) or a ModelInfo.source."""
    from headwiki.checkpoints import is_toy_run
    from headwiki.models import TOY_NAME, split_model_id

    source = split_model_id(model)[1]
    return "toy" if source == TOY_NAME or is_toy_run(source) else "english"  # a `toy train` run or checkpoint: toy too


BUILTIN_DATASETS: tuple[str, ...] = ("english", "toy", "multinli")


def check_dataset_spec(spec: str) -> None:
    """Validate a --dataset value without downloading anything: a built-in name, or a JSONL file whose
    items parse (read and checked now, so a bad file fails before any pass runs)."""
    if spec in BUILTIN_DATASETS:
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise HeadwikiError(f"unknown dataset {spec!r}: use english, toy, multinli or the path of a JSONL file")
    load_jsonl(path)


def resolve_dataset(spec: str, seed: int = 0, max_items: int | None = None) -> Dataset:
    """english | toy | multinli | path to a JSONL file -> Dataset (errors are one-line HeadwikiErrors).

    `max_items` keeps a seeded random subset (template clusters kept intact by sampling items, not templates).
    """
    if spec == "english":
        if not ENGLISH_PATH.is_file():
            raise HeadwikiError(f"the built-in english dataset is missing ({ENGLISH_PATH}): reinstall headwiki or pass --dataset FILE")
        ds = Dataset("english", load_jsonl(ENGLISH_PATH), str(ENGLISH_PATH),
                     "hand-written English minimal pairs shipped with headwiki (ablation/data/english.jsonl)")
    elif spec == "toy":
        from headwiki.toy import world_seed

        seed_of_world = world_seed()
        ds = Dataset("toy", toy_items(), f"headwiki.toy.world.negation_items(seed={seed_of_world}, split='heldout')",
                     f"toy-world held-out negation facts (world seed {seed_of_world})")
    elif spec == "multinli":
        from headwiki.ablation.multinli import load_multinli_items

        ds = Dataset("multinli", load_multinli_items(seed=seed), "nyu-mll/multi_nli validation_matched",
                     "MultiNLI hypotheses with one 'not', as True/False minimal pairs (ablation/multinli.py)")
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise HeadwikiError(f"unknown dataset {spec!r}: use english, toy, multinli or the path of a JSONL file")
        ds = Dataset(f"file:{path.name}", load_jsonl(path), str(path.resolve()), f"user JSONL file {path.name}")
    if max_items is not None and max_items < len(ds.items):
        if max_items < 2:
            raise HeadwikiError(f"--max-items {max_items} is too small: use at least 2 items")
        import numpy as np

        keep = np.sort(np.random.default_rng(seed).choice(len(ds.items), size=max_items, replace=False))
        ds = Dataset(ds.name, [ds.items[i] for i in keep], ds.source, f"{ds.description}; seeded subset of {max_items}")
    return ds
