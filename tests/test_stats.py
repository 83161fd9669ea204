"""bench3d2d.evaluation.statistics against independent implementations on fixed data (SciPy, statsmodels),
and against pingouin (GPL-3.0, used here only, as a cross-check) where it is installed."""

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


# Fixed data: no ties (SciPy's exact test applies), ties and zeros (permutation), many pairs.
RNG = np.random.default_rng(1234)
X_EXACT = RNG.normal(0.7, 0.1, 12)
Y_EXACT = X_EXACT - RNG.normal(0.02, 0.03, 12)  # no ties, no zeros
X_TIES = np.array([0.8, 0.7, 0.6, 0.9, 0.5, 0.75, 0.65, 0.85, 0.55, 0.95])
Y_TIES = X_TIES - np.array([0.1, 0.1, -0.05, 0.2, 0.1, 0.0, 0.05, -0.05, 0.1, 0.2])  # ties + a zero
X_NORMAL = np.round(RNG.normal(0.7, 0.1, 60), 2)
Y_NORMAL = np.round(X_NORMAL - RNG.normal(0.01, 0.02, 60), 2)  # ties and zeros, > 50 non-zero pairs


def _scipy_exact(x, y) -> float:
    """SciPy's exact permutation p-value of the signed-rank test (zeros discarded, ties mid-ranked)."""
    d = np.asarray(x) - np.asarray(y)
    d = d[d != 0]
    return float(scipy.stats.wilcoxon(d, method=scipy.stats.PermutationMethod(n_resamples=2**20)).pvalue)


@pytest.mark.parametrize(("x", "y"), [(X_EXACT, Y_EXACT), (X_TIES, Y_TIES)])
def test_exact_wilcoxon_matches_scipy(x, y):
    res = stats.paired_test(_series(x), _series(y))
    assert res.method == "exact"
    assert res.p == pytest.approx(_scipy_exact(x, y), rel=1e-12, abs=1e-15)
    d = np.asarray(x) - np.asarray(y)
    assert pytest.approx(float(scipy.stats.wilcoxon(d[d != 0]).statistic)) == res.W
    assert res.n == len(x) and res.n_nonzero == int(np.count_nonzero(d))
    if np.unique(np.abs(d)).size == d.size:  # no ties, no zeros: SciPy's "exact" method says the same
        assert res.p == pytest.approx(float(scipy.stats.wilcoxon(x, y, method="exact").pvalue), rel=1e-12)


def test_many_pairs_use_scipys_normal_approximation():
    res = stats.paired_test(_series(X_NORMAL), _series(Y_NORMAL))
    d = np.round(X_NORMAL - Y_NORMAL, stats.TIE_DECIMALS)  # ties decided on the stored precision
    assert np.count_nonzero(d) > stats.EXACT_MAX and res.method == "normal"
    ref = scipy.stats.wilcoxon(d[d != 0], correction=False, method="asymptotic")
    assert res.p == pytest.approx(float(ref.pvalue), rel=1e-12)


def test_wilcoxon_pairs_by_unit_id_not_by_row_order():
    ids = [f"c{i:02d}" for i in range(len(X_EXACT))]
    x = _series(X_EXACT, ids)
    y = _series(Y_EXACT, ids).iloc[::-1]  # same cases, reversed rows
    assert stats.paired_test(x, y).p == pytest.approx(_scipy_exact(X_EXACT, Y_EXACT), rel=1e-12)


def test_wilcoxon_drops_nan_pairs_and_missing_units():
    x = X_EXACT.copy()
    y = Y_EXACT.copy()
    x[2], y[5] = np.nan, np.nan
    res = stats.paired_test(_series(x), _series(y).drop("c07"))  # a unit the other entry lacks
    keep = [i for i in range(len(x)) if i not in (2, 5, 7)]
    assert res.n == len(keep)
    assert res.p == pytest.approx(_scipy_exact(X_EXACT[keep], Y_EXACT[keep]), rel=1e-12)


