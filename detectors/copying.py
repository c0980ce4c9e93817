"""Copying and copy-suppression heads from the weights: the OV circuit's eigenvalue positivity.

Score (Elhage et al. 2021): sum(lambda) / sum(|lambda|) over the eigenvalues of the head's full OV circuit in token
space, E diag(g_L) W_V W_O U (headwiki.ov_circuit: how it is folded and why the d_head x d_head matrix suffices),
in [-1, 1]. ``copying`` is the score; ``copy_suppression`` is its negation (so both roles read "score >= threshold"):
a head whose OV circuit writes each attended token's own logit down (McDougall et al. 2023).

Data: the weights only (embedding, W_V, W_O, unembedding, LayerNorm gains) — deterministic, no sampling, so the
columns' "CI" is zero-width (``_lo = _hi = value``) and the evidence against chance is the random-init control:
the same score of the same head in a random-initialized model of the same shapes (``<metric>_control``); the run's
docs give that control's spread over all heads.

Threshold 0.5 for both roles, fixed before looking at any model: (P - N) / (P + N) >= 0.5 means the positive
eigenvalue mass P is at least three times the negative mass N (for suppression, the other way round). A random
OV circuit's eigenvalues scatter around 0 (random-init SmolLM2-135M: all 270 heads within [-0.061, +0.065]; the toy model, d_head 16: within [-0.13, +0.11]).
"""

from __future__ import annotations

import torch

from headwiki.causal_spec import NEXT_ORDINAL
from headwiki.detectors.weights import OVWeights, WeightContext, WeightDetector, register_weights
from headwiki.ov_circuit import copying_scores
from headwiki.spec import Metric, Role, role

THRESHOLD = 0.5
_DATA = ("model weights only: E = the effective embedding W_E + MLP_0(W_E), normalized as the attention LayerNorm sees "
         "it; W_V with the attention-LayerNorm gain (each query head its KV head's W_V); W_O; W_U with the final-LayerNorm "
         "gain; deterministic")
_CI = "no sampling: the interval is zero-width (lo = hi = value); compare with the random-init control"
METRIC = Metric(
    "copying", "OV copying", "detector", "score", "",
    "eigenvalue positivity sum(lambda)/sum(|lambda|) of the head's full OV circuit E W_V W_O W_U over the vocabulary "
    "(computed from the d_head x d_head matrix W_O (W_U E) W_V, which has the same nonzero eigenvalues); +1 copies the "
    f"attended token, -1 suppresses it; {_CI}",
    data=_DATA, direction="signed", ci=True, heatmap=True, order=20,
    confound="lost copying of attended tokens to the output",
)
SUPPRESSION = Metric(
    "copy_suppression", "OV copy suppression", "detector", "score", "",
    f"minus the OV copying score (-sum(lambda)/sum(|lambda|)): +1 when the head writes down the logit of the token it attends to; {_CI}",
    data=_DATA, ci=True, heatmap=False, order=21,
    confound="lost suppression of already-seen tokens (copy suppression)",
)


def copying_columns(weights: OVWeights, context: WeightContext) -> dict[str, torch.Tensor]:
    """{copying, copying_lo, copying_hi, copy_suppression(+_lo/_hi)}: each [n_layers, n_heads] (zero-width CI)."""
    score = copying_scores(weights.W_V, weights.W_O, weights.G)
    out = {}
    for name, value in ((METRIC.name, score), (SUPPRESSION.name, -score)):
        out.update({name: value, f"{name}_lo": value, f"{name}_hi": value})
    return out


DETECTOR = register_weights(WeightDetector(name=METRIC.name, version="2", fn=copying_columns, metrics=(METRIC, SUPPRESSION)))
_RULE = "score >= threshold AND score > the random-init control (weights only: no CI to take a bound of)"
_CONTROL = "the same score of the same head position in a random-initialized model of the same shapes (weights only)"
ROLE = role(Role(
    METRIC.name, "copying", "detector", METRIC.name,
    text="copies the tokens it attends to into the output (its OV circuit has mostly positive eigenvalues)",
    colour="#8c510a", threshold=THRESHOLD, rule=_RULE, control=_CONTROL,
    consequence="lost copying of attended tokens to the output",
    no_signature="a weights-only score: the OV circuit's direct effect on the logits; which behaviour needs it depends on where the head attends",
    citation="Elhage et al. 2021, A Mathematical Framework for Transformer Circuits (OV eigenvalue positivity)",
    order=20,
))
SUPPRESSION_ROLE = role(Role(
    SUPPRESSION.name, "copy suppression", "detector", SUPPRESSION.name,
    text="writes down the logits of the tokens it attends to (its OV circuit has mostly negative eigenvalues)",
    colour="#01665e", threshold=THRESHOLD, rule=_RULE, control=_CONTROL,
    consequence="over-prediction of tokens already in the context",
    # in a list the next member must not repeat an earlier one: without copy suppression the model copies a member
    # already in the context (McDougall et al.: these heads lower the logits of context tokens the model over-predicts)
    signatures=(NEXT_ORDINAL,),
    citation="McDougall et al. 2023, Copy Suppression: Comprehensively Understanding an Attention Head; score: Elhage et al. 2021",
    order=21,
))
