"""Executors: in-process, one subprocess per run, submitit (local and debug backends) share one code path."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import _sweep_fake
import pytest

from bench3d2d.harness.executors import (
    LocalExecutor,
    SlurmExecutor,
    SubprocessExecutor,
    SweepProgress,
    make_executor,
)
from bench3d2d.harness.sweep import ResultsStore, RunState, expand_plan, run_sweep

TESTS = Path(__file__).resolve().parent


def _plan(fractions="5,100", pretrain="none"):
    return expand_plan(models="fpbnet", fractions=fractions, datasets="ga", pretrain=pretrain, seeds="0")


def test_make_executor():
    assert isinstance(make_executor("local"), LocalExecutor)
    assert make_executor("subprocess", jobs=3).jobs == 3
    assert make_executor("slurm", jobs=2, cluster="debug").cluster == "debug"
    with pytest.raises(ValueError, match="subprocess"):
        make_executor("local", jobs=2)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("mpi")


def test_progress_shows_an_overall_bar_and_per_run_bars(tmp_path, fake_env):
    stream = io.StringIO()
    plan = _plan()
    progress = SweepProgress(total=len(plan.runs), enabled=True, stream=stream)
    report = run_sweep(
        plan, ResultsStore(tmp_path), executor=LocalExecutor(backend=_sweep_fake), progress=progress
    )
    assert report.count("complete") == 2
    text = stream.getvalue()
    assert "sweep" in text and "2/2" in text
    # Without a terminal: one plain line per finished run.
    stream = io.StringIO()
    run_sweep(_plan("10"), ResultsStore(tmp_path), progress=SweepProgress(total=1, stream=stream))
    assert stream.getvalue().startswith("[1/1] complete run ")


@pytest.mark.slow
def test_subprocess_executor_isolates_failures_and_crashes(tmp_path, fake_env, monkeypatch):
    plan = _plan("5,10,100")
    crash, fail, ok = (s.run_id for s in plan.runs)
    monkeypatch.setenv("FAKE_CRASH_RUNS", crash)
    monkeypatch.setenv("FAKE_FAIL_RUNS", fail)
    store = ResultsStore(tmp_path / "results")
    report = run_sweep(
        plan, store, executor=SubprocessExecutor(jobs=2), progress=SweepProgress(1, enabled=False)
    )
    status = {o.id: o for o in report.outcomes}
    assert status[ok].status == "complete" and store.state(ok) is RunState.COMPLETE
    assert status[fail].status == "failed" and store.error(fail)["type"] == "RuntimeError"
    assert "Traceback" in store.error(fail)["traceback"]
    assert status[crash].status == "failed" and "status -9" in status[crash].error
    assert store.error(crash)["cause"] == "worker" and store.state(crash) is RunState.FAILED
    assert (store.run_dir(ok) / "worker.out").is_file()
    pids = {p.stem: p.read_text().split() for p in fake_env.glob("*.count")}
    assert pids[ok] != [str(os.getpid())]  # ran in another process


@pytest.mark.slow
def test_submitit_local_backend(tmp_path, fake_env):
    plan = _plan("5,100", pretrain="none,slo")
    store = ResultsStore(tmp_path / "results")
    executor = SlurmExecutor(jobs=2, cluster="local", parameters={"timeout_min": 10}, poll=0.2)
    report = run_sweep(plan, store, executor=executor, progress=SweepProgress(1, enabled=False))
    assert report.count("complete", "pretrain") == 1 and report.count("complete") == 4
    assert all(store.is_complete(s.run_id) for s in plan.runs)
    assert any((tmp_path / "results" / "submitit").rglob("*_log.out"))
    # Same store, same code path: the local executor now finds everything done.
    again = run_sweep(plan, store, progress=SweepProgress(1, enabled=False))
    assert again.outcomes == [] and again.skipped_complete == 4


def test_submitit_debug_backend(tmp_path, fake_env):
    plan = _plan("20")
    store = ResultsStore(tmp_path / "results")
    executor = SlurmExecutor(jobs=1, cluster="debug", poll=0.05)
    report = run_sweep(plan, store, executor=executor, progress=SweepProgress(1, enabled=False))
    assert report.count("complete") == 1
    result = json.loads((store.run_dir(plan.runs[0].run_id) / "result.json").read_text())
    assert result["status"] == "complete"


def test_cli_run_one(tmp_path, fake_env, capsys):
    from bench3d2d.cli import main

    spec = _plan("5").runs[0]
    store = ResultsStore(tmp_path)
    store.write_spec(spec)
    assert main(["run-one", str(tmp_path), spec.run_id, "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert outcome["status"] == "complete" and outcome["id"] == spec.run_id
    assert main(["run-one", str(tmp_path), spec.run_id]) == 0
    assert capsys.readouterr().out.startswith("skipped run")
    assert main(["run-one", str(tmp_path), "000000000000"]) == 2  # clear error, no traceback
    assert "no readable run spec" in capsys.readouterr().err


def test_cli_run_with_every_executor_option(tmp_path, fake_env, capsys):
    from bench3d2d.cli import main

    out = tmp_path / "results"
    argv = ["run", "--models", "fpbnet", "--datasets", "rpd", "--fractions", "20", "--pretrain", "none",
            "--seeds", "0", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main([*argv, "--executor", "slurm", "--slurm-cluster", "debug", "--slurm-time", "5"]) == 0
    assert "1 runs completed" in capsys.readouterr().err
    assert main([*argv, "--executor", "local", "--jobs", "2"]) == 2
    assert "use --executor subprocess" in capsys.readouterr().err
    assert main([*argv, "--seeds", "1", "--executor", "slurm", "--slurm-cluster", "debug", "--detach"]) == 0
    assert "submitted 1 job(s) to debug" in capsys.readouterr().err
