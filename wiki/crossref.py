"""Cross-reference statements: which of a head's other functions could confound reading its ablation effect.

Pure functions from one head's row (a mapping of column -> value) and its model's `heads` table to a list of
:class:`Statement`. Every sentence is computed from numbers (rank within the model, value, 95% CI) and is
hedged ("noisy") where the CI is wide or includes zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from headwiki.negation_rule import MIN_REVERSAL_DELTA
from headwiki.wiki.context import MetricDoc, RoleDoc

EFFECTS = {  # effect metric stem -> (words, unit)
    "neg_acc_delta": ("negated accuracy", "points"),
    "reversal_delta": ("the negation-specific reversal R (share of the control preference that 'not' reverses)", "ratio"),
}
ABLATION_ORDER = ("zero", "mean", "resample")
NOTABLE_POINTS = 0.05  # an accuracy change of 5 points or more is worth a sentence
NOTABLE_Q = 0.05
STRONG_RANK = 3  # "among the model's strongest" = rank <= 3 ...
STRONG_MIN = 0.3  # ... with a score of at least 0.3


@dataclass(frozen=True)
class Statement:
    """One sentence of the cross-reference panel."""

    kind: str  # confound | specificity | ablation | multi_role | positional | noisy_role
    text: str
    roles: tuple[str, ...] = field(default_factory=tuple)  # roles whose other heads the panel links to
    noisy: bool = False


def as_float(v: Any) -> float | None:
    """A finite float, or None for None / NaN / non-numbers (DB cells may be any of these)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _num(row: Mapping[str, Any], key: str) -> float | None:
    return as_float(row.get(key))


