"""Issue 20's rules, each on a small table whose right answer is worked out by hand: one unit
everywhere, exact ties, failures never win, small n said plainly, the Holm family, ranking robustness.

``data/synthetic_quick_cases.csv`` holds the per-case rows of the published synthetic-quick board
that the issue quotes (four families, a few entries each), so that its cases are pinned here too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from bench3d2d.evaluation import statistics as stats
from bench3d2d.evaluation.claims import Claim, check_claims
from bench3d2d.report.collect import read_cases_file
from bench3d2d.report.tables import build_leaderboard
from bench3d2d.results import CASE_COLUMNS

DATA = Path(__file__).parent / "data" / "synthetic_quick_cases.csv"
GA1, GAMS = "synthetic-ga-s-1", "synthetic-ga-m-s"


def _rows(model: str, values: dict[str, list[float]], metric: str = "dice", pretrain: str = "none") -> list:
    """Case rows of one entry: ``values[patient]`` lists the patient's scans."""
    return [
        ["tr", "te", 5.0, f"{p}-s{i}", p, model, pretrain, 0, metric, v]
        for p, scans in values.items()
        for i, v in enumerate(scans)
    ]


def _board(rows: list, **kw) -> object:
    cases = pd.DataFrame(rows, columns=list(CASE_COLUMNS))
    return build_leaderboard(cases, n_resamples=999, rank_resamples=200, **kw)


def test_every_number_follows_the_patient_when_scan_and_patient_bests_differ():
    # 10 patients; P0 has 11 scans, P1..P9 one each (20 scans).
    # a: 1.0 on P0's scans, 0.5 elsewhere: scan mean (11 + 4.5) / 20 = 0.775, patient mean 5.5 / 10 = 0.55
    # b: 0.6 everywhere: scan mean = patient mean = 0.6. Scans say a, patients say b.
    patients = {"P0": 11, **{f"P{i}": 1 for i in range(1, 10)}}
    a = {p: [1.0 if p == "P0" else 0.5] * k for p, k in patients.items()}
    b = {p: [0.6] * k for p, k in patients.items()}
    lb = _board(_rows("a", a) + _rows("b", b))
    fam = lb.family("tr", "te", 5.0, "dice").set_index("model")
    assert fam.loc["a", "mean"] == pytest.approx(0.55) and fam.loc["b", "mean"] == pytest.approx(0.6)
    assert fam.loc["b", "is_best"] and not fam.loc["a", "is_best"]
    assert fam.loc["a", "n"] == 10 and fam.loc["a", "n_scans"] == 20
    assert fam.loc["a", "median"] == pytest.approx(0.5) and fam.loc["a", "std"] == pytest.approx(
        np.std([1.0] + [0.5] * 9, ddof=1)
    )
    # the interval (10 patients: bootstrap of the patient means) brackets the patient mean, not 0.775
    assert fam.loc["a", "ci_method"] == "bootstrap" and fam.loc["a", "ci_high"] < 0.775
    # ranks: b wins 9 of the 10 patients: mean rank b 1.1, a 1.9; every ranking puts b first
    assert fam.loc["b", "mean_rank"] == pytest.approx(1.1) and fam.loc["a", "mean_rank"] == pytest.approx(1.9)
    assert (fam.loc["b", ["rank_by_mean", "rank_by_mean_rank", "rank_by_significance"]] == 1).all()
    # rank bootstrap over patients: b is first in most resamples (a is first only when P0 dominates)
    dist = lb.rank_distribution("tr", "te", 5.0, "dice")
    assert dist.loc["b (scratch)", 1] > 0.5
    # the claims' numbers are patient means too
    claim = Claim("b", "b beats a", "beats_best_baseline", model="b")
    out = check_claims(lb.case_means, lb.units, (claim,))
    assert "b (scratch) 0.600 vs a (scratch) 0.550" in out.iloc[0]["numbers"]


@pytest.fixture(scope="module")
def published():
    cases, problems = read_cases_file(DATA)
    assert not problems
    return build_leaderboard(cases, n_resamples=999, rank_resamples=200)


def test_ga_s_1_hd95_best_is_the_patient_level_best(published):
    # scans: fpbnet SSL-SLO 0.5658 < lachinov SSL-FAF 0.5822 (board's old best); patients: 0.5870 vs 0.5839
    fam = published.family(GA1, GA1, 100.0, "hd95_mm").set_index("entry")
    assert fam.loc["lachinov (SSL-FAF)", "mean"] == pytest.approx(0.5839, abs=5e-5)
    assert fam.loc["fpbnet (SSL-SLO)", "mean"] == pytest.approx(0.5870, abs=5e-5)
    assert fam.loc["lachinov (SSL-FAF)", "is_best"]
    # against that best, lachinov scratch is worse on every one of the 11 patients but one
    pairs = published.pairs(GA1, GA1, 100.0, "hd95_mm").set_index(["entry_a", "entry_b"])
    raw = pairs["p"].to_numpy()
    assert pairs["p_holm"].to_numpy() == pytest.approx(stats.holm(raw))  # 3 pairs, one Holm family
    assert fam.loc["lachinov (scratch)", "marker"] == "†"


