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
from bench3d2d.results import CASE_COLUMNS

ENTRIES = (("ipn", "none"), ("fpbnet", "slo"), ("fpbnet", "none"), ("lachinov", "faf"))
# "fpbnet (scratch)" is better than every other entry on every case: +0.15 Dice, noise 0.01.
EFFECTS = {
    ("fpbnet", "none"): 0.15,
    ("fpbnet", "slo"): 0.0,
    ("ipn", "none"): -0.02,
    ("lachinov", "faf"): 0.01,
}


@pytest.fixture(scope="module")
def dominant(tmp_path_factory):
    root = fabricate(
        tmp_path_factory.mktemp("dominant") / "results",
        entries=ENTRIES,
        effects=EFFECTS,
        fractions=(20,),
        seeds=(0, 1, 2),
        n_cases=14,
        noise=0.01,
        predictions=0,
    )
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
    pd.testing.assert_frame_equal(
        lb.summary[cols].reset_index(drop=True), again.summary[cols].reset_index(drop=True)
    )
    # a case missing for one entry is left out of that entry's pairs only
    fewer = cases[~((cases["model"] == "ipn") & (cases["case_id"] == "case03"))]
    lb2 = build_leaderboard(fewer, n_resamples=200)
    fam = lb2.family("synth-ga", "synth-ga:test", 20.0, "dice").set_index("model")
    assert fam.loc["ipn", "n_vs_best"] == 13 and fam.loc["lachinov", "n_vs_best"] == 14


def _mixed_board():
    """Several families: strong and weak effects, few and many patients, two scans per patient."""
    rng = np.random.default_rng(5)
    rows = []
    entries = [("a", "none"), ("b", "none"), ("b", "slo"), ("c", "none"), ("d", "none")]
    for test, n_pat, effect in (("t-few", 4, 0.1), ("t-weak", 12, 0.01), ("t-strong", 15, 0.05)):
        for e_i, (model, pre) in enumerate(entries):
            for p in range(n_pat):
                for scan in range(2):
                    for seed in (0, 1):
                        v = 0.6 + effect * e_i + rng.normal(0, 0.04) + 0.02 * p
                        rows.append(["tr", test, 5.0, f"{p}-{scan}", f"P{p}", model, pre, seed, "dice", v])
    return pd.DataFrame(rows, columns=list(CASE_COLUMNS))


def test_no_dagger_contradicts_the_pairwise_table():
    lb = build_leaderboard(_mixed_board(), n_resamples=199, rank_resamples=50)
    n_marks = 0
    for (train, test, frac, metric), fam in lb.summary.groupby(
        ["train_dataset", "test_set", "fraction", "metric"]
    ):
        pairs = lb.pairs(train, test, frac, metric)
        best = fam[fam["is_best"]]
        for _, row in fam[~fam["is_best"]].iterrows():
            sel = ((pairs["entry_a"] == best["entry"].iloc[0]) & (pairs["entry_b"] == row["entry"])) | (
                (pairs["entry_b"] == best["entry"].iloc[0]) & (pairs["entry_a"] == row["entry"])
            )
            pair = pairs[sel].iloc[0]
            assert row["p_holm_vs_best"] == pair["p_holm"]  # the same adjusted p, one family
            worse = row["mean"] < best["mean"].iloc[0]
            assert (row["marker"] == "†") == (bool(pair["significant"]) and worse)
            n_marks += row["marker"] == "†"
    assert n_marks > 0  # the test can fail: some marks exist
    few = lb.friedman_row("tr", "t-few", 5.0, "dice")
    assert few["n_units"] == 4 and few["n_scans"] == 8 and not few["reachable"]  # 2/16 * 10 pairs > 0.05
    assert (lb.family("tr", "t-few", 5.0, "dice")["marker"] == "").all()


def test_ties_have_no_best_and_friedman_says_why():
    cases = _mixed_board()
    cases = cases[cases["test_set"] == "t-strong"].assign(value=0.0)  # every entry 0.000 everywhere
    lb = build_leaderboard(cases, n_resamples=99, rank_resamples=20)
    fam = lb.family("tr", "t-strong", 5.0, "dice")
    assert not fam["is_best"].any() and (fam["marker"] == "").all() and (fam["vs_best"] == "tie").all()
    pairs = lb.pairs("tr", "t-strong", 5.0, "dice")
    assert (pairs["p"] == 1.0).all() and (pairs["method"] == "all zero").all()
    f = lb.friedman_row("tr", "t-strong", 5.0, "dice")
    assert np.isnan(f["Q"]) and "ties" in f["reason"]


