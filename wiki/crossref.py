"""Cross-reference statements: which of a head's other functions could confound reading its ablation effect.

Pure functions from one head's row (a mapping of column -> value) and its model's `heads` table to a list of
:class:`Statement`. Every sentence is computed from numbers (rank within the model, value, 95% CI) and is
hedged ("noisy") where the CI is wide or includes zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from headwiki.negation_rule import MIN_REVERSAL_DELTA
from headwiki.wiki import format as fmt

ROLE_PHRASES = {
    "induction": ("induction", "broken in-context copying (induction)"),
    "previous_token": ("previous-token", "lost token-order information"),
    "duplicate_token": ("duplicate-token", "lost repeated-token detection"),
    "bos_sink": ("BOS-sink", "removing a near-constant attention-sink output"),
}
EFFECTS = {  # effect metric stem -> (words, unit)
    "neg_acc_delta": ("negated accuracy", "points"),
    "reversal_delta": ("the negation-specific reversal R (share of the control preference that 'not' reverses)", "ratio"),
}
ABLATION_ORDER = ("zero", "mean", "resample")
NOTABLE_POINTS = 0.05  # an accuracy change of 5 points or more is worth a sentence
NOTABLE_Q = 0.05
STRONG_RANK = 3  # "among the model's strongest" = rank <= 3 ...
STRONG_MIN = 0.3  # ... with a score of at least 0.3
SCORE_DECIMALS = 2  # detector scores in sentences: '0.96 [0.94, 0.98]'


@dataclass(frozen=True)
class Statement:
    """One sentence of the cross-reference panel."""

    kind: str  # confound | specificity | ablation | multi_role | positional | noisy_role
    text: str
    roles: tuple[str, ...] = field(default_factory=tuple)  # roles whose other heads the panel links to
    noisy: bool = False


as_float = fmt.as_float
ordinal = fmt.ordinal


def _num(row: Mapping[str, Any], key: str) -> float | None:
    return as_float(row.get(key))


def rank_desc(values: np.ndarray, value: float) -> int:
    """1 + number of (non-NaN) values strictly greater than `value`. values: [n_heads]."""
    v = values[~np.isnan(values)]
    return int(1 + np.sum(v > value))


def rank_shown(values: np.ndarray, value: float, decimals: int = SCORE_DECIMALS) -> tuple[int, int]:
    """(rank, heads tied) as a reader sees them: values compared at the `decimals` they are printed with, so three
    heads all shown as 0.96 are a three-way tie, not 1st, 2nd and 3rd. values: [n_heads]."""
    v = np.round(values[~np.isnan(values)], decimals)
    x = round(value, decimals)
    return int(1 + np.sum(v > x)), int(max(1, np.sum(v == x)))


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


def _strength(row: Mapping[str, Any], heads: pd.DataFrame, metric: str) -> Function | None:
    """This head's value of a detector metric with its rank as shown (ties at the printed precision), or None."""
    value = _num(row, metric)
    if value is None or metric not in heads.columns:
        return None
    rank, tied = rank_shown(heads[metric].to_numpy(dtype=float), value)
    return Function(metric, value, rank, tied, _num(row, f"{metric}_lo"), _num(row, f"{metric}_hi"))


@dataclass(frozen=True)
class Function:
    """A detector function a head has: its score, rank among the model's heads (as printed) and 95% CI."""

    role: str
    value: float
    rank: int
    tied: int
    lo: float | None
    hi: float | None

    def phrase(self, first: bool) -> str:
        """"the model's strongest induction head (0.96 [0.94, 0.98])"; a tie says so inside the parentheses."""
        whose = "the model's" if first else "its"
        tie = f"; {fmt.tie_note(self.tied)}" if self.tied > 1 else ""
        est = fmt.estimate(self.value, self.lo, self.hi, sig=SCORE_DECIMALS)
        return f"{whose} {fmt.rank_phrase(self.rank, self.tied)} {ROLE_PHRASES[self.role][0]} head ({est}{tie})"


