"""Words and numbers on the site: the one place that turns values, CIs, p/q-values, units and ranks into text.

Every page, sentence, table cell, heatmap tooltip and search-index value goes through these functions, so one value
reads the same everywhere (same sign convention, same decimals for an estimate and its CI, same unit).

Units are plain strings (a metric specification's ``unit`` field; see :func:`metric_unit`). A value is passed
as stored in the database; :data:`UNITS` says how it is shown:

=============  ==================================================  =====================
unit           stored as                                           shown as
=============  ==================================================  =====================
``points``     a difference of two accuracies (fractions of 1)     x 100, "points" / "pts"
``percent``    a fraction of 1 (a share)                           x 100, "%"
``fraction``   a fraction of 1                                     as is, no suffix
``nats``       a log-probability (difference)                      as is, "nats"
``bits``       a log2-probability (difference)                     as is, "bits"
``ratio``      a unitless ratio                                    as is, no suffix
``score``/""   a unitless score                                    as is, no suffix
anything else  as is                                               as is, the unit's own name as suffix
=============  ==================================================  =====================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from headwiki.pvalues import format_pvalue, format_qvalue

DASH = "–"  # a missing value
SMALLEST_P = 0.001  # p / q below this print as "< 0.001"
SIG = 3  # significant figures in tables
SIG_PROSE = 2  # ... and in sentences
MAX_DECIMALS = 6


@dataclass(frozen=True)
class Unit:
    """How a stored value of one unit is shown: value x scale, then the suffix."""

    scale: float
    short: str  # suffix in tables and tooltips ("pts")
    singular: str  # suffix in prose after the number 1 ("point")
    plural: str  # suffix in prose otherwise ("points")


UNITS: dict[str, Unit] = {
    "points": Unit(100.0, "pts", "point", "points"),
    "percent": Unit(100.0, "%", "%", "%"),
    "fraction": Unit(1.0, "", "", ""),
    "nats": Unit(1.0, "nats", "nat", "nats"),
    "bits": Unit(1.0, "bits", "bit", "bits"),
    "ratio": Unit(1.0, "", "", ""),
    "score": Unit(1.0, "", "", ""),
    "": Unit(1.0, "", "", ""),
    # the units metric declarations use (headwiki.spec.UNITS)
    "attention": Unit(1.0, "", "", ""),
    "norm_entropy": Unit(1.0, "", "", ""),
    "positions": Unit(1.0, "", "position", "positions"),
    "share": Unit(100.0, "%", "%", "%"),
    "count": Unit(1.0, "", "", ""),
}


def unit_info(unit: str | None) -> Unit:
    """The display rule of a unit; an unknown unit is shown unscaled with its own name as the suffix."""
    u = (unit or "").strip()
    if u in UNITS:
        return UNITS[u]
    return Unit(1.0, u, u, u)


def metric_unit(doc: Any) -> str:
    """A metric's unit: its declaration's ``unit`` (headwiki.spec.UNITS; '' for a database written before
    declarations, shown as a plain score)."""
    return str(getattr(doc, "unit", "") or "")


def as_float(v: Any) -> float | None:
    """A finite float, or None for None / NaN / infinities / non-numbers (DB cells may be any of these)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) or math.isinf(f) else f


def decimals_for(*values: float | None, sig: int = SIG) -> int:
    """Decimals that show the largest magnitude among `values` with `sig` significant figures (0 .. MAX_DECIMALS).

    An estimate and its CI bounds share these decimals, so '0.41 [0.38, 0.44]', never '0.41 [0.3812, 0.44]'."""
    mags = [abs(v) for v in values if v is not None and v != 0.0]
    if not mags:
        return max(0, sig - 1)
    top = max(mags)
    return int(min(MAX_DECIMALS, max(0, sig - 1 - math.floor(math.log10(top)))))


def number(x: Any, decimals: int | None = None, sig: int = SIG, signed: bool = False) -> str:
    """A plain number with `decimals` (default: `sig` significant figures), '+' when `signed`, never '-0'."""
    f = as_float(x)
    if f is None:
        return DASH
    d = decimals_for(f, sig=sig) if decimals is None else decimals
    text = f"{f:+.{d}f}" if signed else f"{f:.{d}f}"
    if float(text) == 0.0:
        text = text.lstrip("+-")
    return text


def suffix(text: str, unit: str | None, prose: bool = False) -> str:
    """`text` (a formatted number) with the unit's suffix: '1 point', '2 points', '12 pts', '34%'."""
    u = unit_info(unit)
    if not prose:
        s = u.short
    else:
        s = u.singular if text.lstrip("+-") == "1" else u.plural  # '1 point', '1.0 points', '-1 point'
    if not s or text == DASH:
        return text
    return f"{text}{s}" if s == "%" else f"{text} {s}"


def value(x: Any, unit: str | None = "", signed: bool = False, sig: int = SIG, prose: bool = False,
          decimals: int | None = None) -> str:
    """A stored value in its unit: value('-0.12', 'points', signed=True) -> '-12.0 pts'."""
    f = as_float(x)
    if f is None:
        return DASH
    shown = f * unit_info(unit).scale
    return suffix(number(shown, decimals, sig, signed), unit, prose)


