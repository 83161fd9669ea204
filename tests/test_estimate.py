"""The sweep's time estimate: work per run, calibrated costs (cached), makespan, longest-first order."""

from __future__ import annotations

import json

import pytest

from bench3d2d.engine.profiles import SMOKE, STANDARD
from bench3d2d.harness import _estimate
from bench3d2d.harness._estimate import Estimator, Work, longest_first, makespan, work_of
from bench3d2d.harness.sweep import ResultsStore, expand_plan, select_work


def test_the_standard_budget_validates_the_last_quarter_and_once_at_the_failed_fit_check():
    work = work_of(STANDARD, val_scans=7, test_scans=63)
    assert work == Work(steps=400, validations=12, val_scans=7, members=3, test_scans=63)
    assert work.seconds(step=1.0, eval_scan=0.5) == pytest.approx(
        _estimate.SETUP_SECONDS + 400 + 0.5 * (84 + 189)
    )


def test_a_round_based_profile_counts_its_rounds():
    work = work_of(SMOKE, val_scans=7, test_scans=10, n_train=52)
    assert (work.steps, work.validations) == (60, 6)  # 6 rounds of min(10, 4 * 52 // 4) steps


def test_makespan_is_the_longest_first_schedule_with_pretrainings_first():
    assert makespan([], [10, 9, 8, 1], jobs=2) == 17  # 10 + 1 | 9 + 8
    assert makespan([5], [10, 10], jobs=2) == 15  # the runs wait for the pre-training
    assert makespan([5, 5], [1, 1, 1], jobs=1) == 13


def test_calibration_is_measured_once_and_cached(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    plan = expand_plan(models="enface_unet", fractions="100", datasets="ga", pretrain="none", seeds="0")
    est = Estimator(store, threads=1)
    seconds = est.run_seconds(plan.runs[0])
    cache = json.loads((tmp_path / _estimate.CALIBRATION_FILE).read_text())
    (key, costs), *rest = cache.items()
    assert not rest and "|enface_unet|" in key and costs["step"] > 0 and costs["eval_scan"] > 0
    assert seconds > _estimate.SETUP_SECONDS and est.sources == {"calibration"}

    def boom(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(Estimator, "_measure", boom)
    again = Estimator(store, threads=2)
    halved = again.run_seconds(plan.runs[0])  # the cached one-thread cost, divided by 2 x efficiency
    assert halved < seconds
    with pytest.raises(LookupError):
        Estimator(store, threads=1, calibrate=False).run_seconds(
            expand_plan(models="fpbnet", fractions="100", datasets="ga", pretrain="none", seeds="0").runs[0]
        )


def test_the_dry_run_prints_the_estimate_per_model(tmp_path, capsys, fake_env):
    from bench3d2d.cli import main

    assert main(["run", "--models", "fpbnet,ipn", "--fractions", "5", "--datasets", "ga", "--dry-run",
                 "--out", str(tmp_path), "--seeds", "0"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "estimated wall time" in out and "  ipn: 1 run(s), 0:03:20" in out
    assert "  fpbnet: 3 run(s) + pre-training, 0:16:40" in out  # scratch, SSL-SLO, SSL-FAF; fallback 200 s


def test_longest_runs_come_first():
    plan = expand_plan(models="fpbnet,ipn", fractions="5,100", datasets="ga", pretrain="none", seeds="0")

    class Fake:
        def run_seconds(self, spec):
            return {"ipn": 100.0, "fpbnet": 10.0}[spec.model] + spec.fraction / 1000

    order = [(s.model, s.fraction) for s in longest_first(plan.runs, Fake())]
    assert order == [("ipn", 100.0), ("ipn", 5.0), ("fpbnet", 100.0), ("fpbnet", 5.0)]
    assert select_work(plan, ResultsStore("unused")).runs == plan.runs  # selection keeps plan order
