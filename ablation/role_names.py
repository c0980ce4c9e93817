"""The negation roles the ablation pass assigns (``heads.negation_role``), importable without torch.

The rule that assigns them is :func:`headwiki.ablation.effects.negation_roles` (it returns these names).
"""

from __future__ import annotations

ROLES: tuple[str, ...] = ("shortcut_promoter", "negation_supporter", "general_damage")
