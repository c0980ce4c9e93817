"""Thresholds of the negation-role rule, shared by the ablation pass (which applies them) and the wiki (which
words its sentences with them). Pure constants: importing this module imports nothing heavy.

The rule itself and its reasoning: :mod:`headwiki.ablation.negation_specific`.
"""

from __future__ import annotations

ALPHA = 0.05  # BH q-value below which an effect is significant
MIN_ACC_DELTA = 0.05  # 5 points of accuracy: the seed's noise warning for sub-5-point deltas
MIN_REVERSAL_DELTA = 0.05  # 5% of the control sentence's preference for the target
CHANCE = 0.5  # two-alternative items
