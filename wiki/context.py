"""Read everything the site shows out of the database (read-only), once, into plain Python objects.

Metric columns are discovered from the `heads` table (numeric columns; `<m>_lo/_hi/_p/_q` siblings are its
CI and test statistics) and described by the `metrics` table, where each pass copied the metric's declaration
(headwiki.spec: label, unit, family, direction, order...); roles come from the `roles` table. No metric or role
name is spelled here: a database written with a plugin detector renders the same way without the plugin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from headwiki.db.schema import HEAD_KEY_COLUMNS
from headwiki.spec import FAMILY_ORDER, STAT_SUFFIXES
from headwiki.db.store import reading
from headwiki.errors import HeadwikiError
from headwiki.wiki import urls

NUMERIC_TYPES = ("DOUBLE", "BIGINT", "INTEGER", "FLOAT", "REAL", "SMALLINT", "HUGEINT", "DECIMAL", "UBIGINT")


@dataclass(frozen=True)
class MetricDoc:
    """One metric column of `heads` for one model, with what the `metrics` table says about it."""

    name: str
    label: str
    kind: str  # the declared family: detector | causal | negation | attribution | peer | control | label
    description: str
    data: str
    n: int | None
    has_ci: bool
    has_q: bool
    integer: bool
    unit: str = ""  # headwiki.spec.UNITS
    direction: str = "up"  # up | signed
    heatmap: bool = False  # shown as a layer x head heatmap on the model page
    role_kind: str = ""  # the declared kind: score | delta | estimate | validation | control | flag | label
    confound: str = ""  # what removing a head strong on it would break
    strong_at: float | None = None
    control_for: str = ""
    order: int = 100

    @property
    def is_accuracy_delta(self) -> bool:
        """A difference of accuracies (stored as a fraction, shown in points)."""
        return self.unit == "points"


@dataclass(frozen=True)
class RoleDoc:
    """One declared role (a `roles` row): what the wiki says and draws about it."""

    name: str
    label: str
    family: str  # detector | negation
    metric: str
    text: str
    colour: str
    threshold: float | None
    rule: str
    control: str
    consequence: str
    signatures: tuple[str, ...]
    no_signature: str
    citation: str
    held_in: str
    order: int


@dataclass
class ModelData:
    """Everything about one model the site renders."""

    model_id: str
    slug: str
    info: dict[str, Any]
    heads: pd.DataFrame  # one row per head, sorted by (layer, head)
    metrics: list[MetricDoc]
    examples: dict[tuple[int, int], list[dict[str, Any]]]
    baselines: pd.DataFrame
    items: pd.DataFrame
    effects: pd.DataFrame
    groups: pd.DataFrame
    runs: pd.DataFrame
    validation: pd.DataFrame = field(default_factory=pd.DataFrame)  # role_validation rows
    roles: dict[str, RoleDoc] = field(default_factory=dict)  # declared roles, display order
    edges: pd.DataFrame = field(default_factory=pd.DataFrame)  # head_edges rows (composition scores)
    top_examples: pd.DataFrame = field(default_factory=pd.DataFrame)  # head_top_examples rows
    ov_profile: pd.DataFrame = field(default_factory=pd.DataFrame)  # head_ov_profile rows (detectors/weights.py)

    @property
    def n_layers(self) -> int:
        return int(self.info.get("n_layers") or (self.heads["layer"].max() + 1))

    @property
    def n_heads(self) -> int:
        return int(self.info.get("n_heads") or (self.heads["head"].max() + 1))

    @property
    def has_negation(self) -> bool:
        return any(m.kind == "negation" for m in self.metrics)

    def metric(self, name: str) -> MetricDoc | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def role_holders(self) -> list[str]:
        """The `heads` columns that hold roles (a list of roles, or one role as the value), from the declarations."""
        return list(dict.fromkeys(r.held_in for r in self.roles.values() if r.held_in))

    def roles_of(self, row: Mapping[str, Any]) -> list[str]:
        """Every role one head (a `heads` row) holds, in holder order."""
        return head_roles(row, self.role_holders)

    def metrics_where(self, **fields: Any) -> list[MetricDoc]:
        """The metrics whose declared fields equal `fields` (e.g. kind="causal", role_kind="flag"), display order."""
        return [m for m in self.metrics if all(getattr(m, k) == v for k, v in fields.items())]


@dataclass
class SiteData:
    """The whole database as the site sees it."""

    db_name: str
    meta: dict[str, str]
    models: list[ModelData]
    runs: pd.DataFrame
    metric_columns: list[str] = field(default_factory=list)
    column_types: dict[str, str] = field(default_factory=dict)  # `heads` column -> DuckDB type
    cache: dict[str, Any] = field(default_factory=dict)  # derived values computed once per render

    @property
    def roles(self) -> dict[str, RoleDoc]:
        """Every role declared for any model (first declaration wins), in display order."""
        out: dict[str, RoleDoc] = {}
        for m in self.models:
            for name, r in m.roles.items():
                out.setdefault(name, r)
        return dict(sorted(out.items(), key=lambda kv: (kv[1].order, kv[0])))


def _fallback_label(name: str) -> str:
    """A readable label for a column whose writer declared none (a database from before declarations)."""
    return name.replace("_", " ")


def _sort_key(doc: MetricDoc) -> tuple[int, int, str]:
    family = FAMILY_ORDER.index(doc.kind) if doc.kind in FAMILY_ORDER else len(FAMILY_ORDER)
    return (family, doc.order, doc.name)


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def metric_doc(name: str, doc: Mapping[str, Any], *, has_ci: bool, has_q: bool, integer: bool = False) -> MetricDoc:
    """A MetricDoc from a `metrics` row (or a headwiki.spec.Metric.row() with description, data, n)."""
    n = doc.get("n")
    family = _text(doc.get("family")) or "detector"
    heat = doc.get("heatmap")
    order = doc.get("sort_order")
    return MetricDoc(
        name=name, label=_text(doc.get("label")) or _fallback_label(name), kind=family,
        description=_text(doc.get("description")), data=_text(doc.get("data")),
        n=None if n is None or pd.isna(n) else int(n), has_ci=has_ci, has_q=has_q, integer=integer,
        unit=_text(doc.get("unit")), direction=_text(doc.get("direction")) or "up",
        heatmap=bool(heat) if heat is not None and not pd.isna(heat) else family == "detector",
        role_kind=_text(doc.get("kind")), confound=_text(doc.get("confound")), strong_at=_opt_float(doc.get("strong_at")),
        control_for=_text(doc.get("control_for")), order=int(order) if order is not None and not pd.isna(order) else 100)


def discover_metrics(columns: list[tuple[str, str]], heads: pd.DataFrame, docs: pd.DataFrame) -> list[MetricDoc]:
    """Metric columns present for this model: numeric `heads` columns with at least one value.

    columns: (name, duckdb type) of `heads` in table order; docs: this model's `metrics` rows.
    """
    numeric = [c for c, t in columns if c not in HEAD_KEY_COLUMNS and t.upper().startswith(NUMERIC_TYPES)]
    names = set(numeric)
    doc_by = {r["metric"]: r for r in docs.to_dict("records")}
    out: list[MetricDoc] = []
    for col in numeric:
        base = next((col[: -len(s)] for s in STAT_SUFFIXES if col.endswith(s) and col[: -len(s)] in names), None)
        doc = doc_by.get(col, {})
        if base is not None or _text(doc.get("family")) == "label":
            continue
        if col not in heads.columns or heads[col].isna().all():
            continue
        out.append(metric_doc(
            col, doc,
            has_ci=f"{col}_lo" in names and f"{col}_hi" in names and heads[f"{col}_lo"].notna().any(),
            has_q=f"{col}_q" in names and heads[f"{col}_q"].notna().any(),
            integer=dict(columns).get(col, "").upper() in ("BIGINT", "INTEGER", "SMALLINT", "HUGEINT")))
    return sorted(out, key=_sort_key)


def _frame(con: Any, sql: str, params: list[Any]) -> pd.DataFrame:
    return con.execute(sql, params).df()


def _table_exists(con: Any, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()[0][0])


def _unique_slugs(model_ids: list[str]) -> dict[str, str]:
    """Slugs for model ids, made unique by a numeric suffix where two ids collapse to the same slug."""
    seen: dict[str, int] = {}
    out: dict[str, str] = {}
    for mid in sorted(model_ids):
        base = urls.slug(mid)
        k = seen.get(base, 0)
        seen[base] = k + 1
        out[mid] = base if k == 0 else f"{base}-{k + 1}"
    return out


def _examples(frame: pd.DataFrame) -> dict[tuple[int, int], list[dict[str, Any]]]:
    out: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in frame.sort_values(["layer", "head", "kind"]).to_dict("records"):
        tokens = [str(t) for t in (row["tokens"] if row["tokens"] is not None else [])]
        pattern = [[float(v) for v in r] for r in (row["pattern"] if row["pattern"] is not None else [])]
        out.setdefault((int(row["layer"]), int(row["head"])), []).append(
            {"kind": str(row["kind"]), "tokens": tokens, "pattern": pattern})
    return out


def load_site_data(db_path: str | Path) -> SiteData:
    """Read the whole database read-only. Raises HeadwikiError if it holds no model."""
    db_path = Path(db_path)
    with reading(db_path) as con:
        meta = dict(con.execute("SELECT key, value FROM meta ORDER BY key").fetchall())
        model_rows = _frame(con, "SELECT * FROM models ORDER BY model_id", [])
        if model_rows.empty:
            raise HeadwikiError(f"database {db_path} holds no model yet: run `headwiki detect --db {db_path}` first")
        columns = [(r[0], r[1]) for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'heads' "
            "ORDER BY ordinal_position").fetchall()]
        runs = _frame(con, "SELECT * FROM runs ORDER BY started_at, run_id", [])
        slugs = _unique_slugs(list(model_rows["model_id"]))
        models: list[ModelData] = []
        for info in model_rows.to_dict("records"):
            mid = info["model_id"]
            heads = _frame(con, "SELECT * FROM heads WHERE model_id = ? ORDER BY layer, head", [mid])
            if heads.empty:
                continue
            docs = _frame(con, "SELECT * FROM metrics WHERE model_id = ? ORDER BY metric", [mid])

            def side(table: str, order: str) -> pd.DataFrame:
                if not _table_exists(con, table):
                    return pd.DataFrame()
                return _frame(con, f"SELECT * FROM {table} WHERE model_id = ? ORDER BY {order}", [mid])

            models.append(ModelData(
                model_id=mid,
                slug=slugs[mid],
                info=info,
                heads=heads.reset_index(drop=True),
                metrics=discover_metrics(columns, heads, docs),
                examples=_examples(side("head_examples", "layer, head, kind")),
                baselines=side("negation_baselines", "dataset, condition"),
                items=side("negation_items", "dataset, item_id"),
                effects=side("negation_item_effects", "dataset, layer, head, ablation, item_id"),
                groups=side("negation_groups", "dataset, group_kind, group_name, k, ablation"),
                runs=runs[runs["model_id"] == mid].reset_index(drop=True) if len(runs) else runs,
                validation=side("role_validation", "role, signature, k, group_name"),
                roles=_roles(side("roles", "sort_order, role")),
                edges=side("head_edges", "kind, src_layer, src_head, dst_layer, dst_head"),
                top_examples=side("head_top_examples", "layer, head, rank"),
                ov_profile=side("head_ov_profile", "layer, head, input_rank, direction, rank"),
            ))
        diffs = load_diffs(con, {m.model_id for m in models})
    if not models:
        raise HeadwikiError(f"database {db_path} has models but no head rows: run `headwiki detect --db {db_path}` first")
    return SiteData(db_name=db_path.name, meta=meta, models=models, runs=runs,
                    metric_columns=[c for c, _ in columns], column_types=dict(columns), cache={"diffs": diffs})


def load_diffs(con: Any, model_ids: set[str]) -> list[dict[str, Any]]:
    """Every stored model diff (`headwiki diff`): {a, b, summary, tokens, heads, metrics, baselines}, ordered by (a, b)."""
    if not _table_exists(con, "model_diffs"):
        return []
    out = []
    for summary in _frame(con, "SELECT * FROM model_diffs ORDER BY model_a, model_b", []).to_dict("records"):
        key = [summary["model_a"], summary["model_b"]]

        def part(table: str, order: str) -> pd.DataFrame:
            return _frame(con, f"SELECT * FROM {table} WHERE model_a = ? AND model_b = ? ORDER BY {order}", key)

        out.append({"a": key[0], "b": key[1], "summary": summary, "tokens": part("diff_tokens", "rank"),
                    "heads": part("diff_heads", "layer, head"), "metrics": part("diff_head_metrics", "metric, layer, head"),
                    "baselines": _frame(con, "SELECT * FROM negation_baselines WHERE model_id IN (?, ?) "
                                             "ORDER BY model_id, dataset, condition", key),
                    "in_site": {k: k in model_ids for k in key}})
    return out


def head_roles(row: Mapping[str, Any], holders: Sequence[str]) -> list[str]:
    """Every role a head holds, reading each column that holds roles (a list column, or one role as the value)."""
    out: list[str] = []
    for col in holders:
        v = row.get(col)
        if isinstance(v, str):
            out += [v] if v else []
        elif v is not None and not isinstance(v, float):
            out += [str(r) for r in list(v)]
    return out


def _roles(frame: pd.DataFrame) -> dict[str, RoleDoc]:
    return {str(r["role"]): role_doc(r) for r in ([] if frame.empty else frame.to_dict("records"))}


def role_doc(r: Mapping[str, Any]) -> RoleDoc:
    """A RoleDoc from a `roles` row (or a headwiki.spec.Role.row() plus held_in)."""
    sigs = r.get("signatures")
    return RoleDoc(
            name=str(r["role"]), label=_text(r.get("label")) or _fallback_label(str(r["role"])), family=_text(r.get("family")),
            metric=_text(r.get("metric")), text=_text(r.get("text")), colour=_text(r.get("colour")),
            threshold=_opt_float(r.get("threshold")), rule=_text(r.get("rule")), control=_text(r.get("control")),
            consequence=_text(r.get("consequence")), signatures=tuple(str(x) for x in (sigs if sigs is not None else [])),
            no_signature=_text(r.get("no_signature")), citation=_text(r.get("citation")), held_in=_text(r.get("held_in")),
            order=int(r["sort_order"]) if r.get("sort_order") is not None and not pd.isna(r.get("sort_order")) else 100)


def parse_json(text: Any) -> Any:
    """A JSON column value as Python (dict/list), {} when empty or unparsable."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return {}
    if isinstance(text, (dict, list)):
        return text
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return {"value": str(text)}
