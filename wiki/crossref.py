"""Cross-reference statements: which of a head's other functions could confound reading its ablation effect.

Pure functions from one head's row (a mapping of column -> value) and its model's `heads` table to a list of
:class:`Statement`. Every sentence is computed from numbers (rank within the model, value, 95% CI) and is
hedged ("noisy") where the CI is wide or includes zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from headwiki.negation_rule import MIN_REVERSAL_DELTA
from headwiki.negation_spec import DISAGREEMENT, EFFECT_SPECS, KINDS_DISAGREE, REVERSAL
from headwiki.wiki import format as fmt
from headwiki.wiki.context import MetricDoc, RoleDoc

NEG_ACC, AFF_ACC, CTRL_ACC = (EFFECT_SPECS[m] for m in ("neg_acc", "aff_acc", "ctrl_acc"))
EFFECTS = {  # effect metric stem -> (words, unit)
    NEG_ACC.name: ("negated accuracy", NEG_ACC.unit),
    REVERSAL.name: ("the negation-specific reversal R (share of the control preference that 'not' reverses)", REVERSAL.unit),
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

    kind: str  # confound | no_confound | specificity | ablation | several_roles | other_function | positional | noisy_role
    text: str
    roles: tuple[str, ...] = field(default_factory=tuple)  # roles whose other heads the panel links to
    noisy: bool = False
    phrases: tuple[str, ...] = field(default_factory=tuple)  # the words the summary's caveat uses (labels, consequences)


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


@dataclass(frozen=True)
class Capability:
    """A detector function the confound panel can name, from the declarations: a role (name = the role) or a
    metric declared with a confound (name = the metric). label: what to call it; why: what removing it breaks."""

    name: str
    metric: str
    label: str
    why: str
    strong_at: float | None = None


def capabilities(metrics: Sequence[MetricDoc], roles: Mapping[str, RoleDoc]) -> list[Capability]:
    """The model's nameable functions: each detector role, then each other detector metric declared with a
    confound (e.g. an attention sink)."""
    by_metric = {m.name: m for m in metrics}
    out = [Capability(r.name, r.metric, r.label, r.consequence or by_metric[r.metric].confound)
           for r in roles.values() if r.family in ("detector", "ioi") and r.metric in by_metric]
    scored = {c.metric for c in out}
    out += [Capability(m.name, m.name, m.label, m.confound, m.strong_at) for m in metrics
            if m.kind == "detector" and m.confound and m.name not in scored]
    return out


@dataclass(frozen=True)
class Function:
    """A detector function a head has: its score, rank among the model's heads (as printed) and 95% CI."""

    of: Capability
    value: float
    rank: int
    tied: int
    lo: float | None
    hi: float | None

    @property
    def role(self) -> str:
        return self.of.name

    def phrase(self, first: bool) -> str:
        """"the model's strongest induction head (0.96 [0.94, 0.98])"; a tie says so inside the parentheses."""
        whose = "the model's" if first else "its"
        tie = f"; {fmt.tie_note(self.tied)}" if self.tied > 1 else ""
        est = fmt.estimate(self.value, self.lo, self.hi, sig=SCORE_DECIMALS)
        return f"{whose} {fmt.rank_phrase(self.rank, self.tied)} {self.of.label} head ({est}{tie})"


def _strength(row: Mapping[str, Any], heads: pd.DataFrame, of: Capability) -> Function | None:
    """This head's value of a capability's metric with its rank as shown (ties at the printed precision), or None."""
    value = _num(row, of.metric)
    if value is None or of.metric not in heads.columns:
        return None
    rank, tied = rank_shown(heads[of.metric].to_numpy(dtype=float), value)
    return Function(of, value, rank, tied, _num(row, f"{of.metric}_lo"), _num(row, f"{of.metric}_hi"))


def other_functions(row: Mapping[str, Any], heads: pd.DataFrame, caps: Sequence[Capability],
                    held: Sequence[str]) -> list[Function]:
    """The head's functions: a role it holds, or among the model's STRONG_RANK strongest with a score >=
    STRONG_MIN; a capability declared with `strong_at` counts at that value instead."""
    out = []
    for c in caps:
        f = _strength(row, heads, c)
        if f is None:
            continue
        strong = f.value >= c.strong_at if c.strong_at is not None else (
            c.name in held or (f.rank <= STRONG_RANK and f.value >= STRONG_MIN))
        if strong:
            out.append(f)
    return out


def effect_text(metric: str, est: float, lo: float | None, hi: float | None) -> str:
    """'-12 points [-16, -8]': a signed effect and its signed 95% CI in the metric's unit."""
    unit = EFFECTS[metric.rsplit("_", 1)[0]][1]
    return fmt.estimate(est, lo, hi, unit, signed=True, sig=2, prose=True)


def _notable(row: Mapping[str, Any], heads: pd.DataFrame, metric: str) -> bool:
    est = _num(row, metric)
    if est is None:
        return False
    if metric.startswith(REVERSAL.name) and abs(est) < MIN_REVERSAL_DELTA:
        return False  # below the size a negation role needs: with hundreds of items, tiny effects are "significant"
    q = _num(row, f"{metric}_q")
    if q is not None and q < NOTABLE_Q:
        return True
    if metric.startswith(NEG_ACC.name) and abs(est) >= NOTABLE_POINTS:
        return True
    lo, hi = _num(row, f"{metric}_lo"), _num(row, f"{metric}_hi")
    excludes_zero = lo is not None and hi is not None and not (lo <= 0.0 <= hi)
    values = np.abs(heads[metric].to_numpy(dtype=float)) if metric in heads.columns else np.array([])
    return excludes_zero and values.size > 0 and rank_desc(values, abs(est)) <= STRONG_RANK


