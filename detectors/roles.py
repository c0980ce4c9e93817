"""The role rule (the one place it lives) and role assignment.

A head gets a detector role when BOTH
  1. its score >= the role's threshold, and
  2. the lower bound of its 95% bootstrap CI exceeds the same head position's score on a
     random-initialized model of the same architecture and the same data (the control).

Each role is declared (headwiki.spec.Role: metric, threshold and why, text, colour, causal signature) in
the file of the detector that scores it; this module reads those declarations and declares the columns
the rule itself adds: ``<metric>_control`` per role, ``roles``, ``n_roles``, ``multi_role``, for a
metric declared as another's random-token control ``<metric>_positional``, and for a metric declared as another's
BOS-excluded score ``<metric>_bos_parked``.

BOS: a role reads its raw score (attention on BOS counts in the denominator). A BOS-excluded score (``*_nobos``,
TransformerLens's ``exclude_bos``) is stored beside it; a head whose raw score misses the threshold while its
BOS-excluded score clears it with at least MIN_NON_BOS_MASS of non-BOS attention is flagged ``<metric>_bos_parked``
(it does the role with the attention it does not park on BOS) — a flag beside the roles, not a role, because the
BOS-excluded score alone also "labels" heads whose attention is all on BOS.

Scale: headwiki's detector scores are normalized so that a perfect head scores 1.0 (induction and
duplicate_token average only over second-copy positions; previous_token over positions i >= 2).
This is NOT TransformerLens's detect_head "mul" scale, where rows without a target dilute the
score (a perfect induction head scores ~0.5 on [BOS, x, x]); the ``*_tl`` columns carry that scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from headwiki.errors import HeadwikiError
from headwiki.spec import SPEC, Metric, Role, bos_parked_name

if TYPE_CHECKING:  # annotations only
    import torch

ROLES_COLUMN = Metric("roles", "roles", "label", "label", "", "detector roles held (rule: headwiki.detectors.roles)",
                      dtype="VARCHAR[]", order=0)
N_ROLES = Metric("n_roles", "number of roles", "label", "label", "count", "number of detector roles held", dtype="BIGINT", order=1)
MULTI_ROLE = Metric("multi_role", "multi-role head", "label", "flag", "", "the head holds 2 or more detector roles",
                    dtype="BOOLEAN", order=2)
for _m in (ROLES_COLUMN, N_ROLES, MULTI_ROLE):
    SPEC.add_metric(_m)


RANDOM_INIT_CONTROL = "the same head position in a random-initialized model of the same architecture, on the same sequences"


def role_rule(metric: str, bos_flag: bool = True) -> str:
    """The rule text a detector role declares (one wording of the rule of this module)."""
    text = "raw score (BOS counted) >= threshold AND 95% CI lower bound > the random-init control"
    if bos_flag:
        text += (f"; a head below it whose BOS-excluded score clears the threshold with enough non-BOS mass is flagged "
                 f"{metric}_bos_parked, not labelled (headwiki.detectors.roles)")
    return text


def detector_roles() -> list[Role]:
    """Every declared detector role (built-ins and plugins), in display order."""
    from headwiki.detectors.registry import default_registry

    default_registry()
    return SPEC.roles_of("detector")


def role_names() -> tuple[str, ...]:
    return tuple(r.name for r in detector_roles())


def control_metrics() -> tuple[str, ...]:
    """The metrics that score a detector role (each gets a random-init control)."""
    return tuple(dict.fromkeys(r.metric for r in detector_roles()))


def default_thresholds() -> dict[str, float]:
    return {r.name: float(r.threshold if r.threshold is not None else 0.0) for r in detector_roles()}


def control_metric(role: Role) -> Metric:
    """The declaration of a role's random-init control column, `<metric>_control`."""
    return SPEC.add_metric(Metric(
        f"{role.metric}_control", f"{SPEC.metrics[role.metric].label} (random-init control)", "control", "control",
        SPEC.metrics[role.metric].unit,
        f"{role.metric} score of the same head position in a random-initialized model of the same architecture",
        data="the same sequences as the score", version=role.version))