def other_functions(row: Mapping[str, Any], heads: pd.DataFrame) -> list[Function]:
    """Detector functions this head has: listed in `roles`, or among the model's STRONG_RANK strongest
    with a score >= STRONG_MIN (BOS sink counts when >= 0.5)."""
    listed = set(_roles(row))
    out = []
    for role in ROLE_PHRASES:
        f = _strength(row, heads, role)
        if f is None:
            continue
        if role == "bos_sink":
            strong = f.value >= 0.5
        else:
            strong = role in listed or (f.rank <= STRONG_RANK and f.value >= STRONG_MIN)
        if strong:
            out.append(f)
    return out


def _roles(row: Mapping[str, Any]) -> list[str]:
    roles = row.get("roles")
    if roles is None or isinstance(roles, float):
        return []
    return [str(r) for r in list(roles)]


def listed_roles(row: Mapping[str, Any]) -> list[str]:
    """The head's roles as the wiki badges them: detector roles (stored order), then the negation role if any.
    A head with two or more is multi-role (the SQL page's example counts the same columns)."""
    out = _roles(row)
    neg = row.get("negation_role")
    if isinstance(neg, str) and neg:
        out.append(neg)
    return out


def effect_text(metric: str, est: float, lo: float | None, hi: float | None) -> str:
    """'-12 points [-16, -8]': a signed effect and its signed 95% CI in the metric's unit."""
    unit = EFFECTS[metric.rsplit("_", 1)[0]][1]
    return fmt.estimate(est, lo, hi, unit, signed=True, sig=2, prose=True)


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


NOISY = "noisy: the CI is wide or includes zero"


def _effects_sentence(row: Mapping[str, Any], heads: pd.DataFrame, label: str) -> tuple[str, bool, list[tuple[str, float]]]:
    """All notable negation effects of ablating this head, grouped by what they measure, in one clause:
    'Ablating L1H3 changes negated accuracy by -10 points [-21, -2] (mean ablation; noisy ...) and by -35 points
    [-48, -23] (resample ablation)'. -> (clause, every effect noisy?, [(ablation, negated-accuracy change)])."""
    groups: list[str] = []
    noisy_all = True
    acc: list[tuple[str, float]] = []
    for stem, (words, _unit) in EFFECTS.items():
        parts = []
        for a in ablations(row):
            metric = f"{stem}_{a}"
            if not _notable(row, heads, metric):
                continue
            est = _num(row, metric)
            assert est is not None
            lo, hi = _num(row, f"{metric}_lo"), _num(row, f"{metric}_hi")
            noisy = ci_is_noisy(est, lo, hi)
            noisy_all &= noisy
            parts.append(f"by {effect_text(metric, est, lo, hi)} ({a} ablation{'; ' + NOISY if noisy else ''})")
            if stem == "neg_acc_delta":
                acc.append((a, est))
        if parts:
            groups.append(f"{words} {fmt.join(parts)}")
    if not groups:
        return "", True, []
    return f"Ablating {label} changes {'; it also changes '.join(groups)}", noisy_all, acc