def ordinal(k: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th'."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def rank_desc(values: np.ndarray, value: float) -> int:
    """1 + number of (non-NaN) values strictly greater than `value`. values: [n_heads]."""
    v = values[~np.isnan(values)]
    return int(1 + np.sum(v > value))


def percentile(values: np.ndarray, value: float) -> float:
    """Share of the model's heads (in %) with a lower value, counting ties as half. values: [n_heads]."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan")
    return float(100.0 * (np.sum(v < value) + 0.5 * np.sum(v == value)) / v.size)


def ci_is_noisy(est: float, lo: float | None, hi: float | None) -> bool:
    """A CI is 'noisy' when it includes zero or its half-width exceeds half the estimate's magnitude."""
    if lo is None or hi is None:
        return True
    if lo <= 0.0 <= hi:
        return True
    return (hi - lo) / 2.0 > 0.5 * abs(est)


def num(x: float, digits: int = 2, sign: bool = False) -> str:
    """Fixed-point text without a negative zero ('-0' -> '0')."""
    text = f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"
    if float(text) == 0.0:
        text = text.lstrip("+-")
    return text


def fmt_ci(lo: float | None, hi: float | None, scale: float = 1.0, digits: int = 2) -> str:
    if lo is None or hi is None:
        return "[no CI]"
    return f"[{num(lo * scale, digits)}, {num(hi * scale, digits)}]"


def _strength(row: Mapping[str, Any], heads: pd.DataFrame, metric: str) -> tuple[float, int, float | None, float | None] | None:
    """(value, rank, lo, hi) of a detector metric for this head, or None when absent."""
    value = _num(row, metric)
    if value is None or metric not in heads.columns:
        return None
    rank = rank_desc(heads[metric].to_numpy(dtype=float), value)
    return value, rank, _num(row, f"{metric}_lo"), _num(row, f"{metric}_hi")


@dataclass(frozen=True)
class Function:
    """A detector function the confound panel can name: a role (name = the role) or a metric declared with a
    confound (name = the metric). phrase: what to call it; why: what removing it would break."""

    name: str
    metric: str
    phrase: str
    why: str
    strong_at: float | None = None


def functions(metrics: Sequence[MetricDoc], roles: Mapping[str, RoleDoc]) -> list[Function]:
    """The functions of a model, from the declarations: each detector role, then each other detector metric
    declared with a confound (e.g. an attention sink)."""
    by_metric = {m.name: m for m in metrics}
    out = [Function(r.name, r.metric, r.label, r.consequence or by_metric[r.metric].confound)
           for r in roles.values() if r.family == "detector" and r.metric in by_metric]
    scored = {f.metric for f in out}
    out += [Function(m.name, m.name, m.label, m.confound, m.strong_at) for m in metrics
            if m.kind == "detector" and m.confound and m.name not in scored]
    return out


def other_functions(row: Mapping[str, Any], heads: pd.DataFrame, funcs: Sequence[Function],
                    held: Sequence[str]) -> list[tuple[Function, float, int, float | None, float | None]]:
    """The head's functions: a role it holds, or among the model's STRONG_RANK strongest with a score >=
    STRONG_MIN; a function declared with `strong_at` counts at that value. -> [(function, value, rank, lo, hi)]."""
    out = []
    for f in funcs:
        s = _strength(row, heads, f.metric)
        if s is None:
            continue
        value, rank, lo, hi = s
        strong = value >= f.strong_at if f.strong_at is not None else (
            f.name in held or (rank <= STRONG_RANK and value >= STRONG_MIN))
        if strong:
            out.append((f, value, rank, lo, hi))
    return out


def _effect_phrase(metric: str, est: float, lo: float | None, hi: float | None) -> str:
    """'lowers negated accuracy by 12 points (95% CI 8 to 16)': the CI is given for the magnitude."""
    words, unit = EFFECTS[metric.rsplit("_", 1)[0]]
    if est < 0 and lo is not None and hi is not None:
        lo, hi = -hi, -lo
    scale, digits, unit_text = (100.0, 0, " points") if unit == "points" else (1.0, 3, "")
    ci = "no CI" if lo is None or hi is None else f"95% CI {num(lo * scale, digits)} to {num(hi * scale, digits)}"
    verb = "lowers" if est < 0 else "raises"
    return f"{verb} {words} by {num(abs(est) * scale, digits)}{unit_text} ({ci})"


def _function_phrase(f: Function, value: float, rank: int, lo: float | None, hi: float | None, first: bool) -> str:
    whose = "the model's" if first else "its"
    return f"{whose} {ordinal(rank)}-strongest {f.phrase} head ({value:.2f} {fmt_ci(lo, hi)})"


def _notable(row: Mapping[str, Any], heads: pd.DataFrame, metric: str) -> bool:
    est = _num(row, metric)
    if est is None:
        return False
    if metric.startswith("reversal_delta") and abs(est) < MIN_REVERSAL_DELTA:
        return False  # below the size a negation role needs: with hundreds of items, tiny effects are "significant"
    q = _num(row, f"{metric}_q")
    if q is not None and q < NOTABLE_Q:
        return True
    if metric.startswith("neg_acc") and abs(est) >= NOTABLE_POINTS:
        return True
    lo, hi = _num(row, f"{metric}_lo"), _num(row, f"{metric}_hi")
    excludes_zero = lo is not None and hi is not None and not (lo <= 0.0 <= hi)
    values = np.abs(heads[metric].to_numpy(dtype=float)) if metric in heads.columns else np.array([])
    return excludes_zero and values.size > 0 and rank_desc(values, abs(est)) <= STRONG_RANK


def ablations(row: Mapping[str, Any]) -> list[str]:
    """Ablation kinds with a negation result in this row, sorted (e.g. ['mean', 'zero'])."""
    return sorted({k[len("neg_acc_delta_"):] for k in row if k.startswith("neg_acc_delta_")
                   and not k.endswith(("_lo", "_hi", "_p", "_q")) and "atp" not in k and _num(row, k) is not None},
                  key=lambda a: (ABLATION_ORDER.index(a) if a in ABLATION_ORDER else len(ABLATION_ORDER), a))


def cross_reference(row: Mapping[str, Any], heads: pd.DataFrame, metrics: Sequence[MetricDoc],
                    roles: Mapping[str, RoleDoc], held: Sequence[str]) -> list[Statement]:
    """Every combination of this head's functions that could confound an ablation reading, in words.

    row: the head's `heads` row; heads: all heads of the same model (one row per head); metrics, roles: the
    model's declarations; held: the roles this head holds.
    """
    label = str(row.get("label"))
    funcs = other_functions(row, heads, functions(metrics, roles), held)
    out: list[Statement] = []
    for a in ablations(row):
        for stem in EFFECTS:
            metric = f"{stem}_{a}"
            if not _notable(row, heads, metric):
                continue
            est = _num(row, metric)
            assert est is not None
            lo, hi = _num(row, f"{metric}_lo"), _num(row, f"{metric}_hi")
            noisy = ci_is_noisy(est, lo, hi)
            effect = f"ablating {label} ({a} ablation) {_effect_phrase(metric, est, lo, hi)}"
            hedge = " (noisy: the CI is wide or includes zero)" if noisy else ""
            if not funcs:
                out.append(Statement(
                    kind="no_confound",
                    text=(f"{effect[0].upper()}{effect[1:]}{hedge}; {label} is not among the model's strongest heads "
                          "for any measured detector, so none of them explains the effect."),
                    noisy=noisy))
            else:
                what = _join([_function_phrase(f, v, k, l, h, i == 0) for i, (f, v, k, l, h) in enumerate(funcs)])
                why = " or from ".join(f.why for f, *_ in funcs)
                out.append(Statement(
                    kind="confound",
                    text=(f"{effect[0].upper()}{effect[1:]}{hedge}, but {label} is also {what}: "
                          f"the effect may come from {why} rather than negation."),
                    roles=tuple(f.name for f, *_ in funcs), noisy=noisy))
            out.extend(_specificity(row, label, a, metric, est, noisy))
    out.extend(_kinds_disagree(row, label))
    if len(funcs) >= 2:
        parts = [_function_phrase(f, v, k, lo, hi, i == 0) for i, (f, v, k, lo, hi) in enumerate(funcs)]
        out.append(Statement(
            kind="multi_role",
            text=(f"{label} is {_join(parts)}: ablating it removes all of these at once, so an ablation "
                  "effect cannot be attributed to one of them alone."),
            roles=tuple(f.name for f, *_ in funcs)))
    out.extend(_positional(row, label, metrics, roles))
    out.extend(_near_control(row, label, roles, held))
    return out


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _ci_words(lo: float | None, hi: float | None) -> str:
    return "no CI" if lo is None or hi is None else f"95% CI {num(lo * 100, 0)} to {num(hi * 100, 0)}"


def _specificity(row: Mapping[str, Any], label: str, a: str, metric: str, est: float, noisy: bool) -> list[Statement]:
    """Does ablation also hurt the affirmative / control sentences? Then the effect is not negation-specific."""
    if not metric.startswith("neg_acc") or est >= 0:
        return []
    hits = []
    for stem, words in (("aff_acc_delta", "affirmative"), ("ctrl_acc_delta", "control")):
        v = _num(row, f"{stem}_{a}")
        lo, hi = _num(row, f"{stem}_{a}_lo"), _num(row, f"{stem}_{a}_hi")
        if v is not None and v < 0 and (hi is not None and hi < 0 or abs(v) >= 0.5 * abs(est)):
            shaky = "" if hi is not None and hi < 0 else ", noisy"
            mag_lo, mag_hi = (None, None) if lo is None or hi is None else (-hi, -lo)  # the CI of the drop's size
            hits.append(f"{words} accuracy by {num(abs(v) * 100, 0)} points ({_ci_words(mag_lo, mag_hi)}{shaky})")
    if not hits:
        return []
    return [Statement(
        kind="specificity",
        text=(f"Ablating {label} ({a} ablation) also lowers {_join(hits)}: the drop in negated accuracy is "
              "not specific to negation and may be general damage."),
        noisy=noisy)]


def _kinds_disagree(row: Mapping[str, Any], label: str) -> list[Statement]:
    """The pass's own flag (headwiki.ablation.negation_specific.kinds_disagree) in words."""
    flag = row.get("ablation_kinds_disagree")
    if not isinstance(flag, (bool, np.bool_)) or not flag:
        return []
    return [Statement(
        kind="ablation",
        text=(f"Ablation kinds disagree on {label}: {row.get('ablation_disagreement')}. Zero ablation removes the head's "
              "output, mean ablation keeps its average, resample ablation writes in another prompt's output: where "
              "they disagree, the effect depends on how the head is removed (zero ablation can break a head off-"
              "distribution; resampling can insert misleading information), so no single number is the head's effect."))]


def _positional(row: Mapping[str, Any], label: str, metrics: Sequence[MetricDoc], roles: Mapping[str, RoleDoc]) -> list[Statement]:
    """A head that scores as high on random tokens as on text (a metric declared as another's random-token
    control) attends by position, not content."""
    out = []
    labels = {m.name: m.label for m in metrics}
    for m in metrics:
        if not m.control_for:
            continue
        text_v, rand_v = _num(row, m.control_for), _num(row, m.name)
        if text_v is None or rand_v is None or text_v < STRONG_MIN or rand_v < 0.8 * text_v:
            continue
        what = labels.get(m.control_for, m.control_for)
        out.append(Statement(
            kind="positional",
            text=(f"{label}'s {what} score is {'as high' if rand_v >= 0.95 * text_v else 'nearly as high'} on "
                  f"random tokens ({rand_v:.2f}) as on text ({text_v:.2f}): its attention is positional, so ablating "
                  "it removes token-order information for every later head, whatever the task."),
            roles=tuple(r.name for r in roles.values() if r.metric == m.control_for)))
    return out


def _near_control(row: Mapping[str, Any], label: str, roles: Mapping[str, RoleDoc], held: Sequence[str]) -> list[Statement]:
    """A held role whose CI reaches down to the random-init control score is weakly supported."""
    out = []
    for name in held:
        r = roles.get(name)
        if r is None or r.family != "detector":
            continue
        lo, ctrl, v = _num(row, f"{r.metric}_lo"), _num(row, f"{r.metric}_control"), _num(row, r.metric)
        if lo is not None and ctrl is not None and v is not None and lo <= ctrl:
            out.append(Statement(
                kind="noisy_role",
                text=(f"{label}'s {r.label} role is noisy: its CI lower bound ({lo:.2f}) "
                      f"does not clear the random-init control ({ctrl:.2f})."),
                roles=(name,), noisy=True))
    return out
