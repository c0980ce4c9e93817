"""The declarations of the negation pass's metrics and roles (headwiki.spec), torch-free.

The ablation pass computes these columns (headwiki.ablation.effects.item_values, .negation_specific,
.run) and the wiki words sentences about them; both import the declarations from here, so each name is
spelled once. The thresholds and the rule text live in :mod:`headwiki.negation_rule`.
"""

from __future__ import annotations

from headwiki.negation_rule import MIN_ACC_DELTA, MIN_REVERSAL_DELTA, RULE_TEXT
from headwiki.spec import Metric, Role, role
from headwiki.spec import metric as spec_metric

# item metric -> (label, unit, what it measures): the declaration of each `<metric>_delta_<ablation>` column
_ITEM_METRICS: dict[str, tuple[str, str, str]] = {
    "neg_acc": ("negated accuracy Δ", "points", "negated accuracy (foil preferred after the negated prompt)"),
    "aff_acc": ("affirmative accuracy Δ", "points", "affirmative accuracy (target preferred after the affirmative prompt)"),
    "ctrl_acc": ("control accuracy Δ", "points", "control accuracy (target preferred after the control prompt)"),
    "sens": ("negation sensitivity Δ", "nats",
             "mean sensitivity S = LD_ctrl - LD_neg (LD = logprob(target) - logprob(foil), summed over candidate tokens)"),
    "neg_ld": ("negated logit difference Δ", "nats", "mean LD_neg (raw logit difference on the negated prompt, nats)"),
    "aff_ld": ("affirmative logit difference Δ", "nats", "mean LD_aff (raw logit difference on the affirmative prompt, nats)"),
    "ctrl_ld": ("control logit difference Δ", "nats", "mean LD_ctrl (raw logit difference on the control prompt, nats)"),
}
EFFECT_SPECS: dict[str, Metric] = {
    m: spec_metric(Metric(
        f"{m}_delta", label, "negation", "delta", unit, f"change in {what} when the head is ablated (ablated - clean, mean over items)",
        data="negation items", direction="signed", ci=True, pq=True, heatmap=True, per_ablation=True, order=10 + i))
    for i, (m, (label, unit, what)) in enumerate(_ITEM_METRICS.items())
}

REVERSAL = spec_metric(Metric(
    "reversal_delta", "negation-specific reversal Δ", "negation", "delta", "ratio",
    "change in reversal R = -mean LD_neg / mean LD_ctrl (the fraction of the control preference that 'not' reverses; "
    "the negation-specific effect, unchanged when every LD is scaled alike) when the head is ablated",
    data="negation items", direction="signed", ci=True, pq=True, heatmap=True, per_ablation=True, order=9))
_NEG_ACC = EFFECT_SPECS["neg_acc"]
SUPPORTER = role(Role(
    "negation_supporter", "negation supporter", "negation", REVERSAL.name, colour="#2166ac", rule=RULE_TEXT,
    text=("ablating it weakens the reversal R that 'not' applies (ΔR < 0 and ΔS < 0, both q < 0.05) by at "
          f"least {MIN_REVERSAL_DELTA} of the control preference or {MIN_ACC_DELTA * 100:.0f} points of negated accuracy: the model "
          "needs it to handle 'not', beyond any scaling of the evidence for the fact"),
    control="the clean model on the same items (paired), BH across heads", consequence="weaker handling of 'not'", order=10))
PROMOTER = role(Role(
    "shortcut_promoter", "shortcut promoter", "negation", REVERSAL.name, colour="#b2182b", rule=RULE_TEXT,
    text=(f"ablating it strengthens the reversal R (ΔR > 0 and ΔS > 0, both q < 0.05) by at least {MIN_REVERSAL_DELTA} or "
          f"{MIN_ACC_DELTA * 100:.0f} points of negated accuracy: it pushes the affirmative answer despite 'not'"),
    control="the clean model on the same items (paired), BH across heads", consequence="a stronger affirmative shortcut",
    order=11))
DAMAGE = role(Role(
    "general_damage", "general damage", "negation", _NEG_ACC.name, colour="#6b6b6b", rule=RULE_TEXT,
    text=(f"ablating it lowers affirmative and negated accuracy alike (each by at least {MIN_ACC_DELTA * 100:.0f} points, "
          "q < 0.05): it is needed for the facts, not specifically for negation"),
    control="the clean model on the same items (paired), BH across heads", consequence="lost facts", order=12))

# The label columns the pass writes beside the effects.
NEGATION_ROLE = spec_metric(Metric("negation_role", "negation role", "label", "label", "",
                                   f"{RULE_TEXT}; from zero ablation (the first ablation run when zero was not)", dtype="VARCHAR"))
KINDS_DISAGREE = spec_metric(Metric(
    "ablation_kinds_disagree", "ablation kinds disagree", "label", "flag", "",
    "TRUE when two ablation kinds (zero, mean, resample) disagree on the head's negation-specific reversal Δ or "
    "negated-accuracy Δ: both significant (q < 0.05) with opposite signs, or non-overlapping 95% CIs", dtype="BOOLEAN"))
DISAGREEMENT = spec_metric(Metric("ablation_disagreement", "ablation disagreement", "label", "label", "",
                                  "which ablation kinds disagree on which effect, in words (NULL when they agree)", dtype="VARCHAR"))
NEGATION_DATASET = spec_metric(Metric("negation_dataset", "negation dataset", "label", "label", "",
                                      "the dataset the negation columns were computed on", dtype="VARCHAR"))
ABLATION_EXACT = spec_metric(Metric(
    "ablation_exact", "exact ablation", "label", "flag", "",
    "true: this head's negation columns come from exact ablations; false: it was not ablated exactly "
    "(prefilter mode) and only its attribution estimates (_atp_ columns) exist", dtype="BOOLEAN"))
SELECTED_BY = spec_metric(Metric(
    "ablation_selected_by", "why ablated exactly", "label", "label", "",
    "why the head was ablated exactly: all (exact mode), attribution_top_k (top-K by |attribution estimate of "
    "delta S|), random_check (a random head measured to check what the prefilter misses), NULL (estimate only)",
    dtype="VARCHAR"))