def test_all_zero_differences_give_p_one_at_every_n():
    for n in (3, 13, 14, 60):  # SciPy's "auto" gives 1 up to 13 and NaN above: the family size changed
        same = stats.paired_test(_series(np.full(n, 0.5)), _series(np.full(n, 0.5)))
        assert same.n == n and same.n_nonzero == 0 and same.p == 1.0 and same.method == "all zero"
    empty = stats.paired_test(_series([np.nan, 0.6]), _series([0.5, np.nan]))
    assert empty.n == 0 and math.isnan(empty.p)


def test_min_attainable_p():
    assert stats.min_attainable_p(6) == pytest.approx(2 / 2**6)
    d = np.ones(6)  # all of one sign: the smallest p the exact test can give
    assert stats.wilcoxon_p(d)[1] == pytest.approx(stats.min_attainable_p(6))
    assert stats.min_attainable_p(0) == 1.0


def test_hodges_lehmann_and_paired_cles():
    d = np.array([0.3, -0.1, 0.2, 0.5, 0.0, 0.4, 0.1, 0.25])
    i, j = np.triu_indices(d.size)
    est, lo, hi = stats.hodges_lehmann(d, 0.9)
    assert est == pytest.approx(np.median((d[i] + d[j]) / 2))
    assert lo <= est <= hi
    # coverage of the distribution-free interval: at least the nominal level on symmetric data
    rng = np.random.default_rng(2)
    hits = [(lambda e: e[1] <= 0.2 <= e[2])(stats.hodges_lehmann(rng.normal(0.2, 1, 12))) for _ in range(400)]
    assert np.mean(hits) >= 0.93
    res = stats.paired_test(_series(d), _series(np.zeros_like(d)))
    assert res.cles == pytest.approx((6 + 0.5) / 8) and res.hl == pytest.approx(est)


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
    wide = pd.DataFrame(
        rng.normal(0, 1, (15, 4)) + np.array([0, 0.3, 0.6, 0.9]), columns=["a", "b", "c", "d"]
    )
    wide.iloc[3, 1] = np.nan  # case 3 is not complete -> left out
    res = stats.friedman(wide)
    full = wide.dropna()
    ref = scipy.stats.friedmanchisquare(*[full[c] for c in full.columns])
    assert res.n == 14 and res.k == 4
    chi2 = res.Q
    assert chi2 == pytest.approx(ref.statistic, rel=1e-10)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-10)
    tied = np.round(wide.dropna(), 0)  # many ties: SciPy's tie correction is the same
    ref = scipy.stats.friedmanchisquare(*[tied[c] for c in tied.columns])
    assert pytest.approx(ref.statistic, rel=1e-10) == stats.friedman(tied).Q
    assert "needs ≥ 2 complete" in stats.friedman(wide.iloc[:1]).reason


def test_friedman_gives_the_real_reason_when_everything_ties():
    zeros = pd.DataFrame(np.zeros((9, 10)))  # RPD 20 %: every entry 0.000 on every case
    res = stats.friedman(zeros)
    assert math.isnan(res.Q) and math.isnan(res.W) and "ties" in res.reason


def test_mean_ranks_respect_direction():
    wide = pd.DataFrame({"good": [0.9, 0.8, 0.85], "bad": [0.5, 0.6, 0.55], "mid": [0.7, 0.9, 0.6]})
    hi = stats.mean_ranks(wide, "higher")
    assert hi["good"] == pytest.approx(4 / 3) and hi["bad"] == pytest.approx(3.0)
    lo = stats.mean_ranks(wide, "lower")
    assert lo["bad"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="direction"):
        stats.mean_ranks(wide, "up")