def positional_flag(metric: Metric) -> Metric:
    """The flag of a metric declared as another's random-token control: `<metric>_positional`."""
    return SPEC.add_metric(Metric(
        f"{metric.control_for}_positional", f"{SPEC.metrics[metric.control_for].label}: positional", "label", "flag", "",
        f"{metric.name} >= the {metric.control_for} threshold: the head does it whatever the tokens (positional)",
        dtype="BOOLEAN", data=metric.data, version=metric.version))


# A BOS-parked head must still give at least this much attention to non-BOS keys on the scored rows: below it,
# the BOS-excluded score renormalizes leftovers (SmolLM2's 100%-BOS head scores 0.705 as induction with BOS
# excluded and its ablation does nothing), above it the head can act (SmolLM2's previous-token head with ~30% off
# BOS removes 21.5% of the in-context effect when ablated). 0.2 = a fifth of the mass, well clear of rounding noise.
MIN_NON_BOS_MASS = 0.2


def bos_parked(raw: Any, nobos: Any, bos_share: Any, threshold: float) -> Any:
    """The BOS-parked rule: the raw score misses `threshold`, the BOS-excluded score clears it, and at least
    MIN_NON_BOS_MASS of the rows' attention is off BOS. Arrays (or tensors) of one shape -> bool of that shape."""
    return (raw < threshold) & (nobos >= threshold) & (1.0 - bos_share >= MIN_NON_BOS_MASS)


def bos_parked_flag(metric: Metric) -> Metric:
    """The flag of a metric declared as another's BOS-excluded score: `<metric>_bos_parked`."""
    raw = SPEC.metrics[metric.bos_excluded_for]
    return SPEC.add_metric(Metric(
        bos_parked_name(raw.name), f"{raw.label}: BOS-parked", "label", "flag", "",
        f"{raw.name} < its role threshold but {metric.name} >= it with {metric.bos_share} <= {1 - MIN_NON_BOS_MASS:g}: "
        f"the head does {raw.label} with the attention it does not park on BOS (a flag, not a role)",
        dtype="BOOLEAN", data=metric.data, version=metric.version))


def parse_thresholds(items: Iterable[str]) -> dict[str, float]:
    """Parse CLI overrides like ["induction=0.5"] into {role: value}; bad input -> HeadwikiError."""
    names = role_names()
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise HeadwikiError(f"bad --threshold {item!r}: use ROLE=VALUE with ROLE one of {', '.join(names)}")
        try:
            number = float(value)
        except ValueError:
            raise HeadwikiError(f"bad --threshold {item!r}: {value!r} is not a number (e.g. {names[0]}=0.5)") from None
        declared = SPEC.roles.get(name)
        bounded = declared is None or SPEC.metrics[declared.metric].unit != "enrichment"  # enrichment: times a base rate
        if not 0.0 <= number or (bounded and number > 1.0):
            raise HeadwikiError(f"bad --threshold {item!r}: thresholds are on a 0..1 scale"
                                + ("" if bounded else " (this role: >= 0, times the base rate)"))
        out[name] = number
    return out


def resolve_thresholds(overrides: Mapping[str, float] | None) -> dict[str, float]:
    """The declared thresholds updated with `overrides` (unknown roles rejected)."""
    merged = default_thresholds()
    for name, value in (overrides or {}).items():
        if name not in merged:
            raise HeadwikiError(f"unknown role {name!r} in thresholds: use one of {', '.join(merged)}")
        merged[name] = float(value)
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
    """Roles per head: [n_layers][n_heads] -> list of role names in `thresholds` order.

    scores, lows, controls: {role: [n_layers, n_heads]} for every role in `thresholds`.
    """
    names = list(thresholds)
    masks = {r: role_mask(scores[r], lows[r], controls[r], thresholds[r]) for r in names}
    n_layers, n_heads = scores[names[0]].shape
    return [[[r for r in names if bool(masks[r][layer, head])] for head in range(n_heads)] for layer in range(n_layers)]
