"""headwiki.stats checked against scipy and statsmodels (independent implementations; test-only dependencies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is in the test extra: pip install -e '.[test]'")
multitest = pytest.importorskip("statsmodels.stats.multitest", reason="statsmodels is in the test extra")

from headwiki.stats import (benjamini_hochberg, bootstrap_mean_ci, cluster_bootstrap_mean_ci, format_pvalue,  # noqa: E402
                            format_qvalue, signflip_pvalue)


def _scipy_signflip(d: np.ndarray) -> float:
    """Exact two-sided sign-flip p of sum(d) by scipy (pairs (d, 0) permuted within pair = sign flips)."""
    res = scipy_stats.permutation_test((d, np.zeros_like(d)), lambda x, y: np.sum(x - y), permutation_type="samples",
                                       n_resamples=np.inf, alternative="two-sided")
    return float(res.pvalue)


def test_exact_item_signflip_equals_scipy_permutation_test() -> None:
    rng = np.random.default_rng(0)
    d = np.stack([rng.normal(0.4, 1, 12), rng.normal(0, 1, 12), rng.normal(-1.5, 1, 12)], axis=1)  # [12, 3]
    test = signflip_pvalue(d)
    assert test.exact and test.n_clusters == 12 and test.floor == pytest.approx(2 / 4096)
    want = [_scipy_signflip(d[:, j]) for j in range(3)]
    np.testing.assert_allclose(test.p, want, rtol=1e-12)
    assert test.p[2] < 0.01 and test.p[1] > 0.05


def test_cluster_signflip_flips_whole_clusters_like_scipy_on_cluster_sums() -> None:
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(9), 5)  # 9 templates x 5 items
    template_effect = rng.normal(0.3, 1.0, 9)
    d = (template_effect[clusters] + rng.normal(0, 0.1, 45))[:, None]
    test = signflip_pvalue(d, clusters)
    sums = np.bincount(clusters, weights=d[:, 0])
    assert test.exact and test.n_clusters == 9
    assert test.p[0] == pytest.approx(_scipy_signflip(sums), rel=1e-12)
    # treating the 45 correlated items as independent claims far more certainty than 9 templates give
    assert signflip_pvalue(d).p[0] < test.p[0] / 5


def test_monte_carlo_is_adaptive_and_agrees_with_the_exact_test() -> None:
    rng = np.random.default_rng(2)
    d = np.stack([rng.normal(0.25, 1, 40), rng.normal(1.2, 1, 40), np.zeros(40)], axis=1)
    mc = signflip_pvalue(d, n_perm=2000, max_perm=64_000, seed=3)  # 40 items: 2**40 patterns, Monte Carlo
    assert not mc.exact
    want = scipy_stats.permutation_test((d[:, 0], np.zeros(40)), lambda x, y: np.sum(x - y),
                                                    permutation_type="samples", n_resamples=200_000,
                                                    alternative="two-sided", random_state=4).pvalue
    assert mc.p[0] == pytest.approx(want, rel=0.25)  # a p near 0.1 is resolved to ~5% by 2000+ draws
    assert mc.n_perm[0] == 2000  # enough exceedances at once: no more draws for this column
    assert mc.n_perm[1] == 64_000 and mc.p[1] == pytest.approx(1 / 64_001) and mc.at_floor()[1]
    assert mc.p[2] == 1.0 and not mc.at_floor()[0]
    assert format_pvalue(mc.p[1], mc.floor) == "< 1.6e-05" and format_pvalue(mc.p[0], mc.floor).startswith("0.")


def test_pvalues_resolve_the_ranking_beyond_the_old_floor() -> None:
    """Effects that all sat at the old 1/(n_perm+1) floor get distinct p-values in the order of their effects."""
    rng = np.random.default_rng(5)
    n = 30
    noise = rng.normal(0, 1, n)
    noise = (noise - noise.mean()) / noise.std()
    d = np.stack([noise + mu for mu in (0.85, 0.95, 1.05)], axis=1)  # same spread, growing effect
    old_floor = 1 / 2001
    old = signflip_pvalue(d, n_perm=2000, max_perm=2000, seed=6)
    assert (old.p[1:] == old_floor).all()  # what the pass reported before: a tie at the floor
    test = signflip_pvalue(d, n_perm=2000, max_perm=400_000, seed=6)
    assert test.p[0] > test.p[1] > test.p[2] and test.p[2] < old_floor / 2
    assert not test.at_floor().any()


def test_benjamini_hochberg_equals_statsmodels() -> None:
    rng = np.random.default_rng(7)
    p = np.concatenate([rng.uniform(0, 1, 90), rng.uniform(0, 0.002, 10)])
    want = multitest.multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(benjamini_hochberg(p), want, rtol=1e-12)
    with_nan = p.copy()
    with_nan[3] = np.nan
    got = benjamini_hochberg(with_nan)
    assert np.isnan(got[3])
    np.testing.assert_allclose(np.delete(got, 3), multitest.multipletests(np.delete(p, 3), method="fdr_bh")[1], rtol=1e-12)


def test_bootstrap_cis_agree_with_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(8)
    x = rng.exponential(1.0, 80)
    ref = scipy_stats.bootstrap((x,), np.mean, n_resamples=20_000, method="percentile", random_state=9).confidence_interval
    mean, lo, hi = bootstrap_mean_ci(torch.from_numpy(x)[:, None], n_boot=20_000, seed=10)
    assert float(mean) == pytest.approx(x.mean())
    assert float(lo) == pytest.approx(ref.low, abs=0.02) and float(hi) == pytest.approx(ref.high, abs=0.02)
    # every item its own cluster: the cluster bootstrap is the ordinary bootstrap
    cmean, clo, chi = cluster_bootstrap_mean_ci(x[:, None], np.arange(80), n_boot=20_000, seed=11)
    assert float(clo[0]) == pytest.approx(ref.low, abs=0.02) and float(chi[0]) == pytest.approx(ref.high, abs=0.02)


def test_values_at_the_floor_are_shown_as_bounds() -> None:
    floor = 1 / 100_001
    assert format_pvalue(floor, floor) == "< 1e-05" and format_pvalue(3e-4, floor) == "0.0003"
    assert format_pvalue(2 / 2**14, 2 / 2**14, exact=True) == "0.00012"  # exact: the value, not a bound
    assert format_qvalue(1.6e-4, floor, floor) == "≤ 0.00016" and format_qvalue(1.6e-4, 2e-5, floor) == "0.00016"


def test_resample_counts_equal_the_add_at_counts() -> None:
    """The bincount behind every cluster bootstrap counts each draw exactly as np.add.at did (same CIs, faster)."""
    from headwiki.stats import resample_counts

    rng = np.random.default_rng(3)
    for n_boot, k in ((200, 37), (50, 1), (1, 5)):
        draws = rng.integers(0, k, size=(n_boot, k))
        want = np.zeros((n_boot, k))
        np.add.at(want, (np.repeat(np.arange(n_boot), k), draws.ravel()), 1.0)
        got = resample_counts(draws, k)
        assert got.dtype == np.float64 and np.array_equal(got, want) and got.sum() == n_boot * k
