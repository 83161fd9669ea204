"""bench3d2d.evaluation.statistics against independent implementations on fixed data (SciPy, statsmodels)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from bench3d2d.evaluation import statistics as stats


def _series(values, ids=None) -> pd.Series:
    ids = ids if ids is not None else [f"c{i:02d}" for i in range(len(values))]
    return pd.Series(np.asarray(values, dtype=float), index=ids)


# Fixed data covering each branch of SciPy's "auto" method.
RNG = np.random.default_rng(1234)
X_EXACT = RNG.normal(0.7, 0.1, 12)
Y_EXACT = X_EXACT - RNG.normal(0.02, 0.03, 12)  # no ties, no zeros -> exact
X_TIES = np.array([0.8, 0.7, 0.6, 0.9, 0.5, 0.75, 0.65, 0.85, 0.55, 0.95])
Y_TIES = X_TIES - np.array([0.1, 0.1, -0.05, 0.2, 0.1, 0.0, 0.05, -0.05, 0.1, 0.2])  # ties + a zero, n <= 13
X_NORMAL = np.round(RNG.normal(0.7, 0.1, 30), 2)
Y_NORMAL = np.round(X_NORMAL - RNG.normal(0.01, 0.02, 30), 2)  # ties and zeros, n > 13 -> normal
X_LARGE = RNG.normal(0.7, 0.1, 60)
Y_LARGE = X_LARGE - RNG.normal(0.005, 0.02, 60)  # n > 50 -> normal


@pytest.mark.parametrize(("x", "y", "method"), [
    (X_EXACT, Y_EXACT, "exact"),
    (X_TIES, Y_TIES, "permutation"),
    (X_NORMAL, Y_NORMAL, "normal"),
    (X_LARGE, Y_LARGE, "normal"),
])
def test_wilcoxon_matches_scipy_defaults(x, y, method):
    res = stats.paired_wilcoxon(_series(x), _series(y))
    ref = scipy.stats.wilcoxon(x, y)  # SciPy defaults: two-sided, "wilcox", no correction, "auto"
    assert res.p == pytest.approx(float(ref.pvalue), rel=1e-12, abs=1e-15)
    statistic = res.W
    assert statistic == pytest.approx(float(ref.statistic))
    assert res.method == method
    assert res.n == len(x)
    assert res.n_nonzero == int(np.count_nonzero(np.asarray(x) - np.asarray(y)))


def test_wilcoxon_pairs_by_case_id_not_by_row_order():
    ids = [f"c{i:02d}" for i in range(len(X_EXACT))]
    x = _series(X_EXACT, ids)
    y = _series(Y_EXACT, ids).iloc[::-1]  # same cases, reversed rows
    res = stats.paired_wilcoxon(x, y)
    assert res.p == pytest.approx(float(scipy.stats.wilcoxon(X_EXACT, Y_EXACT).pvalue), rel=1e-12)


def test_wilcoxon_drops_nan_pairs_and_missing_cases():
    x = X_EXACT.copy()
    y = Y_EXACT.copy()
    x[2], y[5] = np.nan, np.nan
    xs = _series(x)
    ys = _series(y).drop("c07")  # a case the other entry lacks
    res = stats.paired_wilcoxon(xs, ys)
    keep = [i for i in range(len(x)) if i not in (2, 5, 7)]
    ref = scipy.stats.wilcoxon(X_EXACT[keep], Y_EXACT[keep])
    assert res.n == len(keep)
    assert res.p == pytest.approx(float(ref.pvalue), rel=1e-12)


def test_wilcoxon_degenerate_inputs():
    same = stats.paired_wilcoxon(_series([0.5, 0.6, 0.7]), _series([0.5, 0.6, 0.7]))
    assert same.n == 3 and same.n_nonzero == 0 and same.p == 1.0  # SciPy's answer
    empty = stats.paired_wilcoxon(_series([np.nan, 0.6]), _series([0.5, np.nan]))
    assert empty.n == 0 and math.isnan(empty.p)


def test_holm_matches_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2, 0.049, 0.5])
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(stats.holm(p), expected, rtol=1e-12)


def test_holm_ignores_nan():
    p = np.array([0.01, np.nan, 0.04, 0.03])
    out = stats.holm(p)
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2, 3]], multipletests(p[[0, 2, 3]], method="holm")[1], rtol=1e-12)
    assert stats.holm([]).size == 0


def test_friedman_matches_scipy():
    rng = np.random.default_rng(7)
    wide = pd.DataFrame(rng.normal(0, 1, (15, 4)) + np.array([0, 0.3, 0.6, 0.9]),
                        columns=["a", "b", "c", "d"])
    wide.iloc[3, 1] = np.nan  # case 3 is not complete -> left out
    res = stats.friedman(wide)
    full = wide.dropna()
    ref = scipy.stats.friedmanchisquare(*[full[c] for c in full.columns])
    assert res.n == 14 and res.k == 4
    chi2 = res.Q
    assert chi2 == pytest.approx(ref.statistic, rel=1e-10)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert math.isnan(stats.friedman(wide.iloc[:2]).p)


def test_mean_ranks_respect_direction():
    wide = pd.DataFrame({"good": [0.9, 0.8, 0.85], "bad": [0.5, 0.6, 0.55], "mid": [0.7, 0.9, 0.6]})
    hi = stats.mean_ranks(wide, "higher")
    assert hi["good"] == pytest.approx(4 / 3) and hi["bad"] == pytest.approx(3.0)
    lo = stats.mean_ranks(wide, "lower")
    assert lo["bad"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="direction"):
        stats.mean_ranks(wide, "up")


def test_best_entry_respects_direction_then_median():
    summary = pd.DataFrame({"mean": [0.5, 0.7, 0.7, np.nan], "median": [0.5, 0.6, 0.65, 0.9]},
                           index=["a", "b", "c", "d"])
    assert stats.best_entry(summary, "higher") == "c"  # tie on mean, better median
    assert stats.best_entry(summary, "lower") == "a"


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    v = np.random.default_rng(3).normal(0.7, 0.1, 20)
    lo, hi = stats.bootstrap_ci(v, n_resamples=2000, seed=5)
    assert (lo, hi) == stats.bootstrap_ci(v, n_resamples=2000, seed=5)
    assert lo < v.mean() < hi
    ref = scipy.stats.bootstrap((v,), np.mean, n_resamples=2000, rng=np.random.default_rng(5))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert all(math.isnan(b) for b in stats.bootstrap_ci([0.5]))
    assert stats.bootstrap_ci([0.5, 0.5, np.nan]) == (0.5, 0.5)


def test_average_seeds_is_nan_aware_per_case():
    rows = []
    for seed, values in ((0, [0.6, np.nan]), (1, [0.8, np.nan]), (2, [0.7, 0.5])):
        for case, v in zip(("a", "b"), values):
            rows.append(["tr", "te", 100.0, case, "m", "none", seed, "dice", v])
    cases = pd.DataFrame(rows, columns=list(stats.CASE_COLUMNS))
    out = stats.average_seeds(cases).set_index("case_id")
    assert out.loc["a", "value"] == pytest.approx(0.7)
    assert out.loc["b", "value"] == pytest.approx(0.5)
    assert out.loc["b", "n_seeds"] == 3 and out.loc["b", "n_seeds_nan"] == 2
    with pytest.raises(ValueError, match="lacks column"):
        stats.average_seeds(cases.drop(columns="seed"))


def test_every_metric_of_the_harness_has_a_label_and_known_direction_rule():
    from bench3d2d.evaluation.metrics import METRICS

    assert set(METRICS) <= set(stats.METRIC_LABELS)
    assert stats.metric_direction("dice") == "higher"
    assert stats.metric_direction("area_diff_mm2") == "lower"
    assert stats.metric_direction("hd95_mm") == "lower"
    assert stats.metric_direction("area_diff_signed_mm2") is None
    assert set(stats.HEADLINE_METRICS) <= set(stats.METRIC_DIRECTION)


def test_per_rater_metrics_follow_their_base_metric():
    assert stats.metric_direction("dice:rater2") == "higher"
    assert stats.metric_direction("area_diff_mm2:rater1") == "lower"
    assert stats.metric_direction("interrater_dice") is None
    assert stats.metric_label("dice:rater2") == "Dice (rater2)"
    assert stats.metric_label("hd95_mm:rater1") == "HD95, rater1 (mm)"


def test_labels():
    assert stats.entry_label("fpbnet", "none") == "fpbnet (scratch)"
    assert stats.pretrain_label("slo") == "SSL-SLO" and stats.pretrain_label("faf") == "SSL-FAF"
    assert stats.pretrain_label("other") == "other"
