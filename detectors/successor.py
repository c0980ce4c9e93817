"""Successor heads from the weights (Gould et al. 2024, "Successor Heads: Recurring, Interpretable Attention Heads
In The Wild").

Data: the ordinal sequences of headwiki.ordinals (numbers 1-20, number words, days, months, letters) that are single
tokens of the model's tokenizer. Score: over every (member, successor) pair of those sequences, the fraction whose
successor gets the largest direct logit among the sequence's members (itself included) when the head's OV circuit
reads the member's embedding (row of E diag(g_L) W_V W_O U, headwiki.ov_circuit); 95% Wilson interval over the
pairs. ``successor_random``: the same score on random ordinary tokens in arbitrary order, runs of the same lengths
(what the score gives when there is no order to follow). Role control: the same score of the same head position
in a random-initialized model of the same shapes. NaN when the tokenizer holds no ordinal run (toy and
word-level test tokenizers).

Threshold 0.5 (fixed in advance): the successor beats every other member for at least half of the pairs; chance
is 1/(run length), 0.04-0.14 for these sequences.
"""

from __future__ import annotations

import math

import torch

from headwiki.causal_spec import NEXT_ORDINAL
from headwiki.detectors.weights import OVWeights, WeightContext, WeightDetector, register_weights
from headwiki.ordinals import OrdinalRun, n_pairs
from headwiki.ov_circuit import successor_hits
from headwiki.spec import Metric, Role, role
from headwiki.stats import wilson_interval

THRESHOLD = 0.5
_DATA = "ordinal sequences of single tokens (numbers 1-20, number words, days, months, letters: headwiki.ordinals) and the model weights"
METRIC = Metric(
    "successor", "successor (OV)", "detector", "score", "share",
    "fraction of ordinal pairs (t_i, t_i+1) whose successor gets the top direct logit among its sequence's members when "
    "the head's OV circuit reads t_i's embedding; 95% Wilson interval over the pairs",
    data=_DATA, ci=True, heatmap=True, order=22, confound="lost ordinal successor prediction (Monday -> Tuesday)",
)
RANDOM = Metric(
    "successor_random", "successor (OV), random-token runs", "control", "control", "share",
    "the successor score on runs of random ordinary tokens in arbitrary order (same lengths): the score without an order to follow",
    data="seeded random ordinary tokens, runs of the ordinal runs' lengths", order=23,
)


def _score(weights: OVWeights, runs: list[OrdinalRun]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_layers, n_heads = weights.W_O.shape[:2]
    n = n_pairs(runs)
    if n == 0:
        nan = torch.full((n_layers, n_heads), math.nan, dtype=torch.float64)
        return nan, nan.clone(), nan.clone()
    hits = successor_hits(weights.E, weights.W_V, weights.W_O, weights.U, [r.ids for r in runs])  # [L, H, n]
    k = hits.sum(-1)
    ci = [[wilson_interval(int(k[layer, h]), n) for h in range(n_heads)] for layer in range(n_layers)]
    ci_t = torch.tensor(ci, dtype=torch.float64)
    return k.double() / n, ci_t[..., 0], ci_t[..., 1]


def successor_columns(weights: OVWeights, context: WeightContext) -> dict[str, torch.Tensor]:
    """{successor, successor_lo, successor_hi, successor_random}: each [n_layers, n_heads]."""
    score, lo, hi = _score(weights, context.runs)
    rand, _, _ = _score(weights, context.random_runs)
    return {METRIC.name: score, f"{METRIC.name}_lo": lo, f"{METRIC.name}_hi": hi, RANDOM.name: rand}


DETECTOR = register_weights(WeightDetector(name=METRIC.name, version="2", fn=successor_columns, metrics=(METRIC, RANDOM),
                                             ordinal=True))
ROLE = role(Role(
    METRIC.name, "successor", "detector", METRIC.name,
    text="maps an ordinal token to its successor (Monday -> Tuesday, 3 -> 4) through its OV circuit",
    colour="#c51b7d", threshold=THRESHOLD,
    rule="score >= threshold AND 95% Wilson lower bound > the random-init control",
    control="the same score of the same head position in a random-initialized model of the same shapes; beside it, the score on random-token runs (successor_random)",
    consequence="lost ordinal successor prediction (Monday -> Tuesday)",
    signatures=(NEXT_ORDINAL,),
    citation="Gould et al. 2024, Successor Heads: Recurring, Interpretable Attention Heads In The Wild (ICLR 2024)",
    order=22,
))
