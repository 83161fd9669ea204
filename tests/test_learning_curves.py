"""benchmarks/learning_curves.py: the plan, the plateau-step rule, plot and table on fabricated result.json
files, and (slow) the validation history a real tiny run writes into result.json."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench3d2d.engine.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lc():
    path = ROOT / "benchmarks" / "learning_curves.py"
    spec = importlib.util.spec_from_file_location("learning_curves", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["learning_curves"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("learning_curves", None)


# -- the plateau-step rule ------------------------------------------------------------------------------
def test_plateau_step_is_the_first_validation_within_the_tolerance_of_the_best(lc):
    steps = [10, 20, 30, 40, 50, 60]
    assert lc.plateau_step(steps, [0.0, 0.5, 0.885, 0.70, 0.89, 0.80]) == 30  # 0.885 >= 0.89 - 0.01
    assert lc.plateau_step(steps, [0.0, 0.5, 0.875, 0.70, 0.89, 0.80]) == 50  # 0.875 is 0.015 short
    assert lc.plateau_step(steps, [0.0, 0.5, 0.875, 0.70, 0.89, 0.80], tol=0.02) == 30
    assert lc.plateau_step(steps, [0.9, 0.5, 0.6, 0.7, 0.8, 0.85]) == 10  # best first: plateau at once


def test_plateau_step_ignores_nan_scores(lc):
    assert lc.plateau_step([1, 2, 3], [math.nan, 0.4, 0.41]) == 2
    assert lc.plateau_step([1, 2], [math.nan, math.nan]) is None
    assert lc.plateau_step([], []) is None
    assert lc.best_of([1, 2, 3], [0.2, math.nan, 0.2]) == (0.2, 1)


# -- the plan -------------------------------------------------------------------------------------------
def test_the_plan_doubles_the_budget_and_plans_common_only_where_it_differs(lc, monkeypatch):
    """With a tuned table whose fpbnet entry is the common recipe, fpbnet is planned once; ipn's tuned
    recipe (Adam) differs from common, so under ``common`` it gets its own curves."""
    from bench3d2d.engine import recipes
    from bench3d2d.engine.profiles import get_profile
    from bench3d2d.engine.recipes import resolve_recipe

    table = {"fpbnet": {"optimizer": "sgd", "lr": 0.1}, "ipn": {"optimizer": "adam", "lr": 4e-4}}
    monkeypatch.setattr(recipes, "load_tuned", lambda path=None: table)

    long = 2 * get_profile("standard").max_steps
    tuned = {m: dict(resolve_recipe(m, "tuned").values) for m in ("fpbnet", "ipn")}
    assert tuned["fpbnet"] == dict(resolve_recipe("fpbnet", "common").values)  # premise of the test
    assert tuned["ipn"] != dict(resolve_recipe("ipn", "common").values)
    plan = lc.build_plan("fpbnet,ipn", ["tuned", "common"], seed=3)
    runs = {(s.model, s.recipe, s.benchmark, s.fraction, s.pretrain) for s in plan.runs}
    expected = set()
    for model, recipe in (("fpbnet", "tuned"), ("ipn", "tuned"), ("ipn", "common")):
        expected |= {
            (model, recipe, "ga", 5.0, "none"),
            (model, recipe, "ga", 100.0, "none"),
            (model, recipe, "rpd", 100.0, "none"),
        }
    expected |= {("fpbnet", "tuned", "ga", 100.0, "slo"), ("fpbnet", "tuned", "ga", 100.0, "faf")}
    assert runs == expected and len(plan.runs) == len(expected)
    for spec in plan.runs:
        assert dict(spec.hparams) == {"max_steps": long, "validate_from": 0.0}
        assert spec.profile == "standard" and spec.seed == 3
    assert {(p.model, p.modality) for p in plan.pretrainings} == {("fpbnet", "slo"), ("fpbnet", "faf")}
    assert {s.pretrain_source for s in plan.runs if s.pretrain != "none"} == {"synthetic-ga-m"}


def test_conditions_cut_the_plan_and_its_pretrainings(lc):
    plan = lc.build_plan("fpbnet,ipn", ["tuned"], seed=0)
    ga100 = lc.only_conditions(plan, "GA 100 %")
    assert {lc.condition_of(vars(s)) for s in ga100.runs} == {"GA 100 %"} and not ga100.pretrainings
    assert {s.model for s in ga100.runs} == {"fpbnet", "ipn"}
    faf = lc.only_conditions(plan, "GA 100 % SSL-FAF")
    assert [p.modality for p in faf.pretrainings] == ["faf"] and len(faf.runs) == 1
    with pytest.raises(ValueError, match="unknown"):
        lc.only_conditions(plan, "GA 50 %")


def test_run_dry_run_prints_the_plan_size_and_trains_nothing(lc, tmp_path, capsys):
    out = tmp_path / "curves"
    assert lc.main(["run", "--out", str(out), "--models", "fpbnet", "--recipes", "tuned", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    from bench3d2d.engine.profiles import get_profile

    assert f"standard at {2 * get_profile('standard').max_steps} steps" in printed
    assert "plan: 5 runs (ga: 4, rpd: 1), 1 models, 2 SSL pre-trainings" in printed
    assert not (out / "runs").exists()


def test_the_plan_refuses_a_profile_without_a_step_budget(lc):
    with pytest.raises(ValueError, match="not a step-budget profile"):
        lc.build_plan("fpbnet", ["tuned"], seed=0, profile="smoke")
    with pytest.raises(ValueError, match="factor"):
        lc.long_overrides("standard", 0)
    from bench3d2d.engine.profiles import get_profile

    steps = round(1.5 * get_profile("standard").max_steps)
    assert lc.long_overrides("standard", 1.5) == {"max_steps": steps, "validate_from": 0.0}
    assert lc.long_overrides("standard", 1) == {}  # the sweep's own runs


# -- plot and table on fabricated results ---------------------------------------------------------------
def _history(scores, every=10):
    return [{"step": every * (i + 1), "loss": 1.0 - 0.01 * i, "score": s} for i, s in enumerate(scores)]


def _run(root: Path, run_id: str, spec: dict, scores, own_dice=None) -> None:
    folder = root / "runs" / run_id
    folder.mkdir(parents=True)
    spec = {
        "train_dataset": "synthetic-ga-s-1",
        "seed": 0,
        "profile": "standard",
        "recipe": "tuned",
        "pretrain": "none",
        **spec,
    }
    result = {
        "status": "complete",
        "run_id": run_id,
        "spec": spec,
        "history": _history(scores),
        "stop": {"reason": "max_steps", "step": 10 * len(scores)},
    }
    (folder / "result.json").write_text(json.dumps(result))
    rows = []
    for i, value in enumerate(own_dice or []):
        rows.append({"test_set": spec["train_dataset"], "case_id": f"c{i}", "metric": "dice", "value": value})
        rows.append({"test_set": "synthetic-ga-s-2", "case_id": f"c{i}", "metric": "dice", "value": 0.0})
        rows.append({"test_set": spec["train_dataset"], "case_id": f"c{i}", "metric": "hd95_mm", "value": 9})
    pd.DataFrame(rows, columns=["test_set", "case_id", "metric", "value"]).to_csv(
        folder / "cases.csv", index=False
    )


@pytest.fixture
def fabricated(tmp_path):
    root = tmp_path / "curves"
    rising = [0.0, 0.2, 0.5, 0.8, 0.85, 0.9, 0.895, 0.9]
    _run(root, "r1", {"model": "fpbnet", "benchmark": "ga", "fraction": 100.0}, rising, [0.8, 0.9])
    _run(root, "r2", {"model": "fpbnet", "benchmark": "ga", "fraction": 5.0}, [0.1, 0.3, 0.3, 0.305])
    _run(
        root,
        "r3",
        {
            "model": "fpbnet",
            "benchmark": "ga",
            "fraction": 100.0,
            "pretrain": "faf",
            "pretrain_source": "synthetic-ga-m",
        },
        [0.5, 0.9, 0.92],
    )
    _run(
        root,
        "r4",
        {
            "model": "ipn",
            "benchmark": "rpd",
            "fraction": 100.0,
            "recipe": "common",
            "train_dataset": "synthetic-rpd",
        },
        [0.0] * 30 + [0.745, 0.75],
    )  # plateau past 200
    _run(
        root,
        "r5",
        {"model": "ipn", "benchmark": "rpd", "fraction": 100.0, "train_dataset": "synthetic-rpd"},
        [0.2, math.nan, 0.6],
    )
    pre = root / "pretrain" / "k1"
    pre.mkdir(parents=True)
    (pre / "result.json").write_text(
        json.dumps(
            {
                "status": "complete",
                "key": "k1",
                "history": _history([0.3, 0.5, 0.55]),
                "spec": {
                    "model": "fpbnet",
                    "source": "synthetic-ga-m",
                    "modality": "faf",
                    "profile": "standard",
                    "seed": 0,
                    "recipe": "tuned",
                },
            }
        )
    )
    old = root / "runs" / "old"  # complete, but made before result.json recorded a history
    old.mkdir()
    (old / "result.json").write_text(json.dumps({"status": "complete", "run_id": "old", "spec": {}}))
    busy = root / "runs" / "busy"  # not complete: ignored
    busy.mkdir()
    (busy / "spec.json").write_text("{}")
    return root


def _csv(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with path.open() as fh:
        return {(r["model"], r["condition"], r["recipe"]): r for r in csv.DictReader(fh)}


def test_plot_draws_the_figure_and_writes_one_csv_row_per_curve(lc, fabricated, tmp_path, capsys):
    from PIL import Image

    png, table = tmp_path / "img" / "curves.png", tmp_path / "curves.csv"
    assert lc.main(["plot", "--out", str(fabricated), "--png", str(png), "--csv", str(table)]) == 0
    assert "no validation history" in capsys.readouterr().err
    with Image.open(png) as image:
        assert image.size[0] == 1600 and image.size[1] >= 400
    rows = _csv(table)
    assert set(rows) == {
        ("fpbnet", "GA 100 %", "tuned"),
        ("fpbnet", "GA 5 %", "tuned"),
        ("fpbnet", "GA 100 % SSL-FAF", "tuned"),
        ("ipn", "RPD 100 %", "common"),
        ("ipn", "RPD 100 %", "tuned"),
        ("fpbnet", "SSL-FAF on synthetic-ga-m", "tuned"),
    }
    full = rows[("fpbnet", "GA 100 %", "tuned")]
    assert (full["best_score"], full["best_step"], full["plateau_step"]) == ("0.9", "60", "60")
    assert float(full["test_dice"]) == pytest.approx(0.85) and full["test_cases"] == "2"  # own split only
    assert full["last_step"] == "80" and full["validations"] == "8" and full["kind"] == "run"
    assert rows[("fpbnet", "GA 5 %", "tuned")]["plateau_step"] == "20"  # 0.3 is within 0.01 of 0.305
    assert rows[("fpbnet", "GA 5 %", "tuned")]["test_dice"] == ""  # no own-split rows in its cases.csv
    assert rows[("ipn", "RPD 100 %", "tuned")]["plateau_step"] == "30"  # NaN validation skipped
    ssl = rows[("fpbnet", "SSL-FAF on synthetic-ga-m", "tuned")]
    assert (ssl["kind"], ssl["score_name"], ssl["plateau_step"], ssl["test_dice"]) == (
        "pretrain",
        "ssim",
        "30",
        "",
    )


def test_plot_writes_the_csv_into_the_results_folder_by_default(lc, fabricated, tmp_path):
    assert lc.main(["plot", "--out", str(fabricated), "--png", str(tmp_path / "c.png")]) == 0
    assert len(_csv(fabricated / "curves.csv")) == 6


def test_table_prints_the_plateau_table_as_markdown(lc, fabricated, capsys):
    assert lc.main(["table", "--out", str(fabricated)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| model | condition | recipe | best (step) | plateau step")
    assert len(lines) == 1 + 6
    assert "| fpbnet | GA 100 % | tuned | 0.900 dice (60) | 60 | yes | 0.850 |" in lines
    past = "yes" if get_profile("standard").max_steps >= 310 else "**no**"
    assert f"| ipn | RPD 100 % | common | 0.750 dice (320) | 310 | {past} | – |" in lines
    assert "within 0.01 of the curve's best" in out


def test_a_malformed_history_is_a_clear_error_naming_the_file(lc, fabricated, capsys):
    path = fabricated / "runs" / "r2" / "result.json"
    data = json.loads(path.read_text())
    data["history"][1] = {"step": 20}
    path.write_text(json.dumps(data))
    assert lc.main(["table", "--out", str(fabricated)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "step or score" in err
    assert lc.main(["table", "--out", str(fabricated / "missing")]) == 2
    assert "results folder not found" in capsys.readouterr().err


# -- a real tiny run ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_result_json_records_the_validation_history_up_to_the_stop(tmp_path, monkeypatch, lc):
    """A tiny plateau run (and its SSL pre-training) through the harness: result.json's history ends at
    the step the fit stopped at, and the plot reads it."""
    import _sweep_tiny

    from bench3d2d.harness.executors import SweepProgress
    from bench3d2d.harness.sweep import PlanOptions, ResultsStore, expand_plan, run_sweep

    _sweep_tiny.install()
    monkeypatch.setenv("BENCH3D2D_BACKEND", "_sweep_tiny")
    try:
        store = ResultsStore(tmp_path / "results")
        plateau = {"validate_every": 1, "patience": 2, "max_steps": 4}
        plan = expand_plan(
            _sweep_tiny.MODEL,
            "100",
            "ga",
            "slo",
            seeds="0",
            profile="tiny",
            options=PlanOptions(hparams_for=lambda *_: plateau),
        )
        report = run_sweep(plan, store, progress=SweepProgress(1, enabled=False))
        assert not report.failed, report.failed
        result = store.result(plan.runs[0].run_id)
        history = result["history"]
        assert history and set(history[0]) == {"step", "loss", "score"}
        assert history[-1]["step"] == result["stop"]["step"] <= 4
        assert [h["step"] for h in history] == list(range(1, len(history) + 1))
        pre = json.loads((store.pretrain_path(plan.pretrainings[0]) / "result.json").read_text())
        assert [h["step"] for h in pre["history"]] == [1, 2]  # the tiny profile: 2 rounds of 1 step
        assert all(0 <= h["score"] <= 1 for h in pre["history"])
    finally:
        _sweep_tiny.uninstall()
    rows = lc.curve_rows(lc.read_curves(store.root)[0])
    assert [(r["kind"], r["last_step"]) for r in rows] == [("run", history[-1]["step"]), ("pretrain", 2)]


def test_the_convergence_table_pairs_a_budget_with_twice_that_budget(lc):
    def curve(model, budget, dice):
        return lc.Curve(
            "run", model, "GA 100 %", "tuned", 0, "standard", [budget], [0.9], "x", dice, 30, budget
        )

    rows = lc.convergence_rows([curve("ipn", 400, 0.90), curve("ipn", 800, 0.92), curve("fpbnet", 400, 0.85),
                                curve("fpbnet", 800, 0.90), curve("lachinov", 400, 0.8)])  # fmt: skip
    assert [(r["model"], r["budget"], r["longer"], r["converged"]) for r in rows] == [
        ("ipn", 400, 800, True),
        ("fpbnet", 400, 800, False),
    ]
    text = lc.convergence_table(rows)
    assert "| ipn | GA 100 % | 0.900 (400) | 0.920 (800) | 0.020 | yes |" in text and "**no**" in text
