"""Thresholds of the negation-role rule, shared by the ablation pass (which applies them) and the wiki (which
words its sentences with them). Pure constants: importing this module imports nothing heavy.

The rule itself and its reasoning: :mod:`headwiki.ablation.negation_specific`.
"""

from __future__ import annotations

ALPHA = 0.05  # BH q-value below which an effect is significant
MIN_ACC_DELTA = 0.05  # 5 points of accuracy: the seed's noise warning for sub-5-point deltas
MIN_REVERSAL_DELTA = 0.05  # 5% of the control sentence's preference for the target
CHANCE = 0.5  # two-alternative items

RULE_TEXT = (
    "negation role from the negation-specific effect ΔR (R = -mean LD_neg / mean LD_ctrl, the fraction of the control "
    f"preference that 'not' reverses): general_damage when affirmative and negated accuracy both fall by >= {MIN_ACC_DELTA:.0%} "
    f"with BH q < {ALPHA}; else negation_supporter (ΔR < 0) or shortcut_promoter (ΔR > 0) when ΔR and ΔS both have "
    f"q < {ALPHA} with the same sign and the effect is large: |ΔR| >= {MIN_REVERSAL_DELTA} or negated accuracy moves the "
    f"same way by >= {MIN_ACC_DELTA:.0%} (q < {ALPHA}), never the other way; else NULL"
)