def test_ga_m_s_dice_bold_goes_to_the_patient_level_best(published):
    # scans: fpbnet SSL-SLO 0.6609 vs lachinov SSL-FAF 0.6596; patients: 0.635 vs 0.658
    fam = published.family(GA1, GAMS, 10.0, "dice").set_index("entry")
    assert fam.loc["lachinov (SSL-FAF)", "is_best"] and not fam.loc["fpbnet (SSL-SLO)", "is_best"]
    assert fam.loc["fpbnet (SSL-SLO)", "mean"] == pytest.approx(0.635, abs=5e-4)
    assert fam.loc["lachinov (SSL-FAF)", "mean"] == pytest.approx(0.658, abs=5e-4)


def test_the_area_difference_p_value_does_not_depend_on_summation_order(published):
    # two patients' differences are 0.33086484374999986 and 0.33086484375: the same pixel counts
    # summed in another order. On 9 decimals they tie: mid-ranks, exact p = 57/1024 = 0.0557
    pair = published.pairs(GA1, GA1, 100.0, "area_diff_mm2").iloc[0]
    assert pair["p"] == pytest.approx(57 / 1024) and pair["n_nonzero"] == 11
    cases, _ = read_cases_file(DATA)
    area = cases[cases["metric"] == "area_diff_mm2"]
    shuffled = area.sample(frac=1.0, random_state=3)  # another summation order of each patient's scans
    again = build_leaderboard(shuffled, n_resamples=99, rank_resamples=10)
    assert again.pairs(GA1, GA1, 100.0, "area_diff_mm2").iloc[0]["p"] == pytest.approx(57 / 1024)


def test_a_difference_of_1e_16_is_a_tie():
    # 8 patients: a - b = -1, -1, -1, -1, -1, +1, +1 and 0.1 + 0.2 - 0.3 (5.6e-17 in floating point)
    x = pd.Series([0.0] * 5 + [1.0, 1.0, 0.1 + 0.2])
    y = pd.Series([1.0] * 5 + [0.0, 0.0, 0.3])
    assert (x - y).iloc[7] != 0  # the noise is there
    t = stats.paired_test(x, y)
    assert t.cles == pytest.approx((2 + 0.5) / 8)  # 0.3125: the tie counts one half, not 0.25
    assert t.n_nonzero == 7
    # the same tie in the ranks within a unit and in Friedman
    wide = pd.DataFrame({"a": [0.1 + 0.2], "b": [0.3]})
    assert stats.case_ranks(wide, "higher").iloc[0].tolist() == [1.5, 1.5]


def test_three_patients_get_a_t_interval(published):
    # lachinov SSL-FAF, GA-M-S 5 %, Dice: t-interval on the 3 patient means = [0.572, 0.880]
    row = published.family(GA1, GAMS, 5.0, "dice").set_index("entry").loc["lachinov (SSL-FAF)"]
    assert row["ci_method"] == "t"
    assert row["ci_low"] == pytest.approx(0.572, abs=5e-4) and row["ci_high"] == pytest.approx(
        0.880, abs=5e-4
    )
    means = published.units.query("test_set == @GAMS and fraction == 5.0")["value"].to_numpy()
    low, high = scipy.stats.t.interval(0.95, 2, loc=means.mean(), scale=scipy.stats.sem(means))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    fam_row = published.friedman_row(GA1, GAMS, 5.0, "dice")
    assert "not shown: 3 patients, fewer than 10" in fam_row["stability"]
    assert published.rank_distribution(GA1, GAMS, 5.0, "dice").empty


def _areas(model: str, pred: list[float], ref: list[float], diff: list[float]) -> list:
    rows = []
    for i, (p, r, d) in enumerate(zip(pred, ref, diff)):
        for metric, v in (("area_pred_mm2", p), ("area_ref_mm2", r), ("area_diff_mm2", d)):
            rows.append(["tr", "te", 5.0, f"c{i}", f"P{i}", model, "none", 0, metric, v])
    return rows


