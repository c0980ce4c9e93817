"""Read everything the site shows out of the database (read-only), once, into plain Python objects.

Metric columns are discovered from the `heads` table (numeric columns; `<m>_lo/_hi/_p/_q` siblings are its
CI and test statistics) and documented from the `metrics` table (description, data, n); a short list of
known names only fixes their display order and labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from headwiki.db.schema import HEAD_KEY_COLUMNS
from headwiki.db.store import reading
from headwiki.errors import HeadwikiError
from headwiki.wiki import urls

NUMERIC_TYPES = ("DOUBLE", "BIGINT", "INTEGER", "FLOAT", "REAL", "SMALLINT", "HUGEINT", "DECIMAL", "UBIGINT")
STAT_SUFFIXES = ("_lo", "_hi", "_p", "_q")
# Bookkeeping columns: numeric but not a measurement of the head.
NOT_METRICS = frozenset({"n_roles"})
DETECTOR_ROLES = ("induction", "previous_token", "duplicate_token")
NEGATION_PREFIXES = ("neg_", "aff_", "ctrl_", "sens_", "reversal_")
PREFERRED = (
    "induction", "previous_token", "duplicate_token", "bos_sink", "entropy", "previous_token_random",
    "positional_mass", "positional_offset",
    "reversal_delta_zero", "reversal_delta_mean", "neg_acc_delta_zero", "neg_acc_delta_mean", "sens_delta_zero", "sens_delta_mean",
    "aff_acc_delta_zero", "aff_acc_delta_mean", "ctrl_acc_delta_zero", "ctrl_acc_delta_mean",
    "neg_ld_delta_zero", "neg_ld_delta_mean",
)
KNOWN_LABELS = {
    "induction": "induction",
    "previous_token": "previous-token",
    "previous_token_random": "previous-token (random tokens)",
    "duplicate_token": "duplicate-token",
    "bos_sink": "BOS sink",
    "entropy": "attention entropy",
    "positional_offset": "positional offset",
    "positional_mass": "positional mass",
    "neg": "negated accuracy",
    "aff": "affirmative accuracy",
    "ctrl": "control accuracy",
    "sens": "negation sensitivity",
    "reversal": "negation-specific reversal",
    "causal_share_zero": "share of the in-context loss drop (zero ablation, alone)",
    "causal_share_mean": "share of the in-context loss drop (mean ablation, alone)",
    "causal_share_resample": "share of the in-context loss drop (resample ablation, alone)",
}
KIND_ORDER = {"detector": 0, "causal": 1, "negation": 2, "attribution": 3, "peer": 4, "control": 5}


@dataclass(frozen=True)
class MetricDoc:
    """One metric column of `heads` for one model, with what the `metrics` table says about it."""

    name: str
    label: str
    kind: str  # detector | causal | negation | attribution | peer | control
    description: str
    data: str
    n: int | None
    has_ci: bool
    has_q: bool
    is_accuracy_delta: bool  # a difference of accuracies (shown in points)
    integer: bool

    @property
    def heatmap(self) -> bool:
        """Shown as a layer x head heatmap on the model page."""
        return self.kind in ("detector", "negation") or self.name == "causal_share_zero"


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


@dataclass
class SiteData:
    """The whole database as the site sees it."""

    db_name: str
    meta: dict[str, str]
    models: list[ModelData]
    runs: pd.DataFrame
    metric_columns: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)  # derived values computed once per render


def metric_kind(name: str) -> str:
    if name.startswith("causal_share"):
        return "causal"
    if "_atp_" in name or name.endswith("_atp"):
        return "attribution"
    if name.startswith(NEGATION_PREFIXES):
        return "negation"
    if name.endswith("_control"):
        return "control"
    if name.endswith("_tl"):
        return "peer"
    return "detector"


def metric_label(name: str) -> str:
    """A readable label: 'neg_acc_delta_zero' -> 'negated accuracy Δ (zero ablation)'."""
    if name in KNOWN_LABELS:
        return KNOWN_LABELS[name]
    parts = name.split("_")
    if parts[0] in ("neg", "aff", "ctrl", "sens") and "delta" in parts:
        ablation = parts[-1]
        what = KNOWN_LABELS[parts[0]]
        if parts[0] == "neg" and parts[1] == "ld":
            what = "negated logit difference"
        how = "attribution estimate, " if "atp" in parts else ""
        return f"{what} Δ ({how}{ablation} ablation)"
    if name.endswith("_control"):
        return f"{metric_label(name[: -len('_control')])} (random-init control)"
    if name.endswith("_tl"):
        return f"{metric_label(name[: -len('_tl')])} (TransformerLens detect_head)"
    return name.replace("_", " ")


def _sort_key(doc: MetricDoc) -> tuple[int, int, str]:
    pref = PREFERRED.index(doc.name) if doc.name in PREFERRED else len(PREFERRED)
    return (KIND_ORDER.get(doc.kind, 9), pref, doc.name)


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
        if base is not None or col in NOT_METRICS:
            continue
        if col not in heads.columns or heads[col].isna().all():
            continue
        doc = doc_by.get(col, {})
        n = doc.get("n")
        out.append(MetricDoc(
            name=col,
            label=metric_label(col),
            kind=metric_kind(col),
            description=str(doc.get("description") or ""),
            data=str(doc.get("data") or ""),
            n=None if n is None or pd.isna(n) else int(n),
            has_ci=f"{col}_lo" in names and f"{col}_hi" in names and heads[f"{col}_lo"].notna().any(),
            has_q=f"{col}_q" in names and heads[f"{col}_q"].notna().any(),
            is_accuracy_delta="_acc_delta" in col,
            integer=dict(columns).get(col, "").upper() in ("BIGINT", "INTEGER", "SMALLINT", "HUGEINT"),
        ))
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
            ))
    if not models:
        raise HeadwikiError(f"database {db_path} has models but no head rows: run `headwiki detect --db {db_path}` first")
    return SiteData(db_name=db_path.name, meta=meta, models=models, runs=runs,
                    metric_columns=[c for c, _ in columns])


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
