"""The role-overlap matrix of one model: how often two roles share a head, against chance.

For roles a and b held by n_a and n_b of the model's N heads, the count of heads holding both is compared with
n_a * n_b / N, its expectation if the two labels fell on heads independently (hypergeometric mean). Every role a
head holds counts (each column that holds roles: detector and IOI roles in `roles`, the negation role, ...).
Pure functions over lists of held roles; the model page draws the result as a small table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class OverlapCell:
    """Heads holding both roles, the number expected by chance (n_a n_b / N) and their ratio (None when 0 expected)."""

    both: int
    expected: float
    ratio: float | None


@dataclass(frozen=True)
class Overlap:
    roles: list[str]  # roles held by at least one head, in the given order
    counts: dict[str, int]  # heads holding each role
    n_heads: int
    cells: dict[tuple[str, str], OverlapCell]  # (a, b) for a != b (symmetric)


def role_overlap(held: Sequence[Sequence[str]], order: Sequence[str] = ()) -> Overlap:
    """held: the roles of each head (one entry per head) -> the overlap of every pair of held roles.
    order: display order (roles not in it follow, sorted)."""
    n = len(held)
    counts: dict[str, int] = {}
    for roles in held:
        for r in set(roles):
            counts[r] = counts.get(r, 0) + 1
    ranked = [r for r in order if r in counts] + sorted(r for r in counts if r not in set(order))
    cells: dict[tuple[str, str], OverlapCell] = {}
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            both = sum(1 for roles in held if a in roles and b in roles)
            expected = counts[a] * counts[b] / n if n else 0.0
            cell = OverlapCell(both, expected, both / expected if expected > 0 else None)
            cells[(a, b)] = cells[(b, a)] = cell
    return Overlap(ranked, counts, n, cells)
