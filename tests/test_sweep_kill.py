"""SIGKILL in the middle of a sweep, then the same command again: no run lost, recomputed or duplicated."""

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

from bench3d2d.harness.sweep import ResultsStore, RunState, expand_plan

TESTS = Path(__file__).resolve().parent
PLAN = ["--models", "fpbnet", "--fractions", "5,10,20,100", "--datasets", "ga", "--seeds", "0"]


def _env(counters: Path, sleep: float) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENCH3D2D_BACKEND="_sweep_fake",
        PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
        FAKE_COUNTER_DIR=str(counters),
        FAKE_SLEEP=str(sleep),
        FAKE_STEPS="4",
    )
    return env


def _complete(out: Path) -> dict[str, float]:
    """run id -> mtime of result.json, for complete runs."""
    store = ResultsStore(out)
    return {
        r: (store.run_dir(r) / "result.json").stat().st_mtime_ns
        for r in store.run_ids()
        if store.is_complete(r)
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("executor", "pretrain", "kill_after"), [("local", "none,slo", 3), ("subprocess", "none", 2)]
)
def test_sigkill_then_rerun_loses_and_repeats_nothing(tmp_path, executor, pretrain, kill_after):
    out, counters = tmp_path / "results", tmp_path / "counters"
    counters.mkdir()
    jobs = ["--executor", executor] + (["--jobs", "2"] if executor == "subprocess" else [])
    cmd = [sys.executable, "-m", "bench3d2d", "run", *PLAN, "--pretrain", pretrain, *jobs, "--out", str(out),
           "--no-progress"]  # fmt: skip
    plan = expand_plan(models="fpbnet", fractions="5,10,20,100", datasets="ga", pretrain=pretrain)
    ids = {s.run_id for s in plan.runs}
    assert len(ids) == 4 * len(pretrain.split(","))

    proc = subprocess.Popen(cmd, env=_env(counters, 0.6), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(_complete(out)) < kill_after:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.05)
    time.sleep(0.3)  # now in the middle of a run
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and every worker it started
    proc.wait()
    before = _complete(out)
    assert kill_after <= len(before) < len(ids)
    started = {p.stem for p in counters.glob("*.count")}
    interrupted = (started & ids) - set(before)
    store = ResultsStore(out)
    deadline = time.monotonic() + 30  # SIGKILL reaches the workers a moment after the sweep
    while any(store.state(r) is RunState.RUNNING for r in interrupted) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(store.state(r) is RunState.INCOMPLETE for r in interrupted)

    rerun = subprocess.run(cmd, env=_env(counters, 0.0), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = _complete(out)
    assert set(after) == ids  # no run lost
    assert {r: after[r] for r in before} == before  # complete runs untouched
    runs = {p.stem: len(p.read_text().split()) for p in counters.glob("*.count")}
    for run_id in ids:  # executed once; an interrupted run once more (it resumes), never more
        assert runs[run_id] == (2 if run_id in interrupted else 1), run_id
    assert all(runs[p.key] <= 2 for p in plan.pretrainings)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(ids)  # no duplicate folders
    for run_id in ids:
        folder = out / "runs" / run_id
        assert not (folder / "claim.json").exists() and not (folder / "error.json").exists()
        cases = pd.read_csv(folder / "cases.csv")
        assert not cases.duplicated(["test_set", "case_id", "metric"]).any()
        assert json.loads((folder / "result.json").read_text())["cases_rows"] == len(cases)
    # A third time: nothing to do.
    third = subprocess.run(cmd, env=_env(counters, 0.0), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "0 runs and 0 pre-trainings to do" in third.stderr