def test_best_entry_respects_direction_and_ties_have_no_best():
    summary = pd.DataFrame(
        {"mean": [0.5, 0.7, 0.6, np.nan], "median": [0.5, 0.6, 0.65, 0.9]}, index=["a", "b", "c", "d"]
    )
    assert stats.best_entry(summary, "higher") == "b"
    assert stats.best_entry(summary, "lower") == "a"
    tied = pd.DataFrame({"mean": [0.0, 0.0, 0.0], "median": [0.0, 0.0, 0.0]}, index=["x", "y", "z"])
    assert stats.best_entry(tied, "higher") is None  # no "best" by alphabetical tie-break


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    v = np.random.default_rng(3).normal(0.7, 0.1, 20)
    lo, hi = stats.bootstrap_ci(v, n_resamples=2000, seed=5)
    assert (lo, hi) == stats.bootstrap_ci(v, n_resamples=2000, seed=5)
    assert lo < v.mean() < hi
    ref = scipy.stats.bootstrap((v,), np.mean, n_resamples=2000, rng=np.random.default_rng(5))
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    assert all(math.isnan(b) for b in stats.bootstrap_ci([0.5]))
    assert stats.bootstrap_ci([0.5, 0.5, np.nan]) == (0.5, 0.5)


def test_average_seeds_is_nan_aware_per_case():
    rows = []
    for seed, values in ((0, [0.6, np.nan]), (1, [0.8, np.nan]), (2, [0.7, 0.5])):
        for case, v in zip(("a", "b"), values):
            rows.append(["tr", "te", 100.0, case, "p1", "m", "none", seed, "dice", v])
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


def test_pingouin_agrees_where_installed():
    """The library computes with SciPy alone; pingouin, when installed, gives the same numbers."""
    pg = pytest.importorskip("pingouin", reason="pingouin not installed")
    # no ties, no zeros: pingouin's exact Wilcoxon p (no correction) equals ours
    res = stats.paired_test(_series(X_EXACT), _series(Y_EXACT))
    ref = pg.wilcoxon(X_EXACT, Y_EXACT, alternative="two-sided", correction=False, method="exact").iloc[0]
    assert res.p == pytest.approx(float(ref["p_val"]), rel=1e-12)
    assert res.rbc == pytest.approx(float(ref["RBC"]), rel=1e-12)
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    np.testing.assert_allclose(stats.holm(p), pg.multicomp(p, method="holm")[1], rtol=1e-12)
    rng = np.random.default_rng(7)
    wide = pd.DataFrame(rng.normal(0, 1, (12, 4)), columns=["a", "b", "c", "d"])
    f = pg.friedman(wide).iloc[0]
    ours = stats.friedman(wide)
    assert pytest.approx(float(f["Q"]), rel=1e-10) == ours.Q
    assert pytest.approx(float(f["W"]), rel=1e-10) == ours.W


def _clustered(seed=11):
    """Per-case table: 2 entries, 7 patients with 1-4 scans each, 2 seeds."""
    rng = np.random.default_rng(seed)
    rows = []
    n_scans = [1, 2, 3, 4, 2, 1, 3]
    for p, k in enumerate(n_scans):
        level = rng.normal(0.7, 0.1)
        for s in range(k):
            case = f"P{p}-s{s}"
            for model, shift in (("a", 0.0), ("b", -0.04)):
                for seed_ in (0, 1):
                    rows.append(
                        [
                            "tr",
                            "te",
                            5.0,
                            case,
                            f"P{p}",
                            model,
                            "none",
                            seed_,
                            "dice",
                            level + shift + rng.normal(0, 0.03),
                        ]
                    )
    return pd.DataFrame(rows, columns=list(stats.CASE_COLUMNS))


