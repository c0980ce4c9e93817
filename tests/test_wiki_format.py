"""The wiki's one formatter (headwiki.wiki.format): numbers, CIs, p/q-values, units, ranks and articles."""

from __future__ import annotations

import pytest

from headwiki.stats import format_qvalue  # the stats module's own rule (re-exported from headwiki.pvalues)
from headwiki.wiki import format as fmt


def test_values_in_their_units() -> None:
    assert fmt.value(-0.12, "points", signed=True) == "-12.0 pts"  # accuracy differences are stored as fractions
    assert fmt.value(-0.12, "points", signed=True, sig=2, prose=True) == "-12 points"
    assert fmt.value(0.01, "points", signed=True, sig=1, prose=True) == "+1 point"  # never '1 points'
    assert fmt.value(0.01, "points", sig=2, prose=True) == "1.0 points"
    assert fmt.value(0.123456, "nats", signed=True) == "+0.123 nats"
    assert fmt.value(0.34, "percent") == "34.0%"
    assert fmt.value(0.4123, "fraction") == "0.412"
    assert fmt.value(2.5, "widgets") == "2.50 widgets", "an unknown unit is shown unscaled, named"
    assert fmt.value(None, "nats") == fmt.DASH and fmt.value(float("nan")) == fmt.DASH
    assert fmt.number(-0.0001, 2, signed=True) == "0.00", "no negative zero"
    assert fmt.unit_info("points").scale == 100 and fmt.unit_info("mystery").short == "mystery"


def test_estimate_and_ci_share_decimals_and_sign() -> None:
    assert fmt.estimate(0.41, 0.3812, 0.44, sig=2) == "0.41 [0.38, 0.44]"
    assert fmt.estimate(-0.12, -0.16, -0.08, "points", signed=True) == "-12.0 pts [-16.0, -8.0]"
    assert fmt.estimate(-0.12, -0.16, -0.08, "points", signed=True, sig=2, prose=True) == "-12 points [-16, -8]"
    assert fmt.estimate(0.05, -0.01, 0.12, signed=True, sig=2) == "+0.05 [-0.01, +0.12]"
    assert fmt.estimate(0.5, None, 0.6) == "0.500", "no CI without both bounds"
    assert fmt.ci(0.3812, 0.44, ref=0.41, sig=2) == "[0.38, 0.44]"


def test_p_and_q_values() -> None:
    assert fmt.qvalue(0.000666) == "< 0.001" and fmt.qvalue(0.000615) == "< 0.001"
    assert fmt.qvalue(0.004) == "0.004" and fmt.qvalue(0.0412) == "0.041"
    floor = 1 / 201
    # at a Monte-Carlo permutation floor the q is an upper bound: the stats module's own rule
    assert fmt.qvalue(0.0088, p=floor, floor=floor) == format_qvalue(0.0088, floor, floor) == "≤ 0.0088"
    assert fmt.qvalue(0.0088, p=floor, floor=floor, exact=True) == "0.0088"
    assert fmt.pvalue(floor, floor=floor) == "< 0.005" and fmt.pvalue(0.0002) == "< 0.001"
    assert fmt.pvalue(0.0002, floor=1e-5) == "< 0.001"


def test_words() -> None:
    assert fmt.with_article("induction head") == "an induction head"
    assert fmt.with_article("previous-token head") == "a previous-token head"
    assert fmt.with_article("BOS-sink head") == "a BOS-sink head"
    assert fmt.with_article("MLP") == "an MLP"
    assert fmt.plural(1, "head") == "1 head" and fmt.plural(3, "head") == "3 heads"
    assert fmt.rank_phrase(1) == "strongest" and fmt.rank_phrase(2) == "2nd-strongest"
    assert fmt.rank_phrase(1, 3) == "joint strongest" and fmt.tie_note(3) == "tied with 2 other heads"
    assert fmt.rank_phrase(11, 1, "largest") == "11th-largest"
    assert fmt.join(["a", "b", "c"]) == "a, b and c" and fmt.join(["a"]) == "a"


@pytest.mark.parametrize("doc_unit, expected", [("nats", "nats"), ("points", "points"), ("bits", "bits")])
def test_metric_unit_prefers_the_specification(doc_unit: str, expected: str) -> None:
    class Doc:  # a metric specification that carries its unit (issue 15's spec gives every metric one)
        name = "anything"
        unit = doc_unit
        is_accuracy_delta = False

    assert fmt.metric_unit(Doc()) == expected
