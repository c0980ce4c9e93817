"""p- and q-values as text, honest about a Monte-Carlo permutation floor. Pure Python (no torch), so the commands
that only read the database (site, query) can use them; headwiki.stats re-exports both."""

from __future__ import annotations

import math


def format_pvalue(p: float, floor: float | None = None, exact: bool = False) -> str:
    """'0.0012', or '< 1e-05' for a Monte-Carlo p at its resolution floor (only an upper bound)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    if floor is not None and not exact and p <= floor * (1 + 1e-9):
        return f"< {floor:.2g}"
    return f"{p:.2g}"


def format_qvalue(q: float, p: float, floor: float | None = None, exact: bool = False) -> str:
    """A BH q-value; '≤ q' when its own p is a Monte-Carlo p at the floor (then q is only an upper bound too)."""
    if q is None or (isinstance(q, float) and math.isnan(q)):
        return ""
    bound = floor is not None and not exact and p <= floor * (1 + 1e-9)
    return ("≤ " if bound else "") + f"{q:.2g}"