def test_an_entry_that_predicts_nothing_never_outranks_a_working_one():
    # references of 1 mm² on 10 patients. "dead" predicts nothing: its stored area difference is the
    # reference's 1 mm² (results written before failures got the image area). "over" predicts 3 mm²:
    # difference 2 mm², worse by value on every patient; "good" predicts 1.5 mm² (0.5).
    ref = [1.0] * 10
    rows = (
        _areas("dead", [0.0] * 10, ref, [1.0] * 10)
        + _areas("over", [3.0] * 10, ref, [2.0] * 10)
        + _areas("good", [1.5] * 10, ref, [0.5] * 10)
    )
    lb = _board(rows)
    fam = lb.family("tr", "te", 5.0, "area_diff_mm2").set_index("model")
    assert fam.loc["dead", "mean"] < fam.loc["over", "mean"]  # by value it would be second
    assert np.isnan(fam.loc["dead", "position"]) and fam.loc["over", "position"] == 2
    assert fam.loc["dead", "mean_rank"] == 3.0 and fam.loc["over", "mean_rank"] == 2.0
    for method in ("mean", "mean_rank", "significance"):
        assert fam.loc["dead", f"rank_by_{method}"] == 3
    dist = lb.rank_distribution("tr", "te", 5.0, "area_diff_mm2")
    assert dist.loc["dead (scratch)", 3] == 1.0  # last in every bootstrap resample
    pairs = lb.pairs("tr", "te", 5.0, "area_diff_mm2")
    assert (pairs["holm_family"] == "yes").sum() == 1  # good vs over only


def test_bit_identical_entries_are_left_out_of_the_holm_family():
    patients = {f"P{i}": [0.5 + 0.01 * i] for i in range(6)}
    higher = {p: [v[0] + 0.1] for p, v in patients.items()}  # the best, on all 6 patients
    lb = _board(_rows("a", patients) + _rows("twin", patients) + _rows("b", higher))
    pairs = lb.pairs("tr", "te", 5.0, "dice").set_index(["model_a", "model_b"])
    in_family = pairs[pairs["holm_family"] == "yes"]
    assert len(in_family) == 1  # b vs a; twin's pairs carry a's numbers
    assert in_family["p_holm"].iloc[0] == pytest.approx(2 / 64)  # 6 of 6 one way, family of one
    twin_b = pairs.loc[next(k for k in pairs.index if set(k) == {"twin", "b"})]
    assert "is identical to a (scratch)" in twin_b["holm_family"]
    assert twin_b["p_holm"] == pytest.approx(2 / 64)
    fam = lb.family("tr", "te", 5.0, "dice").set_index("model")
    # with the twin in the family, Holm over 3 pairs would give 3 x 2/64 = 0.094: no mark at all
    assert fam.loc["a", "marker"] == "†" and fam.loc["twin", "marker"] == "†"


def test_patient_means_pair_the_same_scans_when_a_metric_is_nan():
    # P0 has two scans; b's HD95 is NaN on the second. a's P0 mean for the pair uses the first scan only.
    a = {"P0": [1.0, 9.0], **{f"P{i}": [1.0] for i in range(1, 6)}}
    b = {"P0": [2.0, float("nan")], **{f"P{i}": [2.0] for i in range(1, 6)}}
    lb = _board(_rows("a", a, "hd95_mm") + _rows("b", b, "hd95_mm"))
    pair = lb.pairs("tr", "te", 5.0, "hd95_mm").iloc[0]
    assert pair["mean_diff"] == pytest.approx(-1.0)  # every patient: 1 - 2 (not (1 + 9) / 2 - 2 for P0)
    fam = lb.family("tr", "te", 5.0, "hd95_mm").set_index("model")
    assert fam.loc["a", "mean"] == pytest.approx((5.0 + 5 * 1.0) / 6)  # the entry's own mean keeps both


def test_the_board_flags_a_first_place_that_differs_between_rankings():
    # a: 0.9, 0.9, 0.0 (mean 0.6, mean rank 4/3); b: 0.8 everywhere (mean 0.8, mean rank 5/3)
    lb = _board(
        _rows("a", {"P0": [0.9], "P1": [0.9], "P2": [0.0]}) + _rows("b", {f"P{i}": [0.8] for i in range(3)})
    )
    row = lb.friedman_row("tr", "te", 5.0, "dice")
    assert row["first_by_mean"] == "b (scratch)" and row["first_by_mean_rank"] == "a (scratch)"
    assert not row["first_agrees"]
    from bench3d2d.report.view import robustness_text

    assert robustness_text(row).startswith("⚠ The first place differs between the rankings.")


def test_a_family_without_two_working_entries_says_why_it_has_no_tests():
    from bench3d2d.report.view import reach_text

    ref = [1.0] * 6
    rows = _areas("dead", [0.0] * 6, ref, [1.0] * 6) + _areas("good", [1.5] * 6, ref, [0.5] * 6)
    row = _board(rows).friedman_row("tr", "te", 5.0, "area_diff_mm2")
    assert row["n_pairs"] == 0 and not row["reachable"]
    assert reach_text(row, 0.05).startswith("No pairwise test here: fewer than two working, distinct entries")