def test_failure_rate_counts_empty_predictions_per_entry():
    rows = []
    for model, empty in (("good", ()), ("lazy", (0, 1, 2))):
        for i in range(6):
            pred = 0.0 if i in empty else 1.5
            ref = 0.0 if i == 5 else 2.0
            dice = 0.0 if i in empty else 0.8
            for metric, v in (("area_pred_mm2", pred), ("area_ref_mm2", ref), ("dice", dice)):
                rows.append(["tr", "te", 5.0, f"c{i}", f"P{i}", model, "none", 0, metric, v])
    cases = pd.DataFrame(rows, columns=list(CASE_COLUMNS))
    lb = build_leaderboard(cases, n_resamples=99, rank_resamples=20)
    fam = lb.family("tr", "te", 5.0, "dice").set_index("model")
    assert fam.loc["lazy", "failure_rate"] == pytest.approx(3 / 6)
    assert fam.loc["good", "failure_rate"] == 0.0
    assert fam.loc["lazy", "both_empty_rate"] == pytest.approx(0.0)  # case 5: lazy predicted something


def test_claims_are_checked_on_the_boards_data():
    from bench3d2d.evaluation.claims import (
        CONTRADICTED,
        HOLDS,
        INCONCLUSIVE,
        NOT_TESTABLE,
        Claim,
        check_claims,
    )

    rng = np.random.default_rng(9)
    rows = []
    plan = {
        "syn-ga": (
            12,
            {
                ("fpbnet", "slo"): 0.15,
                ("fpbnet", "none"): 0.002,
                ("ipn", "none"): 0.0,
                ("lachinov", "none"): -0.05,
                ("lachinov", "slo"): -0.08,
            },
        ),
        "syn-rpd": (
            12,
            {
                ("fpbnet", "slo"): 0.02,
                ("fpbnet", "none"): 0.0,
                ("ipn", "none"): 0.0,
                ("lachinov", "none"): -0.05,
                ("lachinov", "slo"): -0.05,
            },
        ),
    }
    for train, (n_pat, effects) in plan.items():
        base = rng.uniform(0.4, 0.6, n_pat)
        for (model, pre), eff in effects.items():
            for p in range(n_pat):
                v = base[p] + eff + rng.normal(0, 0.01)
                rows.append([train, train, 5.0, f"c{p}", f"P{p}", model, pre, 0, "dice", v])
    cases = pd.DataFrame(rows, columns=list(CASE_COLUMNS))
    lb = build_leaderboard(cases, n_resamples=99, rank_resamples=20)
    out = check_claims(lb.case_means, lb.units)
    verdict = {
        (r["claim"], r["train_dataset"], r["subject"], r["comparator"]): r["verdict"]
        for _, r in out.iterrows()
    }
    # every baseline entry is a comparator, each tested (none chosen from the results)
    beats = out[(out["claim"] == "fpbnet-ssl-beats-baselines") & (out["train_dataset"] == "syn-ga")]
    assert sorted(beats["comparator"]) == ["ipn (scratch)", "lachinov (SSL-SLO)", "lachinov (scratch)"]
    assert (beats["verdict"] == HOLDS).all()
    scratch = verdict[("fpbnet-scratch-beats-baselines", "syn-ga", "fpbnet (scratch)", "ipn (scratch)")]
    assert scratch == INCONCLUSIVE  # +0.002 with noise 0.01: not significant after Holm
    # lachinov SSL-SLO is 0.03 below scratch on all 12 patients: significant the other way
    assert verdict[("ssl-helps", "syn-ga", "lachinov (SSL-SLO)", "lachinov (scratch)")] == CONTRADICTED
    rpd = out[(out["claim"] == "rpd-gain-smaller") & (out["subject"] == "fpbnet (SSL-SLO)")]
    assert (rpd["verdict"] == HOLDS).all() and len(rpd) == 3  # one row per baseline entry
    ga = beats[beats["comparator"] == "lachinov (scratch)"].iloc[0]
    assert "+23 % Dice" in ga["numbers"] and "12 patients" in ga["test"]
    assert ga["p_holm"] >= ga["p"] and "1 seed(s)" in ga["why"]  # Holm within the claim; one seed
    # claims are data: a board for other data carries other claims
    other = (Claim("x", "ipn beats at 20 %", "beats_best_baseline", model="ipn", fraction=20.0),)
    assert check_claims(lb.case_means, lb.units, other)["verdict"].tolist() == [NOT_TESTABLE]
