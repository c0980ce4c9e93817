"""BOS-sink detectors: how much attention a head parks on position 0 (BOS).

* ``bos_sink``: natural text windows [BOS, t_1..]: mean attention mass on position 0 over query positions
  i >= 1 (row 0 can only attend to itself), then over sequences. 1.0 = all attention parked on BOS (a
  "resting" head); uniform causal attention scores mean(1/(i+1)). It is the BOS share of the text detectors
  (``previous_token_nobos`` reads it).
* ``bos_parking`` (flag): ``bos_sink >= BOS_PARKING_AT`` — the head parks most of its attention on BOS. Its
  other scores are then read with care: the raw scores are diluted by the parked mass, and the BOS-excluded
  (``*_nobos``) scores renormalize what little is left (see headwiki.detectors.roles: the BOS-parked flags).
* ``bos_share_repeat``: the same BOS mass on the repeat sequences, over the second-copy rows that the
  induction and duplicate-token scores read (their BOS share).
"""

from __future__ import annotations

import torch

from headwiki.detectors.induction import bos_mass, second_copy_positions
from headwiki.detectors.registry import BatchMeta, Detector, register
from headwiki.spec import Metric

# "Most" of the attention: more than half of every row's mass (on average) sits on BOS, so the head's
# raw pattern scores are at most half their BOS-excluded value.
BOS_PARKING_AT = 0.5


def bos_sink_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """patterns: [b, n_layers, n_heads, s, s]; tokens: [b, s] -> [b, n_layers, n_heads]."""
    return patterns[..., 1:, 0].mean(-1)


def bos_share_repeat_scores(patterns: torch.Tensor, tokens: torch.Tensor, meta: BatchMeta) -> torch.Tensor:
    """Mean BOS mass over the second-copy rows of repeat sequences.

    patterns: [b, n_layers, n_heads, 2L+1, 2L+1]; tokens: [b, 2L+1] (unused) -> [b, n_layers, n_heads].
    """
    return bos_mass(patterns, second_copy_positions(meta.half_len))


def parking(per_seq: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """per_seq bos_sink [n, n_layers, n_heads] -> ({bos_sink: per_seq}, {bos_parking: bool [n_layers, n_heads]})."""
    return {METRIC.name: per_seq}, {PARKING.name: per_seq.double().mean(0) >= BOS_PARKING_AT}


METRIC = Metric(
    "bos_sink", "BOS sink", "detector", "score", "attention",
    "mean attention mass on position 0 (BOS) over query positions i >= 1, natural text",
    data="natural text windows", ci=True, heatmap=True, order=3,
    confound="removing a near-constant attention-sink output", strong_at=BOS_PARKING_AT,
)
PARKING = Metric(
    "bos_parking", "parks on BOS", "label", "flag", "",
    f"bos_sink >= {BOS_PARKING_AT}: the head parks most of its attention on BOS (its raw pattern scores are diluted, "
    "its BOS-excluded scores rest on the remaining mass)",
    data="natural text windows", dtype="BOOLEAN", order=20,
)
DETECTOR = register(Detector(name=METRIC.name, version="2", needs="text", fn=bos_sink_scores, metrics=(METRIC, PARKING),
                             reduce=parking))
REPEAT_METRIC = Metric(
    "bos_share_repeat", "BOS share (repeats)", "detector", "score", "attention",
    "mean attention mass on position 0 (BOS) over the second-copy rows of the repeat sequences (the rows the "
    "induction and duplicate-token scores read)",
    data="repeated random tokens [BOS, x_1..x_L, x_1..x_L]", ci=True, heatmap=False, order=13,
)
REPEAT_DETECTOR = register(Detector(name=REPEAT_METRIC.name, version=REPEAT_METRIC.version, needs="repeat",
                                    fn=bos_share_repeat_scores, metrics=(REPEAT_METRIC,)))
