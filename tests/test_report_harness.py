"""The report on a results folder written by the real harness and engine (a tiny sweep), not an imitation:
the two sides of the results format (``bench3d2d.results``) cannot drift apart."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench3d2d.harness.executors import SweepProgress
from bench3d2d.harness.sweep import ResultsStore, expand_plan, run_sweep
from bench3d2d.models import _registry as registry
from bench3d2d.report.build import build_report
from bench3d2d.report.model import ReportOptions
from bench3d2d.results import CASE_COLUMNS


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    import _sweep_tiny

    mp = pytest.MonkeyPatch()
    _sweep_tiny.install()
    registry.register_model(_sweep_tiny.test_tiny, name="test_tiny_b", tags=("test",))
    mp.setenv("BENCH3D2D_BACKEND", "_sweep_tiny")
    mp.setenv("BENCH3D2D_THREADS", "1")
    root = tmp_path_factory.mktemp("harness") / "results"
    try:
        plan = expand_plan(
            models=[_sweep_tiny.MODEL, "test_tiny_b"],
            fractions="100",
            datasets="ga",
            pretrain="none",
            profile="tiny",
            seeds="0",
        )
        run_sweep(plan, ResultsStore(root), progress=SweepProgress(1, enabled=False))
        out = root.parent / "board"
        report = build_report(
            root, out, ReportOptions(bootstrap_resamples=199, rank_resamples=100, overlay_cases=1)
        )
    finally:
        _sweep_tiny.uninstall()
        registry._REGISTRY.pop("test_tiny_b", None)
        mp.undo()
    return root, out, report


@pytest.mark.slow
def test_report_reads_real_harness_output_with_patients(swept):
    root, out, report = swept
    coll = report.collection
    assert len(coll.runs_with("complete")) == 2 and coll.warnings == []
    assert list(coll.cases.columns)[: len(CASE_COLUMNS)] == list(CASE_COLUMNS)
    # the engine wrote each case's patient: the unit is the patient, with fewer patients than scans
    assert (coll.cases["patient_id"] != "").all()
    assert report.leaderboard.settings["unit"] == "patient"
    fam = report.leaderboard.friedman
    own = fam[(fam["test_set"] == "synthetic-ga-s-1") & (fam["metric"] == "dice")].iloc[0]
    assert 0 < own["n_units"] < own["n_scans"]
    # HD95 of a failed case is the image diagonal, never NaN unless both masks are empty
    cases = coll.cases.pivot_table(index=["model", "test_set", "case_id"], columns="metric", values="value")
    both_empty = (cases["area_pred_mm2"] == 0) & (cases["area_ref_mm2"] == 0)
    assert cases.loc[~both_empty, "hd95_mm"].notna().all()
    # cost from result.json: fine-tuning time, parameters counted from the registry
    cost = report.cost
    assert len(cost) == 2 and (cost["fit_s"] > 0).all() and (cost["parameters"] > 0).all()
    result = json.loads(next((root / "runs").glob("*/result.json")).read_text())
    assert "fit_s" in result["timings"]
    # every output is written, the per-case data once
    assert (out / "cases.csv").is_file() and not (out / "cases.parquet").exists()
    board = pd.read_csv(out / "summary.csv")
    assert set(board["model"]) == {"test_tiny", "test_tiny_b"}
    md = (out / "README.md").read_text()
    assert "## Claims check" in md and "unit: patient · n = " in md
    # the board says how its runs were trained, from their spec.json and result.json
    assert "Training: profile tiny · recipe set tuned · precision " in md
    assert "· seeds 0 ·" in md  # the plan's default seed
    assert "Training: profile tiny" in (out / "index.html").read_text()


@pytest.mark.slow
def test_real_board_opens_in_headless_chromium_with_every_image(swept):
    from report_browser import Page, find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium not found")
    _, out, report = swept
    assert report.cost_figures  # the accuracy-vs-cost figure is on the page
    with Page(chromium) as page:
        page.open(out / "index.html")
        assert page.errors() == []
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert images and all(ok and width > 0 for ok, width in images)
        assert page.evaluate("document.querySelectorAll('table.claims tbody tr').length") > 0
        assert page.evaluate("document.querySelectorAll('table.cost tbody tr').length") == 2
