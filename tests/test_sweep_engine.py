"""The harness on the real engine (tiny model and profile from tests/_sweep_tiny.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench3d2d.harness.executors import SweepProgress
from bench3d2d.harness.sweep import CASE_COLUMNS, ResultsStore, RunState, expand_plan, run_sweep
from bench3d2d.models import _registry as registry
from bench3d2d.models import count_parameters

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def tiny(monkeypatch):
    import _sweep_tiny

    _sweep_tiny.install()
    monkeypatch.setenv("BENCH3D2D_BACKEND", "_sweep_tiny")
    monkeypatch.setenv("BENCH3D2D_THREADS", "1")

    @registry.register_model(name="test_raises_on_build", tags=("ssl", "test"))
    def test_raises_on_build(in_channels=1, out_channels=1, depth=None, **kwargs):
        raise RuntimeError("this model cannot be built")

    yield _sweep_tiny
    _sweep_tiny.uninstall()
    registry._REGISTRY.pop("test_raises_on_build", None)


@pytest.mark.slow
def test_real_engine_sweep_with_a_model_that_raises(tmp_path, tiny):
    store = ResultsStore(tmp_path / "results")
    plan = expand_plan(models=[tiny.MODEL, "test_raises_on_build"], fractions="100", datasets="ga",
                       pretrain="none,slo", seeds="0", profile="tiny")  # fmt: skip
    assert len(plan.runs) == 4 and len(plan.pretrainings) == 2
    report = run_sweep(plan, store, progress=SweepProgress(1, enabled=False))
    by_model = {(s.model, s.pretrain): store.state(s.run_id) for s in plan.runs}
    assert by_model == {
        (tiny.MODEL, "none"): RunState.COMPLETE,
        (tiny.MODEL, "slo"): RunState.COMPLETE,
        ("test_raises_on_build", "none"): RunState.FAILED,
        ("test_raises_on_build", "slo"): RunState.FAILED,  # its pre-training failed first
    }
    assert report.count("failed", "pretrain") == 1 and report.count("complete", "pretrain") == 1
    failed = next(s for s in plan.runs if s.model == "test_raises_on_build" and s.pretrain == "none")
    err = store.error(failed.run_id)
    assert err["type"] == "RuntimeError" and "cannot be built" in err["message"]

    ok = next(s for s in plan.runs if s.model == tiny.MODEL and s.pretrain == "slo")
    folder = store.run_dir(ok.run_id)
    for name in ("spec.json", "split.json", "log.txt", "cases.csv", "result.json"):
        assert (folder / name).is_file(), name
    assert any((folder / "checkpoints").iterdir()) and any((folder / "predictions").rglob("*.npz"))
    cases = pd.read_csv(folder / "cases.csv")
    assert list(cases.columns)[: len(CASE_COLUMNS)] == list(CASE_COLUMNS)
    assert set(cases["test_set"]) == {"synthetic-ga-s-1", "synthetic-ga-s-2", "synthetic-ga-m-s"}
    assert set(cases["pretrain"]) == {"slo"} and set(cases["model"]) == {tiny.MODEL}
    result = json.loads((folder / "result.json").read_text())
    assert result["pretrained"]["cached"] is True  # made once by the pre-training step, then reused
    assert result["timings"]["fit_s"] > 0 and result["checkpoints"] == 1
    split = json.loads((folder / "split.json").read_text())
    assert split["fraction"] == 100 and split["label_patients"]
    assert len(list(store.splits_dir.glob("synthetic-ga-s-1-*.json"))) == 1
    log = (folder / "log.txt").read_text()
    assert log.count("validation dice") == 2 and log.count(" attempt on ") == 1

    again = run_sweep(plan, store, progress=SweepProgress(1, enabled=False))
    assert again.outcomes == [] and again.skipped_complete == 2 and again.skipped_failed == 2


@pytest.mark.slow
def test_sigkill_mid_sweep_on_the_real_engine(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "BENCH3D2D_BACKEND": "_sweep_tiny", "BENCH3D2D_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "bench3d2d", "run", "--models", "test_tiny", "--fractions", "5,10,20,100",
           "--datasets", "ga", "--pretrain", "none", "--seeds", "0,1", "--profile", "tiny", "--out", str(out),
           "--no-progress", "--allow-untuned"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    store = ResultsStore(out)
    deadline = time.monotonic() + 300
    while sum(store.is_complete(r) for r in store.run_ids()) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r: (store.run_dir(r) / "result.json").stat().st_mtime_ns for r in store.run_ids()
              if store.is_complete(r)}  # fmt: skip
    assert 2 <= len(before) < 8
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    ids = store.run_ids()
    assert len(ids) == 8 and all(store.is_complete(r) for r in ids)
    assert {r: (store.run_dir(r) / "result.json").stat().st_mtime_ns for r in before} == before
    for r in ids:  # one attempt each; the one interrupted by the kill has a second (it resumes)
        attempts = (store.run_dir(r) / "log.txt").read_text().count(" attempt on ")
        assert attempts == 1 or (attempts == 2 and r not in before), (r, attempts)


@pytest.mark.slow
def test_the_recipe_set_reaches_training_and_result_json(tmp_path, tiny):
    """``--recipe official``: the run id differs from the common run's, the engine trains with the
    model's official optimiser, and result.json records the resolved recipe and why the fit stopped."""

    official = {"official": {"optimizer": "adam", "lr": 1e-3}}

    @registry.register_model(name="test_tiny_adam", tags=("test",), defaults=official)
    def test_tiny_adam(in_channels=1, out_channels=1, depth=None, **kwargs):
        return tiny.test_tiny(in_channels, out_channels, depth)

    try:
        from bench3d2d.harness.sweep import PlanOptions

        store = ResultsStore(tmp_path / "results")
        plans = {
            r: expand_plan(
                models=["test_tiny_adam"],
                fractions="100",
                datasets="ga",
                pretrain="none",
                seeds="0",
                profile="tiny",
                options=PlanOptions(recipe=r),
            )
            for r in ("common", "official")
        }
        assert plans["common"].runs[0].run_id != plans["official"].runs[0].run_id
        run_sweep(plans["official"], store, progress=SweepProgress(1, enabled=False))
        spec = plans["official"].runs[0]
        assert store.state(spec.run_id) is RunState.COMPLETE
        result = json.loads((store.run_dir(spec.run_id) / "result.json").read_text())
        assert result["recipe"]["set"] == "official" and result["recipe"]["source"] == "official"
        assert result["recipe"]["values"]["optimizer"] == "adam" and result["recipe"]["values"]["lr"] == 1e-3
        assert result["stop"]["reason"] in ("rounds", "plateau", "max_steps")
        assert result["parameters"] == count_parameters(tiny.test_tiny())  # the report need not build it
        assert json.loads((store.run_dir(spec.run_id) / "spec.json").read_text())["recipe"] == "official"
    finally:
        registry._REGISTRY.pop("test_tiny_adam", None)


def test_a_run_without_test_sets_predicts_no_test_case(tmp_path, tiny):
    """A tuning trial (no test sets) trains and validates only: no test case is predicted or scored;
    naming the training dataset's own ``:test`` split brings its test back."""
    from bench3d2d.harness import _worker
    from bench3d2d.harness.sweep import RunSpec

    store = ResultsStore(tmp_path / "results")
    trial = RunSpec(tiny.MODEL, "synthetic-ga-s-1", (), 100, profile="tiny", benchmark="tune")
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    cases = _worker.execute_run(trial, trial_dir, store=store)
    assert cases.empty and list(cases.columns) == list(CASE_COLUMNS)
    assert not (trial_dir / "predictions").exists()
    assert pd.read_csv(trial_dir / "cases.csv").empty

    run = RunSpec(tiny.MODEL, "synthetic-ga-s-1", ("synthetic-ga-s-1:test",), 100, profile="tiny")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tested = _worker.execute_run(run, run_dir, store=store)
    assert set(tested["test_set"]) == {"synthetic-ga-s-1"} and len(tested) > 0