def ci(lo: Any, hi: Any, unit: str | None = "", signed: bool = False, sig: int = SIG, decimals: int | None = None,
       ref: Any = None) -> str:
    """'[0.38, 0.44]' (scaled to the unit, no suffix); '' when a bound is missing. `ref`: the estimate whose
    decimals the bounds share (default: decided by the bounds)."""
    a, b = as_float(lo), as_float(hi)
    if a is None or b is None:
        return ""
    s = unit_info(unit).scale
    r = as_float(ref)
    d = decimals if decimals is not None else decimals_for(a * s, b * s, None if r is None else r * s, sig=sig)
    return f"[{number(a * s, d, signed=signed)}, {number(b * s, d, signed=signed)}]"


def estimate_parts(x: Any, lo: Any, hi: Any, unit: str | None = "", signed: bool = False, sig: int = SIG,
                   prose: bool = False) -> tuple[str, str]:
    """(value text, CI text) sharing one set of decimals: ('-12.0 pts', '[-16.0, -8.0]'); CI '' when absent."""
    f = as_float(x)
    if f is None:
        return DASH, ""
    s = unit_info(unit).scale
    d = decimals_for(f * s, *(v * s for v in (as_float(lo), as_float(hi)) if v is not None), sig=sig)
    return value(f, unit, signed, prose=prose, decimals=d), ci(lo, hi, unit, signed, decimals=d)


def estimate(x: Any, lo: Any, hi: Any, unit: str | None = "", signed: bool = False, sig: int = SIG,
             prose: bool = False) -> str:
    """'0.41 [0.38, 0.44]', '-12 pts [-16, -8]': a value and its 95% CI with the same decimals and the same sign
    convention (the CI of the signed value, never of its magnitude)."""
    text, bounds = estimate_parts(x, lo, hi, unit, signed, sig, prose)
    return f"{text} {bounds}" if bounds else text


def count(x: Any) -> str:
    """A large count, abbreviated: 521000 -> '521k', 124439808 -> '124M', 999 -> '999'."""
    f = as_float(x)
    if f is None:
        return DASH
    n = int(f)
    for suffix_, size in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{suffix_}"
    return str(n)


def percent(x: Any) -> str:
    """A share as a percentage: '34%', '2.5%' (one decimal below 10%)."""
    f = as_float(x)
    if f is None:
        return DASH
    return f"{f:.0%}" if abs(f) >= 0.1 else f"{f:.1%}"


def pvalue(p: Any, floor: Any = None, exact: bool = False) -> str:
    """A p-value: two significant figures, '< 0.001' below that, '< floor' at a Monte-Carlo permutation floor."""
    f = as_float(p)
    if f is None:
        return DASH
    fl = as_float(floor)
    if fl is not None and not exact and f <= fl * (1 + 1e-9):
        return format_pvalue(f, fl, exact) if fl >= SMALLEST_P else f"< {SMALLEST_P:g}"
    return f"< {SMALLEST_P:g}" if f < SMALLEST_P else f"{f:.2g}"


def qvalue(q: Any, p: Any = None, floor: Any = None, exact: bool = False) -> str:
    """A BH q-value: two significant figures, '< 0.001' below that, '≤ q' when its p sits at a Monte-Carlo
    permutation floor (headwiki.stats.format_qvalue: then q is only an upper bound)."""
    f = as_float(q)
    if f is None:
        return DASH
    if f < SMALLEST_P:
        return f"< {SMALLEST_P:g}"
    pf = as_float(p)
    if pf is None:
        return f"{f:.2g}"
    return format_qvalue(f, pf, as_float(floor), exact)


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 head', '3 heads' (`many`: an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


_VOWEL_LETTER_SOUND = frozenset("AEFHILMNORSX")  # letters read with a leading vowel sound ("an MLP", "an L0 head")


def article(phrase: str) -> str:
    """'a' or 'an' for the phrase that follows: 'an induction head', 'a previous-token head', 'a BOS-sink head'."""
    word = phrase.strip().split(" ")[0].split("-")[0]
    if not word:
        return "a"
    if len(word) > 1 and word.isupper():  # an acronym is read letter by letter
        return "an" if word[0] in _VOWEL_LETTER_SOUND else "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def ordinal(k: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th'."""
    suffix_ = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix_}"


def rank_phrase(rank: int, n_tied: int = 1, superlative: str = "strongest") -> str:
    """A rank in words, honest about ties: 'strongest', '2nd-strongest', 'joint strongest', 'joint 3rd-strongest'
    (never '1st-strongest'). rank: 1 + number of heads strictly above; n_tied: heads sharing this value, this one
    included (say how many with :func:`tie_note`)."""
    word = superlative if rank == 1 else f"{ordinal(rank)}-{superlative}"
    return f"joint {word}" if n_tied > 1 else word


def tie_note(n_tied: int) -> str:
    """'tied with 2 other heads', '' without a tie."""
    return f"tied with {plural(n_tied - 1, 'other head')}" if n_tied > 1 else ""


def join(parts: list[str], conj: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    parts = [p for p in parts if p]
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {conj} " + parts[-1]


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]
