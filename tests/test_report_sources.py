"""One board from several sittings (issue 19): results folders, per-case tables and published boards
join; a case row two sources disagree on is refused, naming both."""

from __future__ import annotations

import pandas as pd
import pytest
from report_fabric import fabricate

from bench3d2d.cli import main
from bench3d2d.report.build import build_report
from bench3d2d.report.model import ReportOptions
from bench3d2d.report.sources import collect_sources, merge_cases
from bench3d2d.results import CASE_COLUMNS

ENTRIES = (("fpbnet", "none"), ("ipn", "none"))
FAST = ReportOptions(formats=("csv", "md"), figures=False, bootstrap_resamples=99, rank_resamples=10)


@pytest.fixture(scope="module")
def sittings(tmp_path_factory):
    """Seed 0 on one machine, seed 1 on another: two results folders of the same plan."""
    tmp = tmp_path_factory.mktemp("sittings")
    kw = {"entries": ENTRIES, "fractions": (20,), "n_cases": 6, "predictions": 0}
    return fabricate(tmp / "day1", seeds=(0,), **kw), fabricate(tmp / "day2", seeds=(1,), **kw), tmp


def test_two_results_folders_make_one_board(sittings):
    day1, day2, tmp = sittings
    report = build_report([day1, day2], tmp / "both", FAST)
    assert sorted(report.collection.cases["seed"].unique()) == [0, 1]
    assert len(report.collection.runs) == 4  # 2 entries x 1 fraction x 2 seeds
    summary = pd.read_csv(tmp / "both" / "summary.csv")
    assert (summary["seeds_max"] == 2).all()
    assert "day1 + day2" in (tmp / "both" / "README.md").read_text()


def test_a_published_board_is_a_source(sittings):
    day1, day2, tmp = sittings
    build_report(day1, tmp / "board1", FAST)
    coll = collect_sources([tmp / "board1", day2])
    assert sorted(coll.cases["seed"].unique()) == [0, 1]
    assert not coll.board_cost.empty  # the board's cost.csv comes along
    one = collect_sources([tmp / "board1"])
    assert len(one.runs) == 2 and {r.status for r in one.runs} == {"complete"}
    # the run ids and row counts travel with the board
    assert set(one.cases["run_id"]) == {r.run_id for r in one.runs}
    assert sum(r.n_rows for r in one.runs) == len(one.cases)


def test_a_board_says_which_code_built_it_and_carries_a_note(sittings):
    day1, _, tmp = sittings
    out = tmp / "noted"
    assert main(["report", str(day1), "--out", str(out), "--no-figures", "--note", "A pipeline check."]) == 0
    md = (out / "README.md").read_text()
    assert "Built by bench3d2d " in md and "**A pipeline check.**" in md
    assert "--note 'A pipeline check.'" in md  # the reproduce command keeps it


def test_the_same_rows_twice_are_counted_once(sittings):
    day1, _, tmp = sittings
    build_report(day1, tmp / "again", FAST)
    coll = collect_sources([day1, tmp / "again"])
    assert len(coll.cases) == len(collect_sources([day1]).cases)
    assert any("also in an earlier source with the same values; counted once" in w for w in coll.warnings)


def test_sources_that_disagree_are_refused_naming_both(sittings, capsys):
    day1, _, tmp = sittings
    build_report(day1, tmp / "b", FAST)
    cases = pd.read_csv(tmp / "b" / "cases.csv")
    cases.loc[0, "dice"] = cases.loc[0, "dice"] + 0.1
    (tmp / "edited").mkdir()
    cases.to_csv(tmp / "edited" / "cases.csv", index=False)
    with pytest.raises(ValueError, match=r"day1 and .*edited disagree on a case row .*case_id case00"):
        collect_sources([day1, tmp / "edited"])
    assert main(["report", str(day1), str(tmp / "edited"), "--out", str(tmp / "x"), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagree" in err[0] and "edited" in err[0]


def test_a_difference_of_floating_point_noise_is_no_disagreement():
    row = ["tr", "te", 5.0, "c0", "P0", "m", "none", 0, "dice"]
    a = pd.DataFrame([[*row, 0.3]], columns=list(CASE_COLUMNS))
    b = pd.DataFrame([[*row, 0.1 + 0.2]], columns=list(CASE_COLUMNS))
    merged, notes = merge_cases([("a", a), ("b", b)])
    assert len(merged) == 1 and notes
    nan_a, nan_b = a.assign(value=float("nan")), b.assign(value=float("nan"))
    assert len(merge_cases([("a", nan_a), ("b", nan_b)])[0]) == 1  # NaN equals NaN


def test_a_wide_board_table_reads_back_only_the_metrics_each_test_set_has(tmp_path):
    head = "train_dataset,test_set,fraction,model,pretrain,seed,case_id,patient_id,run_id,"
    head += "dice,dice:rater2,hd95_mm"
    lines = [
        head,
        "tr,one-rater,5,m,none,0,c0,P0,r1,0.5,,1.0",
        "tr,one-rater,5,m,none,0,c1,P1,r1,0.6,,",  # HD95 empty among written values: a NaN value
        "tr,two-raters,5,m,none,0,c2,P2,r1,0.7,0.8,2.0",
    ]
    (tmp_path / "cases.csv").write_text("\n".join(lines) + "\n")
    cases = collect_sources([tmp_path]).cases
    one = cases[cases["test_set"] == "one-rater"]
    assert set(one["metric"]) == {"dice", "hd95_mm"}  # dice:rater2 was not measured there
    assert one[one["metric"] == "hd95_mm"]["value"].isna().sum() == 1
    assert set(cases[cases["test_set"] == "two-raters"]["metric"]) == {"dice", "dice:rater2", "hd95_mm"}