def test_patient_level_wilcoxon_and_interval_match_scipy_on_independent_aggregates():
    from bench3d2d.report.tables import build_leaderboard

    cases = _clustered()
    lb = build_leaderboard(cases, n_resamples=999, seed=3, unit="patient")
    # independent aggregation with plain pandas: seeds per case, then cases per patient
    per_case = cases.groupby(["model", "case_id", "patient_id"])["value"].mean().reset_index()
    per_patient = per_case.groupby(["model", "patient_id"])["value"].mean().unstack("model")
    d = (per_patient["a"] - per_patient["b"]).to_numpy()
    ref = scipy.stats.wilcoxon(d, method="exact")  # 7 patients, no ties
    pair = lb.pairs("tr", "te", 5.0, "dice").iloc[0]
    assert pair["n"] == 7 and pair["p"] == pytest.approx(float(ref.pvalue), rel=1e-12)
    # every number of the row is over the 7 patient means; 7 < SMALL_N: a t-interval on them
    a = per_patient["a"].to_numpy()
    low, high = scipy.stats.t.interval(0.95, a.size - 1, loc=a.mean(), scale=scipy.stats.sem(a))
    row = lb.family("tr", "te", 5.0, "dice").set_index("model").loc["a"]
    assert row["ci_method"] == "t"
    assert row["ci_low"] == pytest.approx(low, rel=1e-12)
    assert row["ci_high"] == pytest.approx(high, rel=1e-12)
    assert row["mean"] == pytest.approx(a.mean()) and row["std"] == pytest.approx(a.std(ddof=1))
    assert row["n"] == 7 and row["n_units"] == 7 and row["n_scans"] == 16
    # the scan as unit gives more pairs (too optimistic): 16
    by_case = build_leaderboard(cases, n_resamples=199, unit="case")
    assert by_case.pairs("tr", "te", 5.0, "dice").iloc[0]["n"] == 16


def test_seed_spread_is_sd_of_per_seed_means():
    cases = _clustered()
    spread = stats.seed_spread(cases).set_index("model")
    per_seed = cases[cases["model"] == "b"].groupby("seed")["value"].mean()
    assert spread.loc["b", "seed_sd"] == pytest.approx(per_seed.std(ddof=1))
    assert spread.loc["b", "seed_min"] == pytest.approx(per_seed.min())
    assert spread.loc["b", "seed_max"] == pytest.approx(per_seed.max())


def test_unit_patient_needs_patient_ids_and_falls_back_with_a_warning():
    from bench3d2d.report.tables import build_leaderboard

    cases = _clustered().assign(patient_id="")
    with pytest.raises(ValueError, match="patient_id"):
        stats.unit_values(stats.average_seeds(cases), "patient")
    lb = build_leaderboard(cases.drop(columns="patient_id"), n_resamples=199)
    assert lb.settings["unit"] == "case" and any("patient" in w for w in lb.warnings)


def test_rank_bootstrap_is_seeded_and_sums_to_one():
    rng = np.random.default_rng(0)
    sums = pd.DataFrame(rng.normal(0.7, 0.1, (10, 3)) + np.array([0.0, 0.05, 0.2]), columns=["a", "b", "c"])
    counts = pd.DataFrame(1.0, index=sums.index, columns=sums.columns)
    dist, taus = stats.rank_bootstrap(sums, counts, "higher", 300, seed=1)
    dist2, _ = stats.rank_bootstrap(sums, counts, "higher", 300, seed=1)
    pd.testing.assert_frame_equal(dist, dist2)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    assert dist.loc["c", 1] > 0.9 and np.nanmedian(taus) > 0.3 and taus.size == 300


def test_mean_interval_is_t_below_small_n_and_bootstrap_from_it():
    three = np.array([0.6, 0.7, 0.9])
    low, high, method = stats.mean_interval(three)
    ref = scipy.stats.t.interval(0.95, 2, loc=three.mean(), scale=scipy.stats.sem(three))
    assert method == "t" and (low, high) == pytest.approx(ref)
    assert stats.t_interval(np.array([0.5, 0.5, 0.5])) == (0.5, 0.5)  # no spread: the mean itself
    ten = np.linspace(0.5, 0.9, stats.SMALL_N)
    low, high, method = stats.mean_interval(ten, n_resamples=999)
    assert method == "bootstrap" and (low, high) == pytest.approx(stats.bootstrap_ci(ten, n_resamples=999))
