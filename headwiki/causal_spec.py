"""The declarations of the validation pass's per-head causal columns and the names of its causal signatures
(headwiki.spec), torch-free: the pass (headwiki.ablation.validation) computes them, detector roles name the
signatures that validate them, and the wiki words sentences about them — all importing from here.
"""

from __future__ import annotations

import dataclasses

from headwiki.spec import Metric
from headwiki.spec import metric as spec_metric

DROP = "in_context_loss_drop"  # signature: first-copy minus second-copy loss on repeated random tokens
IND_SCORE = "induction_heads_score"  # signature: the labelled induction heads' induction score
IOI_LD = "ioi_logit_diff"  # signature: logit(IO) - logit(S) at the end of headwiki's IOI prompts (headwiki.ioi)
NEXT_ORDINAL = "next_ordinal_accuracy"  # signature: top-1 accuracy on "Monday, Tuesday, Wednesday," -> " Thursday"
#: one validation group of a prompt signature: (group name, its heads (layer, head), the matched random head sets)
HeadGroup = tuple[str, list[tuple[int, int]], list[list[tuple[int, int]]]]
#: what each signature measures, in words (validation notes, wiki sentences: "removes X% of <words>")
SIGNATURE_WORDS = {
    DROP: "the in-context loss drop on repeated random tokens (first-copy minus second-copy loss)",
    IND_SCORE: "the labelled induction heads' induction score (K-composition)",
    IOI_LD: "the IOI logit difference logit(IO) - logit(S) at the last token of headwiki's IOI prompts",
    NEXT_ORDINAL: ("the next-ordinal accuracy (top-1 over the vocabulary is the next member on prompts of three "
                   "consecutive ordinals, e.g. 'Monday, Tuesday, Wednesday,' -> ' Thursday'; headwiki.ordinals)"),
}
_SHARE_DATA = "repeated random-token sequences [BOS, x_1..x_L, x_1..x_L] (validation seed)"
CAUSAL_SHARE = spec_metric(Metric(
    "causal_share", "share of the in-context loss drop", "causal", "validation", "share",
    "fraction of the in-context loss drop (copy-1 minus copy-2 loss) removed when this head alone is ablated; ratio of "
    "means over sequences (mean and resample: only for the labelled induction heads and the causally important heads)",
    data=_SHARE_DATA, direction="signed", per_ablation=True, order=0))
CAUSAL_SHARE_ZERO = spec_metric(dataclasses.replace(CAUSAL_SHARE.expand("zero"), ci=True, heatmap=True))
CAUSAL_SHARE_EXACT = spec_metric(Metric(
    "causal_share_exact", "causal share measured exactly", "label", "flag", "",
    f"true: {CAUSAL_SHARE_ZERO.name} was measured by an exact single-head ablation; false: only its attribution estimate "
    "exists (CPU prefilter mode)", data=_SHARE_DATA, dtype="BOOLEAN"))
CAUSAL_SHARE_ATP = spec_metric(Metric(
    "causal_share_atp", "share of the in-context loss drop (attribution estimate)", "attribution", "estimate", "share",
    f"attribution-patching estimate (gradient x activation, one forward + backward) of {CAUSAL_SHARE_ZERO.name}, for every head",
    data=_SHARE_DATA, direction="signed"))
CAUSALLY_IMPORTANT = spec_metric(Metric(
    "causally_important", "causally important", "causal", "flag", "",
    f"among the heads with the largest {CAUSAL_SHARE_ZERO.name} and a 95% CI above 0", data=_SHARE_DATA, dtype="BOOLEAN"))

#: role_validation.group_name of the KV-group check (grouped-query attention only): every query head of the KV groups
#: that hold the role's labelled heads, ablated together, against random KV groups of the same layers. Heads of one
#: group share keys and values, so a labelled head's groupmates (e.g. a BOS-only head beside an induction head) are
#: what a KV-level intervention removes with it.
KV_GROUPS = "kv_groups"

#: role_validation.group_name of the BOS-parked check: the heads flagged `<metric>_bos_parked` for a role (raw score
#: below the threshold, BOS-excluded score above it; a flag, not a role) ablated together on the role's signatures,
#: against random head sets of the same layers — does the flagged head do the role's job?
BOS_PARKED_GROUP = "bos_parked"
