"""The head page's first screen: one generated paragraph saying what the head does and how sure we are.

Pure text assembly from numbers the page context already computed: the head's roles with their scores and 95%
CIs (and q for a negation role), its most distinctive ablation effect, and its confounds (one short phrase per
distinct point of the cross-reference panel, which gives the details).
"""

from __future__ import annotations

from dataclasses import dataclass

from headwiki.wiki import format as fmt
from headwiki.wiki.crossref import Statement


@dataclass(frozen=True)
class RoleEvidence:
    """One role of the head and the number it was assigned on."""

    role: str  # as stored
    name: str  # as shown ("previous-token")
    measure: str  # what the number is ("induction score", "negation-specific reversal Δ (zero ablation)")
    estimate: str  # "0.96 [0.94, 0.98]"
    q: str = ""  # "< 0.001" (negation roles), "" when the role is a detector threshold
    rank: str = ""  # "strongest of 16", "joint 2nd-strongest of 16 (tied with 2 other heads)"


@dataclass(frozen=True)
class Effect:
    """The head's ablation effect that stands out most against the model's other heads."""

    measure: str  # the metric's label
    estimate: str  # "-35 points [-48, -23]"
    q: str
    rank: int  # by magnitude, as shown
    tied: int
    of: int


def _q_words(q: str) -> str:
    if not q:
        return ""
    return f"q {q}" if q[:1] in "<≤" else f"q = {q}"


def _role_clause(r: RoleEvidence) -> str:
    detail = [f"{r.measure} {r.estimate}"]
    if r.q:
        detail.append(_q_words(r.q))
    if r.rank:
        detail.append(r.rank)
    return f"{fmt.with_article(r.name + ' head')} ({'; '.join(detail)})"


def caveat_phrases(label: str, statements: list[Statement]) -> list[str]:
    """One short phrase per distinct point of the cross-reference panel, in the panel's order."""
    out: list[str] = []
    for s in statements:
        if s.kind == "confound":
            out.append(f"its negation effect may come from {' or '.join(s.phrases)}")
        elif s.kind == "specificity":
            out.append("its ablation also lowers accuracy on affirmative or control sentences, so the effect is not "
                       "specific to negation")
        elif s.kind == "ablation":
            out.append("zero, mean and resample ablation disagree on it")
        elif s.kind == "several_roles":
            out.append(f"it holds {fmt.plural(len(s.roles), 'role')} at once")
        elif s.kind == "other_function":
            out.append(f"it is also a strong {fmt.join(list(s.phrases))} head without that label")
        elif s.kind == "positional":
            out.append(f"its {fmt.join(list(s.phrases))} attention is positional (as strong on random tokens)")
        elif s.kind == "noisy_role":
            out.append(f"its {fmt.join(list(s.phrases))} score's CI reaches the random-init control")
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def head_summary(label: str, roles: list[RoleEvidence], effect: Effect | None, ablated: bool,
                 statements: list[Statement]) -> str:
    """The paragraph at the top of a head page.

    roles: the head's listed roles with their evidence; effect: its most distinctive ablation effect whose 95% CI
    excludes zero (None when none does); ablated: whether any ablation was run on the model; statements: the
    cross-reference panel of the same head."""
    if roles:
        first = f"{label} is {fmt.join([_role_clause(r) for r in roles])}."
    else:
        first = f"{label} has no role: none of its scores passed a role's threshold."
    if effect is not None:
        q = f"; {_q_words(effect.q)}" if effect.q else ""
        second = (f" Its most distinctive ablation effect, against the model's other heads, is on {effect.measure}: "
                  f"{effect.estimate} ({fmt.rank_phrase(effect.rank, effect.tied, 'largest')} of {effect.of} heads"
                  f"{', ' + fmt.tie_note(effect.tied) if effect.tied > 1 else ''}{q}).")
    elif ablated:
        second = (f" No single-head ablation effect of {label} is clear (a 95% CI excluding zero and, where tested, "
                  "BH q < 0.05).")
    else:
        second = " It has not been ablated (this model has detector scores only)."
    caveats = caveat_phrases(label, statements)
    if caveats:
        third = f" Caveats, detailed below: {'; '.join(caveats)}."
    else:
        third = " The cross-reference panel below finds no confound."
    return first + second + third
