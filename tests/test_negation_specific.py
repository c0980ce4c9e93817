"""The negation-specific effect (reversal R) and the role rule, on planted ablation outcomes.

Each planted "head" is an ablated copy of the same clean logit differences: scaling every LD, acting
only on the negated prompt, shifting every LD alike, or breaking affirmative and negated answers alike.
The scores go through the pass's own functions (item_values, paired_effects, reversal_effects, the
role rule), exactly as the ablation pass calls them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from headwiki.ablation.effects import METRICS, item_values, paired_effects
from headwiki.ablation.negation_specific import MIN_REVERSAL_DELTA, reversal, reversal_effects
from headwiki.ablation.run import AblateResult, _baselines_frame, _roles

N = 240


def _slot_lp(ld: np.ndarray) -> torch.Tensor:
    """LDs [..., n, 3] -> slot log-probs [..., n*3*2] with logprob(target) = LD and logprob(foil) = 0."""
    lp = np.zeros((*ld.shape, 2))
    lp[..., 0] = ld
    return torch.from_numpy(lp.reshape(*ld.shape[:-2], -1))


@pytest.fixture(scope="module")
def clean_ld() -> np.ndarray:
    rng = np.random.default_rng(0)
    aff = rng.normal(6.0, 2.0, N)
    ctrl = aff + rng.normal(0.0, 0.5, N)
    neg = -0.5 * ctrl + rng.normal(0.0, 1.0, N)  # R ~ 0.5
    return np.stack([aff, neg, ctrl], axis=1)


def _planted(clean: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    only_not = clean.copy()
    only_not[:, 1] += 2.5  # acts only when "not" is present: the negated LD moves towards the affirmative answer
    stronger = clean.copy()
    stronger[:, 1] -= 2.5  # removing it makes 'not' reverse more: the head pushed the shortcut
    general = clean.copy()
    broken = rng.random(N) < 0.4  # on 40% of items both affirmative and negated answers flip
    general[broken, 0] = -np.abs(general[broken, 0])
    general[broken, 1] = np.abs(general[broken, 1])
    return {
        "scales_everything": 0.5 * clean,
        "shifts_everything": clean - 1.5,
        "only_negated": only_not,
        "strengthens_reversal": stronger,
        "general": general,
        "nothing": clean.copy(),
    }


def _roles_for(clean: np.ndarray, planted: dict[str, np.ndarray]) -> dict[str, str | None]:
    names = list(planted)
    ablated = np.stack([planted[n] for n in names])  # [m, N, 3]
    clusters = np.arange(N) // 4  # 60 templates of 4 items
    base_vals = item_values(_slot_lp(clean)).numpy()
    vals = item_values(_slot_lp(ablated)).numpy()
    eff = paired_effects(base_vals, vals, clusters, n_boot=500, n_perm=500)
    rev = reversal_effects(clean, ablated, clusters, n_boot=500, n_perm=500)
    return dict(zip(names, _roles(eff, rev)))


def test_reversal_is_scale_invariant_and_moves_with_negation_only(clean_ld: np.ndarray) -> None:
    planted = _planted(clean_ld)
    r0 = float(reversal(clean_ld))
    assert 0.3 < r0 < 0.7
    assert float(reversal(planted["scales_everything"])) == pytest.approx(r0, abs=1e-12)
    assert float(reversal(planted["only_negated"])) < r0 - MIN_REVERSAL_DELTA
    assert float(reversal(planted["strengthens_reversal"])) > r0 + MIN_REVERSAL_DELTA


def test_planted_heads_get_the_roles_the_rule_promises(clean_ld: np.ndarray) -> None:
    roles = _roles_for(clean_ld, _planted(clean_ld))
    assert roles["scales_everything"] is None, "a head that only scales the fact's evidence is not a negation head"
    assert roles["shifts_everything"] is None, "an additive shift of every LD is not negation-specific"
    assert roles["only_negated"] == "negation_supporter"
    assert roles["strengthens_reversal"] == "shortcut_promoter"
    assert roles["general"] == "general_damage"
    assert roles["nothing"] is None


def test_reversal_ci_and_p_behave(clean_ld: np.ndarray) -> None:
    planted = _planted(clean_ld)
    ablated = np.stack([planted["only_negated"], planted["scales_everything"], planted["nothing"]])
    rev = reversal_effects(clean_ld, ablated, np.arange(N) // 4, n_boot=400, n_perm=400, seed=3)
    assert rev.defined and rev.clean_lo < rev.clean < rev.clean_hi
    assert rev.lo[0] <= rev.delta[0] <= rev.hi[0] < 0
    assert rev.p[0] < 0.01 and rev.q[0] < 0.05
    assert abs(rev.delta[1]) < 1e-12 and rev.p[1] > 0.5
    assert rev.p[2] == 1.0 and rev.delta[2] == 0.0


def test_reversal_undefined_when_control_is_not_preferred(clean_ld: np.ndarray) -> None:
    at_chance = clean_ld.copy()
    at_chance[:, 2] = np.random.default_rng(5).normal(0.0, 3.0, N)  # the model does not know the facts
    rev = reversal_effects(at_chance, at_chance[None] * 0.9, np.arange(N), n_boot=200, n_perm=200)
    assert not rev.defined and np.isnan(rev.delta).all() and np.isnan(rev.q).all()
    vals = item_values(_slot_lp(at_chance)).numpy()
    frame = _baselines_frame(vals, at_chance, rev, np.arange(N), "m", "d", "run", n_boot=200, seed=0)
    control = frame.set_index("condition").loc["control"]
    assert not control["informative"] and "chance" in control["note"]
    assert not frame.set_index("condition").loc["reversal", "informative"]
    assert frame.set_index("condition").loc["affirmative", "informative"]


def test_top_heads_lists_each_sign_only_in_its_own_table() -> None:
    heads = pd.DataFrame({
        "label": ["L0H0", "L0H1", "L0H2", "L0H3"],
        "reversal_delta_zero": [-0.2, 0.3, -0.05, 0.1],
        "reversal_delta_zero_lo": [-0.3, 0.2, -0.1, 0.05], "reversal_delta_zero_hi": [-0.1, 0.4, 0.0, 0.2],
        "reversal_delta_zero_q": [0.01, 0.01, 0.5, 0.02], "reversal_delta_zero_p": [0.001, 0.001, 0.4, 0.01],
        "sens_delta_zero": [-1.0, 1.0, 0.0, 0.5], "neg_acc_delta_zero": [-0.1, 0.1, 0.0, 0.0],
        "aff_acc_delta_zero": [0.0, 0.0, 0.0, 0.0], "negation_role": [None, None, None, None],
    })
    result = AblateResult("r", "m", "d", 10, ("zero",), heads, *(pd.DataFrame() for _ in range(4)))
    lower, higher = result.top_heads("zero")
    assert list(lower["label"]) == ["L0H0"]
    assert list(higher["label"]) == ["L0H1", "L0H3"]
    assert (lower["reversal_delta_zero"] < 0).all() and (higher["reversal_delta_zero"] > 0).all()


def test_metrics_include_raw_lds_per_condition() -> None:
    assert {"aff_ld", "neg_ld", "ctrl_ld"} <= set(METRICS)
