"""The detector registry: name -> (version, input kind, score function).

A detector turns the attention patterns of one batch into per-sequence scores. The pass
(:mod:`headwiki.detectors.run`) builds each input kind once, runs ONE batched forward per batch
capturing only ``hook_pattern``, and applies every detector that needs that input kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from headwiki.spec import SPEC, Metric, Spec

InputKind = Literal["repeat", "text", "random"]
INPUT_KINDS: tuple[InputKind, ...] = ("repeat", "text", "random")

INPUT_DESCRIPTIONS: dict[str, str] = {
    "repeat": "seeded random-token repeats [BOS, x_1..x_L, x_1..x_L] (x drawn without replacement from the tokenizer's ordinary vocabulary)",
    "text": "natural text windows [BOS, t_1..t_{2L}] (non-overlapping)",
    "random": "seeded random-token sequences [BOS, r_1..r_{2L}] (r drawn with replacement from the ordinary vocabulary)",
}


@dataclass(frozen=True)
class BatchMeta:
    """What a detector may need besides patterns and tokens.

    half_len: L, the length of one copy in a repeat sequence (positions 1..L and L+1..2L).
    """

    half_len: int
    delimiters: torch.Tensor | None = None  # bool [d_vocab]: the tokenizer's delimiter tokens (detectors/delimiter.py)


ScoreFn = Callable[[torch.Tensor, torch.Tensor, BatchMeta], torch.Tensor]
# reduce: per-sequence output over all sequences [n, n_layers, n_heads, ...] ->
#   (per-sequence columns {name: [n, n_layers, n_heads]} to bootstrap, fixed columns {name: [n_layers, n_heads]})
ReduceFn = Callable[[torch.Tensor], tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class Detector:
    """One head detector.

    fn(patterns [b, n_layers, n_heads, s, s], tokens [b, s], meta) -> per-sequence scores
    [b, n_layers, n_heads] (or [b, n_layers, n_heads, k] for profile detectors with a `reduce`).
    metrics: the declarations (headwiki.spec.Metric) of the columns it produces — one named like the
    detector without a `reduce`; with one, one per column the reduce returns.
    """

    name: str
    version: str
    needs: InputKind
    fn: ScoreFn
    metrics: tuple[Metric, ...]
    reduce: ReduceFn | None = field(default=None, compare=False)

    @property
    def description(self) -> str:
        return "; ".join(m.description for m in self.metrics)

    def columns(self, per_seq: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Named per-sequence columns (bootstrapped by the pass) and fixed columns (stored as is)."""
        if self.reduce is None:
            return {self.name: per_seq}, {}
        return self.reduce(per_seq)


class Registry:
    """An ordered set of detectors with unique names."""

    def __init__(self, spec: Spec | None = None) -> None:
        self._items: dict[str, Detector] = {}
        self._spec = spec  # where the detectors' metric declarations go (the global registry: headwiki.spec.SPEC)

    def register(self, detector: Detector) -> Detector:
        """Add `detector`; a second detector with the same name is an error."""
        if detector.needs not in INPUT_KINDS:
            raise ValueError(f"detector {detector.name!r}: needs must be one of {INPUT_KINDS}, got {detector.needs!r}")
        if detector.name in self._items:
            raise ValueError(f"a detector named {detector.name!r} is already registered")
        if detector.reduce is None and [m.name for m in detector.metrics] != [detector.name]:
            raise ValueError(f"detector {detector.name!r} must declare exactly one metric named {detector.name!r}")
        if self._spec is not None:
            for m in detector.metrics:
                self._spec.add_metric(m)
        self._items[detector.name] = detector
        return detector

    def unregister(self, name: str) -> Detector:
        """Remove and return the detector called `name` (tests and plugins that add one temporarily)."""
        if name not in self._items:
            raise KeyError(f"no detector named {name!r}; known: {', '.join(self._items)}")
        detector = self._items.pop(name)
        if self._spec is not None:
            for m in detector.metrics:
                self._spec.remove(m.name)
        return detector

    def get(self, name: str) -> Detector:
        if name not in self._items:
            raise KeyError(f"no detector named {name!r}; known: {', '.join(self._items)}")
        return self._items[name]

    def names(self) -> list[str]:
        return list(self._items)

    def needing(self, kind: InputKind) -> list[Detector]:
        return [d for d in self._items.values() if d.needs == kind]

    def __iter__(self) -> Iterator[Detector]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


REGISTRY = Registry(SPEC)


def register(detector: Detector) -> Detector:
    """Register into the global registry (used by the detector modules at import time)."""
    return REGISTRY.register(detector)


PLUGINS_ENV = "HEADWIKI_PLUGINS"
NOT_DETECTOR_MODULES = frozenset({"cli", "run"})  # the command and the pass: they use the registry, add nothing


def default_registry() -> Registry:
    """The global registry with every built-in detector and every plugin imported and registered.

    Built-ins: every module of this package (a new detector is one new file here). Plugins: the modules
    named in $HEADWIKI_PLUGINS (comma-separated, importable names) and the entry points of the group
    ``headwiki.plugins``; each registers its detectors (and declares its metrics and roles) on import.
    """
    import importlib
    import os
    import pkgutil
    from importlib.metadata import entry_points

    import headwiki.detectors as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name in NOT_DETECTOR_MODULES:
            continue
        importlib.import_module(f"{package.__name__}.{info.name}")
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            from headwiki.errors import HeadwikiError

            raise HeadwikiError(f"plugin {name!r} from ${PLUGINS_ENV} cannot be imported ({exc}): "
                                "put its folder on PYTHONPATH or fix the name") from None
    for ep in entry_points(group="headwiki.plugins"):
        ep.load()
    return REGISTRY
