"""Declarations of the per-head label-stability columns (headwiki.spec), torch-free: the detect pass fills them
(headwiki.detectors.stability) and the wiki marks borderline labels with them.
"""

from __future__ import annotations

from headwiki.spec import SPEC, Metric

STABLE = SPEC.add_metric(Metric(
    "roles_stable", "stable roles", "label", "label", "",
    "roles held whose 95% CI lower bound clears the threshold and whose score clears it in every grid setting "
    "(half span length, second seed, both; headwiki.detectors.stability)", dtype="VARCHAR[]", order=3))
BORDERLINE = SPEC.add_metric(Metric(
    "roles_borderline", "borderline roles", "label", "label", "",
    "roles whose label depends on the setting: held but not stable, or not held although a grid setting or the CI's "
    "upper bound reaches the threshold (headwiki.detectors.stability)", dtype="VARCHAR[]", order=4))