def cross_reference(row: Mapping[str, Any], heads: pd.DataFrame) -> list[Statement]:
    """Every combination of this head's functions that could confound an ablation reading, in words, each
    distinct point once (all ablation kinds and effect measures of one point in one sentence).

    row: the head's `heads` row; heads: all heads of the same model (one row per head).
    """
    label = str(row.get("label"))
    funcs = other_functions(row, heads)
    out: list[Statement] = []
    effect, noisy, acc = _effects_sentence(row, heads, label)
    if effect:
        if not funcs:
            out.append(Statement(
                kind="no_confound",
                text=(f"{effect}; {label} is not among the model's strongest heads for any measured detector, so none "
                      "of them explains the effect."),
                noisy=noisy))
        else:
            what = fmt.join([f.phrase(i == 0) for i, f in enumerate(funcs)])
            why = " or from ".join(ROLE_PHRASES[f.role][1] for f in funcs)
            out.append(Statement(
                kind="confound",
                text=(f"{effect}, but {label} is also {what}: the effect may come from {why} rather than negation."),
                roles=tuple(f.role for f in funcs), noisy=noisy))
        out.extend(_specificity(row, label, acc, noisy))
    out.extend(_kinds_disagree(row, label))
    roles = listed_roles(row)
    if len(roles) >= 2:
        out.append(Statement(
            kind="multi_role",
            text=(f"{label} holds {fmt.plural(len(roles), 'role')} at once "
                  f"({fmt.join([r.replace('_', '-') for r in roles])}): ablating it removes all of them together, so an "
                  "ablation effect cannot be attributed to one of them alone."),
            roles=tuple(roles)))
    unlisted = [f for f in funcs if f.role not in roles]
    if unlisted and (roles or len(funcs) >= 2):
        out.append(Statement(
            kind="other_function",
            text=(f"{label} is also {fmt.join([f.phrase(i == 0) for i, f in enumerate(unlisted)])}, though that is not a "
                  "role it is labelled with: ablating it removes that function too."),
            roles=tuple(f.role for f in unlisted)))
    out.extend(_positional(row, label))
    out.extend(_near_control(row, label))
    seen: set[str] = set()
    return [s for s in out if not (s.text in seen or seen.add(s.text))]


def _specificity(row: Mapping[str, Any], label: str, acc: list[tuple[str, float]], noisy: bool) -> list[Statement]:
    """Does ablation also hurt the affirmative / control sentences? Then a drop in negated accuracy is not
    negation-specific. One sentence for every ablation kind that lowered negated accuracy."""
    hits = []
    kinds = []
    for a, est in acc:
        if est >= 0:
            continue
        for stem, words in (("aff_acc_delta", "affirmative"), ("ctrl_acc_delta", "control")):
            v = _num(row, f"{stem}_{a}")
            lo, hi = _num(row, f"{stem}_{a}_lo"), _num(row, f"{stem}_{a}_hi")
            if v is not None and v < 0 and (hi is not None and hi < 0 or abs(v) >= 0.5 * abs(est)):
                shaky = "" if hi is not None and hi < 0 else f"; {NOISY}"
                text = fmt.estimate(v, lo, hi, "points", signed=True, sig=2, prose=True)
                hits.append(f"{words} accuracy by {text} ({a} ablation{shaky})")
                kinds.append(a)
    if not hits:
        return []
    return [Statement(
        kind="specificity",
        text=(f"Ablating {label} also changes {fmt.join(hits)}: the drop in negated accuracy is not specific to "
              "negation and may be general damage."),
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


def _positional(row: Mapping[str, Any], label: str) -> list[Statement]:
    """A previous-token head that scores as high on random tokens attends by position, not content."""
    text_v, rand_v = _num(row, "previous_token"), _num(row, "previous_token_random")
    if text_v is None or rand_v is None or text_v < STRONG_MIN:
        return []
    if rand_v >= 0.8 * text_v:
        return [Statement(
            kind="positional",
            text=(f"{label}'s previous-token score is {'as high' if rand_v >= 0.95 * text_v else 'nearly as high'} on "
                  f"random tokens ({fmt.number(rand_v, 2)}) as on text ({fmt.number(text_v, 2)}): its attention is positional, so ablating "
                  "it removes token-order information for every later head, whatever the task."),
            roles=("previous_token",))]
    return []


def _near_control(row: Mapping[str, Any], label: str) -> list[Statement]:
    """A listed role whose CI reaches down to the random-init control score is weakly supported."""
    out = []
    for role in _roles(row):
        lo, ctrl, v = _num(row, f"{role}_lo"), _num(row, f"{role}_control"), _num(row, role)
        if lo is not None and ctrl is not None and v is not None and lo <= ctrl:
            out.append(Statement(
                kind="noisy_role",
                text=(f"{label}'s {ROLE_PHRASES.get(role, (role,))[0]} role is noisy: its CI lower bound ({fmt.number(lo, 2)}) "
                      f"does not clear the random-init control ({fmt.number(ctrl, 2)})."),
                roles=(role,), noisy=True))
    return out
