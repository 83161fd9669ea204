"""Leaderboard tables: the best entry first, Holm-significant markers and SciPy's numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from report_fabric import fabricate
from statsmodels.stats.multitest import multipletests

from bench3d2d.report.collect import collect
from bench3d2d.report.tables import build_leaderboard

ENTRIES = (("ipn", "none"), ("fpbnet", "slo"), ("fpbnet", "none"), ("lachinov", "faf"))
# "fpbnet (scratch)" is better than every other entry on every case: +0.15 Dice, noise 0.01.
EFFECTS = {("fpbnet", "none"): 0.15, ("fpbnet", "slo"): 0.0, ("ipn", "none"): -0.02,
           ("lachinov", "faf"): 0.01}


@pytest.fixture(scope="module")
def dominant(tmp_path_factory):
    root = fabricate(tmp_path_factory.mktemp("dominant") / "results", entries=ENTRIES, effects=EFFECTS,
                     fractions=(20,), seeds=(0, 1, 2), n_cases=14, noise=0.01, predictions=0)
    coll = collect(root)
    assert coll.warnings == []
    return coll.cases, build_leaderboard(coll.cases, n_resamples=500)


def _seed_means(cases, metric):
    sel = cases[cases["metric"] == metric]
    return sel.groupby(["model", "pretrain", "case_id"])["value"].mean()


def test_dominant_model_is_first_others_marked_with_scipy_numbers(dominant):
    cases, lb = dominant
    fam = lb.family("synth-ga", "synth-ga:test", 20.0, "dice")
    assert (fam.iloc[0]["model"], fam.iloc[0]["pretrain"]) == ("fpbnet", "none")
    assert fam.iloc[0]["is_best"] and fam.iloc[0]["mean_rank"] == 1.0
    others = fam.iloc[1:]
    assert (others["marker"] == "†").all() and (others["vs_best"] == "worse").all()
    assert (others["p_holm_vs_best"] < 0.05).all()

    means = _seed_means(cases, "dice")
    best = means.loc[("fpbnet", "none")]
    expected_p = []
    for _, row in others.iterrows():
        other = means.loc[(row["model"], row["pretrain"])]
        ref = scipy.stats.wilcoxon(other.to_numpy(), best.reindex(other.index).to_numpy())
        assert row["p_vs_best"] == pytest.approx(float(ref.pvalue), rel=1e-12)
        assert row["W_vs_best"] == pytest.approx(float(ref.statistic))
        assert row["n_vs_best"] == 14
        expected_p.append(float(ref.pvalue))
    # one family rule: the "vs best" p is the all-pairs Holm-adjusted p of that pair
    pairs = lb.pairs("synth-ga", "synth-ga:test", 20.0, "dice")
    all_adjusted = multipletests(pairs["p"], method="holm")[1]
    for _, row in others.iterrows():
        sel = ((pairs["entry_a"] == "fpbnet (scratch)") & (pairs["entry_b"] == row["entry"])).to_numpy()
        assert row["p_holm_vs_best"] == pytest.approx(float(all_adjusted[sel][0]), rel=1e-12)
    # 14 cases, all better: exact two-sided p = 2 / 2**14
    assert others["p_vs_best"].iloc[0] == pytest.approx(2 / 2**14)


def test_lower_is_better_metrics_rank_the_same_model_first(dominant):
    _, lb = dominant
    fam = lb.family("synth-ga", "synth-ga:test", 20.0, "area_diff_mm2")
    assert fam.iloc[0]["model"] == "fpbnet" and fam.iloc[0]["pretrain"] == "none"
    assert fam.iloc[0]["direction"] == "lower"
    assert (fam["mean"].iloc[1:] > fam["mean"].iloc[0]).all()
    hd = lb.family("synth-ga", "synth-ga:test", 20.0, "hd95_mm")
    assert hd.iloc[0]["model"] == "fpbnet"
    assert (hd["n_nan"] == 1).all() and (hd["n_vs_best"].iloc[1:] == 13).all()  # NaN pairs dropped, n shown


def test_all_pairs_are_holm_corrected_within_the_family(dominant):
    _, lb = dominant
    pairs = lb.pairs("synth-ga", "synth-ga:test", 20.0, "dice")
    assert len(pairs) == 6
    np.testing.assert_allclose(pairs["p_holm"], multipletests(pairs["p"], method="holm")[1], rtol=1e-12)
    vs_best = pairs[pairs["entry_a"] == "fpbnet (scratch)"]
    assert vs_best["significant"].all() and (vs_best["mean_diff"] > 0).all()


def test_friedman_and_descriptive_metrics(dominant):
    cases, lb = dominant
    f = lb.friedman_row("synth-ga", "synth-ga:test", 20.0, "dice")
    wide = _seed_means(cases, "dice").unstack(["model", "pretrain"])
    ref = scipy.stats.friedmanchisquare(*[wide[c] for c in wide.columns])
    assert f["Q"] == pytest.approx(ref.statistic) and f["p"] == pytest.approx(ref.pvalue)
    signed = lb.family("synth-ga", "synth-ga:test", 20.0, "area_diff_signed_mm2")
    assert signed["p_vs_best"].isna().all() and not signed["is_best"].any()
    assert signed["mean"].notna().all()


def test_cases_are_paired_by_id_not_row_order(dominant):
    cases, lb = dominant
    shuffled = cases.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = build_leaderboard(shuffled, n_resamples=500)
    cols = ["model", "pretrain", "mean", "p_vs_best", "p_holm_vs_best", "mean_rank", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(lb.summary[cols].reset_index(drop=True),
                                  again.summary[cols].reset_index(drop=True))
    # a case missing for one entry is left out of that entry's pairs only
    fewer = cases[~((cases["model"] == "ipn") & (cases["case_id"] == "case03"))]
    lb2 = build_leaderboard(fewer, n_resamples=200)
    fam = lb2.family("synth-ga", "synth-ga:test", 20.0, "dice").set_index("model")
    assert fam.loc["ipn", "n_vs_best"] == 13 and fam.loc["lachinov", "n_vs_best"] == 14
