"""Failed fits: a seed that predicted no lesion on any test scan is flagged on the board, never ranked
as an ordinary result and never best, while its Dice 0 stays in every test."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from report_browser import Page, find_chromium
from report_fabric import CASE_COLUMNS, write_run

from bench3d2d.report.build import build_report
from bench3d2d.report.model import ReportOptions
from bench3d2d.report.tables import build_leaderboard, failed_fits

TRAIN, TEST, FRACTION = "synth-ga", "synth-ga:test", 20.0
N_CASES, SEEDS = 12, (0, 1)
# entry -> (Dice of a predicted case, {seed: cases with an empty prediction}); "all" = every case.
PLAN = {
    ("good", "none"): (0.40, {}),
    ("fair", "none"): (0.35, {}),
    ("half", "none"): (0.90, {0: "all"}),  # seed 1 excellent: without the rule it would top the board
    ("dead", "none"): (0.0, {0: "all", 1: "all"}),  # a collapsed model: background everywhere
    ("patchy", "none"): (0.30, {0: (3,), 1: (3,)}),  # one empty case per seed: failures, not a failed fit
}


def _rows(model: str, pretrain: str, seed: int) -> pd.DataFrame:
    dice, empty = PLAN[(model, pretrain)]
    empty_cases = range(N_CASES) if empty.get(seed) == "all" else empty.get(seed, ())
    rng = np.random.default_rng(seed + 10 * list(PLAN).index((model, pretrain)))
    rows = []
    for i in range(N_CASES):
        ref = 2.0 + 0.1 * i
        if i in empty_cases:
            values = {
                "dice": 0.0,
                "area_pred_mm2": 0.0,
                "area_ref_mm2": ref,
                "area_diff_mm2": ref,
                "hd95_mm": 8.1,
            }
        else:
            d = float(np.clip(dice + 0.01 * i + rng.normal(0, 0.005), 0, 1))
            pred = ref * (1.2 - 0.2 * d)
            values = {
                "dice": d,
                "area_pred_mm2": pred,
                "area_ref_mm2": ref,
                "area_diff_mm2": abs(pred - ref),
                "hd95_mm": 3 * (1 - d),
            }
        rows += [
            [TRAIN, TEST, FRACTION, f"case{i:02d}", f"p{i:02d}", model, pretrain, seed, m, v]
            for m, v in values.items()
        ]
    return pd.DataFrame(rows, columns=CASE_COLUMNS)


def fabricate_failed(root):
    """One complete run per entry and seed; "dead" predicts nothing anywhere, "half" in seed 0."""
    for model, pretrain in PLAN:
        for seed in SEEDS:
            spec = {
                "model": model,
                "train_dataset": TRAIN,
                "test_sets": [TEST],
                "fraction": FRACTION,
                "seed": seed,
                "profile": "quick",
                "pretrain": pretrain,
            }
            write_run(root, spec, _rows(model, pretrain, seed))
    return root


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failed")
    root = fabricate_failed(tmp / "results")
    out = tmp / "board"
    report = build_report(
        root, out, ReportOptions(bootstrap_resamples=200, rank_resamples=20, overlay_cases=0)
    )
    return report, out


def _section_rows(md: str) -> dict[str, str]:
    """Board rows of the one section, by model name."""
    section = md[md.index(f"### {TEST} · 20 %") :]
    section = section[: section.index("Friedman (")]
    lines = [line for line in section.splitlines() if line.startswith("| ")][2:]
    return {line.split(" | ")[1].split(" ")[0]: line for line in lines}


def test_the_rule_reads_per_case_areas():
    cases = pd.concat([_rows(m, p, s) for m, p in PLAN for s in SEEDS], ignore_index=True)
    fits = failed_fits(cases).set_index(["model", "seed"])
    assert bool(fits.loc[("dead", 0), "failed_fit"]) and bool(fits.loc[("dead", 1), "failed_fit"])
    assert bool(fits.loc[("half", 0), "failed_fit"]) and not bool(fits.loc[("half", 1), "failed_fit"])
    # a single empty case is a failure of that case, not a failed fit
    assert not fits.loc["patchy", "failed_fit"].any()
    assert (fits.loc["patchy", "n_pred_empty"] == 1).all()
    assert fits.loc[("dead", 0), "n_cases"] == N_CASES and fits.loc[("dead", 0), "n_ref_lesion"] == N_CASES
    # every reference empty too: nothing to find, so nothing was missed
    none = cases[(cases["model"] == "dead") & (cases["seed"] == 0)].copy()
    none.loc[none["metric"] == "area_ref_mm2", "value"] = 0.0
    assert not failed_fits(none)["failed_fit"].any()
    # one lesion in the test set is enough
    one = none.copy()
    one.loc[(one["metric"] == "area_ref_mm2") & (one["case_id"] == "case05"), "value"] = 1.0
    assert failed_fits(one)["failed_fit"].all()
    # an unknown (NaN) predicted area is not known to be empty
    unknown = one.copy()
    unknown.loc[(unknown["metric"] == "area_pred_mm2") & (unknown["case_id"] == "case02"), "value"] = math.nan
    assert not failed_fits(unknown)["failed_fit"].any()
    # no area rows: nothing can be judged
    assert failed_fits(cases[cases["metric"] == "dice"]).empty


def test_failed_entries_are_never_best_nor_ranked_but_stay_in_the_tests(board):
    report, _ = board
    lb = report.leaderboard
    fam = lb.family(TRAIN, TEST, FRACTION, "dice").set_index("model")
    assert fam.loc["half", "mean"] > fam.loc["good", "mean"]  # the rule, not the numbers, demotes it
    assert fam.loc["good", "is_best"] and not fam.loc[["half", "dead"], "is_best"].any()
    assert fam.loc[["half", "dead"], "position"].isna().all()
    assert list(fam["position"].dropna()) == [1, 2, 3]
    assert list(lb.family(TRAIN, TEST, FRACTION, "dice")["model"][-2:]) == ["half", "dead"]
    assert fam.loc["dead", "failed_seeds"] == 2 and fam.loc["half", "failed_seeds"] == 1
    assert fam.loc["patchy", "failed_seeds"] == 0 and not fam.loc["patchy", "failed_fit"]
    assert fam.loc["patchy", "failure_rate"] == pytest.approx(1 / N_CASES)
    assert (fam["fit_seeds"] == 2).all()
    # the collapsed entry is still tested (Dice 0), but its pairs are not in the Holm family
    assert fam.loc["dead", "mean"] == 0.0 and fam.loc["dead", "marker"] == ""
    assert fam.loc["dead", "vs_best"] == "failed fit"
    pairs = lb.pairs(TRAIN, TEST, FRACTION, "dice")
    assert len(pairs) == 10  # 5 entries, every pair tested
    with_failed = pairs["entry_a"].str.startswith(("dead", "half")) | pairs["entry_b"].str.startswith(
        ("dead", "half")
    )
    assert pairs.loc[with_failed, "p_holm"].isna().all() and pairs.loc[with_failed, "p"].notna().all()
    assert pairs.loc[with_failed, "holm_family"].str.contains("is a failed fit").all()
    assert (pairs.loc[~with_failed, "holm_family"] == "yes").sum() == 3  # 3 working entries, 3 pairs
    # ranked after every working entry, whatever its values
    assert fam.loc[["half", "dead"], "mean_rank"].min() > fam.loc[["good", "patchy"], "mean_rank"].max()


def test_markdown_flags_failed_fits(board):
    _, out = board
    md = (out / "README.md").read_text()
    rows = _section_rows(md)
    assert rows["dead"].startswith("| ✗ | dead **✗ failed fit (2/2 seeds)** | scratch |")
    assert rows["half"].startswith("| ✗ | half **✗ failed fit (1/2 seeds)** | scratch |")
    assert rows["good"].startswith("| 1 | good | scratch |") and "**" in rows["good"]
    for name in ("half", "dead"):
        cells = rows[name].split(" | ")
        assert "**" not in " | ".join(cells[2:])  # no bold number: never the best
    dead_cells = rows["dead"].split(" | ")
    assert dead_cells[6].startswith("failed fit") and "0.000" not in dead_cells[6]  # no score shown
    assert dead_cells[5] == "100 %"  # the failure count is kept
    assert "failed fit" not in rows["patchy"] and rows["patchy"].startswith("| 3 | patchy |")
    listing = next(line for line in md.splitlines() if line.startswith("**Failed fits**"))
    assert "dead (scratch): 2 of 2 seeds (seeds 0, 1)" in listing
    assert "half (scratch): 1 of 2 seeds (seed 0)" in listing
    assert "patchy" not in listing and "good" not in listing
    overview = md[md.index("## Overview") : md.index("## Trained on")]
    ov = {line.split(" | ")[0][2:]: line for line in overview.splitlines() if line.startswith("| ")}
    assert ov["dead"].endswith("| failed fit |") and ov["half"].endswith(" ✗ |") and "**" not in ov["half"]


def test_html_flags_failed_fits(board):
    _, out = board
    html = (out / "index.html").read_text()
    table = html[html.index('<table class="sortable board">') :]
    table = table[: table.index("</table>")]
    rows = {
        re.search(r'<td class="name">([a-z]+)', r).group(1): r
        for r in re.findall(r"<tr[^>]*>.*?</tr>", table, flags=re.S)
        if '<td class="name">' in r
    }
    for name, text in (("dead", "✗ failed fit (2/2 seeds)"), ("half", "✗ failed fit (1/2 seeds)")):
        assert rows[name].startswith('<tr class="failed-fit-row">')
        assert '<span class="failed-fit"' in rows[name] and text in rows[name]
        assert "<strong>" not in rows[name] and 'title="failed fit: not ranked">✗</td>' in rows[name]
    assert re.search(r'<td data-sort="[^"]*">failed fit', rows["dead"]) and "0.000 ±" not in rows["dead"]
    assert rows["good"].startswith('<tr class="best">') and "<strong>" in rows["good"]
    assert "failed-fit" not in rows["patchy"]
    listing = html[html.index('<p class="failed-fits">') :]
    listing = listing[: listing.index("</p>")]
    assert "dead (scratch): 2 of 2 seeds (seeds 0, 1)" in listing and "half (scratch)" in listing
    assert "patchy" not in listing


def test_csv_and_json_carry_the_failed_seeds(board):
    _, out = board
    summary = pd.read_csv(out / "summary.csv")
    dice = summary[summary["metric"] == "dice"].set_index("model")
    assert dice["failed_seeds"].to_dict() == {"good": 0, "fair": 0, "patchy": 0, "half": 1, "dead": 2}
    assert dice["failed_fit"].to_dict() == {
        "good": False,
        "fair": False,
        "patchy": False,
        "half": True,
        "dead": True,
    }
    assert not dice.loc[dice["failed_fit"], "is_best"].any()
    fits = pd.read_csv(out / "fits.csv")
    assert len(fits) == len(PLAN) * len(SEEDS)
    assert sorted(map(tuple, fits.loc[fits["failed_fit"], ["model", "seed"]].to_numpy())) == [
        ("dead", 0),
        ("dead", 1),
        ("half", 0),
    ]
    doc = json.loads((out / "report.json").read_text())
    assert doc["tables"]["fits"] == "fits.csv"
    assert sorted((f["model"], f["seed"]) for f in doc["failed_fits"]) == [
        ("dead", 0),
        ("dead", 1),
        ("half", 0),
    ]
    tex = (out / "leaderboard.tex").read_text()
    dead = next(line for line in tex.splitlines() if line.startswith(" & dead") or "dead" in line)
    assert r"\textit{$\times$ failed fit (2/2 seeds)}" in dead and r"\textbf" not in dead


def test_a_board_where_every_entry_failed_has_no_best():
    cases = pd.concat(
        [_rows("dead", "none", s) for s in SEEDS]
        + [_rows("dead", "none", s).assign(pretrain="slo") for s in SEEDS],
        ignore_index=True,
    )
    lb = build_leaderboard(cases, n_resamples=99, rank_resamples=10)
    fam = lb.family(TRAIN, TEST, FRACTION, "dice")
    assert not fam["is_best"].any() and fam["position"].isna().all()
    assert (fam["vs_best"] == "failed fit").all() and (fam["failed_seeds"] == 2).all()


CHROMIUM = find_chromium()


@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not found (install Debian's `chromium` or set BENCH3D2D_CHROMIUM)"
)
def test_failed_fit_rows_stay_last_when_the_page_is_sorted(board):
    _, out = board
    models = (
        "Array.from(document.querySelectorAll('table.board tbody tr td:nth-child(2)'))"
        ".map(td => td.firstChild.textContent.trim())"
    )
    with Page(CHROMIUM) as page:
        page.open(out / "index.html")
        assert page.errors() == []
        assert page.evaluate("document.querySelectorAll('table.board tr.failed-fit-row').length") == 2
        assert page.evaluate(models)[-2:] == ["half", "dead"]
        for _ in range(2):  # the "#" column, both directions: failed fits have no position, so stay last
            page.evaluate("document.querySelector('table.board thead tr:last-child th:nth-child(1)').click()")
            assert sorted(page.evaluate(models)[-2:]) == ["dead", "half"]
        assert page.errors() == []