def ablations(row: Mapping[str, Any]) -> list[str]:
    """Ablation kinds with a negation result in this row, sorted (e.g. ['mean', 'zero'])."""
    prefix = f"{NEG_ACC.name}_"
    return sorted({k[len(prefix):] for k in row if k.startswith(prefix)
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
            if stem == NEG_ACC.name:
                acc.append((a, est))
        if parts:
            groups.append(f"{words} {fmt.join(parts)}")
    if not groups:
        return "", True, []
    return f"Ablating {label} changes {'; it also changes '.join(groups)}", noisy_all, acc


def cross_reference(row: Mapping[str, Any], heads: pd.DataFrame, metrics: Sequence[MetricDoc],
                    roles: Mapping[str, RoleDoc], held: Sequence[str]) -> list[Statement]:
    """Every combination of this head's functions that could confound an ablation reading, in words, each
    distinct point once (all ablation kinds and effect measures of one point in one sentence).

    row: the head's `heads` row; heads: all heads of the same model (one row per head); metrics, roles: the
    model's declarations (wiki.context); held: the roles the head holds (ModelData.roles_of).
    """
    label = str(row.get("label"))
    funcs = other_functions(row, heads, capabilities(metrics, roles), held)
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
            why = " or from ".join(f.of.why for f in funcs)
            out.append(Statement(
                kind="confound",
                text=(f"{effect}, but {label} is also {what}: the effect may come from {why} rather than negation."),
                roles=tuple(f.role for f in funcs), noisy=noisy, phrases=tuple(f.of.why for f in funcs)))
        out.extend(_specificity(row, label, acc, noisy))
    out.extend(_kinds_disagree(row, label))
    if len(held) >= 2:
        names = [roles[r].label if r in roles else r.replace("_", "-") for r in held]
        out.append(Statement(
            kind="several_roles",
            text=(f"{label} holds {fmt.plural(len(held), 'role')} at once "
                  f"({fmt.join(names)}): ablating it removes all of them together, so an "
                  "ablation effect cannot be attributed to one of them alone."),
            roles=tuple(held)))
    unlisted = [f for f in funcs if f.role not in held]
    if unlisted and (held or len(funcs) >= 2):
        out.append(Statement(
            kind="other_function",
            text=(f"{label} is also {fmt.join([f.phrase(i == 0) for i, f in enumerate(unlisted)])}, though that is not a "
                  "role it is labelled with: ablating it removes that function too."),
            roles=tuple(f.role for f in unlisted), phrases=tuple(f.of.label for f in unlisted)))
    out.extend(_positional(row, label, metrics, roles))
    out.extend(_near_control(row, label, roles, held))
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
        for stem, words in ((AFF_ACC.name, "affirmative"), (CTRL_ACC.name, "control")):
            v = _num(row, f"{stem}_{a}")
            lo, hi = _num(row, f"{stem}_{a}_lo"), _num(row, f"{stem}_{a}_hi")
            if v is not None and v < 0 and (hi is not None and hi < 0 or abs(v) >= 0.5 * abs(est)):
                shaky = "" if hi is not None and hi < 0 else f"; {NOISY}"
                text = fmt.estimate(v, lo, hi, AFF_ACC.unit, signed=True, sig=2, prose=True)
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
    flag = row.get(KINDS_DISAGREE.name)
    if not isinstance(flag, (bool, np.bool_)) or not flag:
        return []
    return [Statement(
        kind="ablation",
        text=(f"Ablation kinds disagree on {label}: {row.get(DISAGREEMENT.name)}. Zero ablation removes the head's "
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
        out.append(Statement(
            kind="positional",
            text=(f"{label}'s {labels.get(m.control_for, m.control_for)} score is "
                  f"{'as high' if rand_v >= 0.95 * text_v else 'nearly as high'} on random tokens "
                  f"({fmt.number(rand_v, 2)}) as on text ({fmt.number(text_v, 2)}): its attention is positional, so "
                  "ablating it removes token-order information for every later head, whatever the task."),
            roles=tuple(r.name for r in roles.values() if r.metric == m.control_for),
            phrases=(labels.get(m.control_for, m.control_for),)))
    return out


def _near_control(row: Mapping[str, Any], label: str, roles: Mapping[str, RoleDoc], held: Sequence[str]) -> list[Statement]:
    """A held detector role whose CI reaches down to the random-init control score is weakly supported."""
    out = []
    for name in held:
        r = roles.get(name)
        if r is None or r.family not in ("detector", "ioi"):
            continue
        lo, ctrl, v = _num(row, f"{r.metric}_lo"), _num(row, f"{r.metric}_control"), _num(row, r.metric)
        if lo is not None and ctrl is not None and v is not None and lo <= ctrl:
            out.append(Statement(
                kind="noisy_role",
                text=(f"{label}'s {r.label} role is noisy: its CI lower bound ({fmt.number(lo, 2)}) "
                      f"does not clear the random-init control ({fmt.number(ctrl, 2)})."),
                roles=(name,), noisy=True, phrases=(r.label,)))
    return out
