"""The one definition of every metric and role headwiki stores.

A :class:`Metric` declares one column of the `heads` table (or a per-ablation family of columns): its label,
unit, kind, direction, which statistics columns sit beside it, what data it needs and its version. A
:class:`Role` declares a label a head can hold: the metric that scores it, its threshold, what it is checked
against, what it does, what ablating it breaks, and the causal signature(s) that validate it.

Declarations live with the code that computes them (a detector file declares its metric and role; the
ablation and validation passes declare theirs) and register into :data:`SPEC`. Everything downstream reads
the declaration: the passes write it into the database with their results (the `metrics` and `roles`
tables), so the schema types, the long view, the wiki's labels, units, colours and formatting, the summary
tables, ``heads --role``, ranked groups, the confound cross-reference and the resume fingerprint all come
from it — and a database stays self-describing when the code that wrote it (a plugin detector) is absent.

This module is torch-free and imports nothing from the passes (base layer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Family = Literal["detector", "peer", "control", "causal", "negation", "attribution", "label"]
Kind = Literal["score", "delta", "estimate", "validation", "control", "flag", "label"]
Direction = Literal["up", "signed"]

FAMILY_ORDER: tuple[str, ...] = ("detector", "causal", "negation", "attribution", "peer", "control", "label")
STAT_SUFFIXES: tuple[str, ...] = ("_lo", "_hi", "_p", "_q")
# Units: how a value is read and shown. "points" are stored as fractions and shown x100.
UNITS: dict[str, str] = {
    "attention": "fraction of attention mass (0-1)",
    "norm_entropy": "normalized entropy (0 = one key, 1 = uniform)",
    "positions": "token positions",
    "points": "percentage points of accuracy (stored as a fraction)",
    "nats": "nats (log-probability difference)",
    "ratio": "share of the control preference",
    "share": "share of an effect (1 = all of it)",
    "count": "count",
    "enrichment": "times the base rate (1 = as often as the keys hold them)",
    "": "no unit",
}


@dataclass(frozen=True)
class Metric:
    """One metric column of `heads` (or, with ``per_ablation``, one column ``<name>_<ablation>`` per ablation kind).

    kind: score (a detector's measurement), delta (an ablation effect), estimate (an attribution estimate of
    a delta), validation (a causal share), control (the same score on a random-init model), flag (a boolean
    derived from other metrics), label (text). direction: "up" — larger means more of what it measures
    (sequential colours); "signed" — zero is the reference and the sign matters (diverging colours).
    ci / pq: whether ``<name>_lo``/``<name>_hi`` (95% CI) and ``<name>_p``/``<name>_q`` sit beside it.
    """

    name: str
    label: str
    family: Family
    kind: Kind
    unit: str
    description: str
    data: str = ""
    direction: Direction = "up"
    ci: bool = False
    pq: bool = False
    dtype: str = "DOUBLE"
    heatmap: bool = False
    version: str = "1"
    per_ablation: bool = False
    confound: str = ""  # what removing a head strong on this metric would break (the confound panel says it)
    strong_at: float | None = None  # a value this high alone makes the head strong on it (else: rank and role)
    control_for: str = ""  # this is <metric> measured on random tokens: high on both means positional, not content
    # this is <metric> with the BOS column excluded (renormalized over non-BOS keys); bos_share names the column
    # holding the attention mass on BOS over the same query rows (the role rule's BOS-parked flag reads both)
    bos_excluded_for: str = ""
    bos_share: str = ""
    order: int = 100  # display order within the family

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"metric {self.name!r}: unit {self.unit!r} is not one of {', '.join(UNITS)}")
        if self.family not in FAMILY_ORDER:
            raise ValueError(f"metric {self.name!r}: family {self.family!r} is not one of {', '.join(FAMILY_ORDER)}")

    @property
    def stat_columns(self) -> tuple[str, ...]:
        """The statistics columns declared beside the value: _lo/_hi with a CI, _p/_q with a test."""
        return tuple(f"{self.name}{s}" for s, on in zip(STAT_SUFFIXES, (self.ci, self.ci, self.pq, self.pq)) if on)

    def expand(self, ablation: str) -> Metric:
        """The concrete column of a per-ablation metric: name_<ablation>, labelled with the ablation."""
        if not self.per_ablation:
            raise ValueError(f"metric {self.name!r} is not declared per ablation")
        return replace(self, name=f"{self.name}_{ablation}", label=f"{self.label} ({ablation} ablation)",
                       per_ablation=False)

    def row(self) -> dict[str, Any]:
        """The spec fields the `metrics` table stores."""
        return {"label": self.label, "family": self.family, "kind": self.kind, "unit": self.unit,
                "direction": self.direction, "has_ci": self.ci, "has_pq": self.pq, "heatmap": self.heatmap,
                "version": self.version, "sort_order": self.order, "confound": self.confound or None,
                "strong_at": self.strong_at, "control_for": self.control_for or None}


@dataclass(frozen=True)
class Role:
    """A label a head can hold.

    family: detector (assigned from a detector score vs its threshold and random-init control), negation
    (assigned by the negation pass's rule) or ioi (assigned on IOI prompts, headwiki.detectors.ioi_roles; held in
    the same `roles` column). metric: the column that scores it (for negation roles a
    per-ablation metric name, read at the primary ablation).
    """

    name: str
    label: str
    family: Literal["detector", "negation", "ioi"]
    metric: str
    text: str  # what a head holding it does
    colour: str
    threshold: float | None = None
    rule: str = ""  # how it is assigned
    control: str = ""  # what it is checked against
    consequence: str = ""  # what ablating such a head breaks (confound panel)
    signatures: tuple[str, ...] = ()  # causal signatures the validation pass measures for it
    no_signature: str = ""  # why it has none (said on its page instead of implying one)
    citation: str = ""
    version: str = "1"
    order: int = 100

    def row(self) -> dict[str, Any]:
        """The fields the `roles` table stores."""
        out = asdict(self)
        out["role"] = out.pop("name")
        out["signatures"] = list(self.signatures)
        out["sort_order"] = out.pop("order")
        return out


@dataclass
class Spec:
    """The registry of declared metrics and roles (names unique; re-declaring an identical spec is a no-op)."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)

    def add_metric(self, metric: Metric) -> Metric:
        old = self.metrics.get(metric.name)
        if old is not None and old != metric:
            raise ValueError(f"a different metric named {metric.name!r} is already declared")
        self.metrics[metric.name] = metric
        return metric

    def add_role(self, role: Role) -> Role:
        old = self.roles.get(role.name)
        if old is not None and old != role:
            raise ValueError(f"a different role named {role.name!r} is already declared")
        self.roles[role.name] = role
        return role

    def remove(self, name: str) -> None:
        """Forget a metric and/or role (tests and plugins that add one temporarily)."""
        self.metrics.pop(name, None)
        self.roles.pop(name, None)

    def metric(self, column: str, ablations: Iterable[str] = ()) -> Metric | None:
        """The declaration of a column: a metric by name, or a per-ablation metric expanded for `ablations`."""
        if column in self.metrics and not self.metrics[column].per_ablation:
            return self.metrics[column]
        for m in self.metrics.values():
            if m.per_ablation:
                for a in ablations:
                    if column == f"{m.name}_{a}":
                        return m.expand(a)
        return None

    def roles_of(self, family: str) -> list[Role]:
        return sorted((r for r in self.roles.values() if r.family == family), key=lambda r: (r.order, r.name))

    def versions(self) -> dict[str, str]:
        """name -> version of every declaration (part of each pass's resume fingerprint)."""
        out = {f"metric:{m.name}": m.version for m in self.metrics.values()}
        out.update({f"role:{r.name}": r.version for r in self.roles.values()})
        return dict(sorted(out.items()))


SPEC = Spec()


def bos_parked_name(metric: str) -> str:
    """The column of the BOS-parked flag of a role metric (detectors/roles.py writes it, validation checks it)."""
    return f"{metric}_bos_parked"


def metric(m: Metric) -> Metric:
    """Declare a metric in :data:`SPEC` (at import time of the module that computes it)."""
    return SPEC.add_metric(m)


def role(r: Role) -> Role:
    """Declare a role in :data:`SPEC`."""
    return SPEC.add_role(r)


def metric_rows(specs: Mapping[str, Metric]) -> dict[str, dict[str, Any]]:
    """{column: spec fields} for the `metrics` table."""
    return {col: m.row() for col, m in specs.items()}
