"""Role thresholds (the one place they live) and role assignment.

A head gets a role when BOTH
  1. its score >= the role's threshold, and
  2. the lower bound of its 95% bootstrap CI exceeds the same head position's score on a
     random-initialized model of the same architecture and the same data (the control).

Scale: headwiki's detector scores are normalized so that a perfect head scores 1.0 (induction and
duplicate_token average only over second-copy positions; previous_token over positions i >= 2).
This is NOT TransformerLens's detect_head "mul" scale, where rows without a target dilute the
score (a perfect induction head scores ~0.5 on [BOS, x, x]); the ``*_tl`` columns carry that scale.

Default thresholds:
* induction 0.4 — ARENA's threshold for repeated-random-token induction on the same
  perfect-is-1 scale; GPT-2 small's known induction heads (5.1, 5.5, 6.9, 7.2, 7.10) clear it while
  uniform causal attention on L = 31 scores ~0.03.
* previous_token 0.4 — same reasoning: a head putting less than 40% of its mass on i-1 is
  mixing other behaviour; GPT-2's 4.11 scores ~0.9+.
* duplicate_token 0.3 — duplicate heads typically split attention between the earlier copy, BOS
  and the current token (GPT-2's 0.1/0.10/3.0 are weaker than its induction heads), so a lower bar.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from headwiki.errors import HeadwikiError

if TYPE_CHECKING:  # annotations only: `heads --role` reads ROLES without importing torch
    import torch

ROLES: tuple[str, ...] = ("induction", "previous_token", "duplicate_token")

DEFAULT_THRESHOLDS: dict[str, float] = {
    "induction": 0.4,
    "previous_token": 0.4,
    "duplicate_token": 0.3,
}


def parse_thresholds(items: Iterable[str]) -> dict[str, float]:
    """Parse CLI overrides like ["induction=0.5"] into {role: value}; bad input -> HeadwikiError."""
    out: dict[str, float] = {}
    for item in items:
        role, sep, value = item.partition("=")
        role = role.strip()
        if not sep or role not in ROLES:
            raise HeadwikiError(f"bad --threshold {item!r}: use ROLE=VALUE with ROLE one of {', '.join(ROLES)}")
        try:
            number = float(value)
        except ValueError:
            raise HeadwikiError(f"bad --threshold {item!r}: {value!r} is not a number (e.g. induction=0.5)") from None
        if not 0.0 <= number <= 1.0:
            raise HeadwikiError(f"bad --threshold {item!r}: thresholds are on a 0..1 scale")
        out[role] = number
    return out


def resolve_thresholds(overrides: Mapping[str, float] | None) -> dict[str, float]:
    """DEFAULT_THRESHOLDS updated with `overrides` (unknown roles rejected)."""
    merged = dict(DEFAULT_THRESHOLDS)
    for role, value in (overrides or {}).items():
        if role not in ROLES:
            raise HeadwikiError(f"unknown role {role!r} in thresholds: use one of {', '.join(ROLES)}")
        merged[role] = float(value)
    return merged


def role_mask(score: torch.Tensor, lo: torch.Tensor, control: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which heads hold a role: score >= threshold AND lo > control.

    score, lo, control: [n_layers, n_heads] -> bool [n_layers, n_heads].
    """
    return (score >= threshold) & (lo > control)


def assign_roles(
    scores: Mapping[str, torch.Tensor],
    lows: Mapping[str, torch.Tensor],
    controls: Mapping[str, torch.Tensor],
    thresholds: Mapping[str, float],
) -> list[list[list[str]]]:
    """Roles per head: [n_layers][n_heads] -> list of role names in ROLES order."""
    masks = {r: role_mask(scores[r], lows[r], controls[r], thresholds[r]) for r in ROLES}
    n_layers, n_heads = scores[ROLES[0]].shape
    return [[[r for r in ROLES if bool(masks[r][layer, head])] for head in range(n_heads)] for layer in range(n_layers)]
