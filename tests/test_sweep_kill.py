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
    plan = expand_plan(models="fpbnet", fractions="5,10,20,100", datasets="ga", pretrain=pretrain, seeds="0")
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


# -- fault injection: SIGKILL at seeded moments over cache preparation, fitting, evaluation, report ------
TINY = ["--models", "test_tiny", "--profile", "tiny", "--fractions", "50,100", "--pretrain", "none",
        "--datasets", "synthetic-rpd", "--seeds", "0", "--no-progress", "--allow-untuned"]  # fmt: skip
LEFTOVERS = ("claim.json", ".claim.json", "progress.json", "error.json")


def _fault_env(fault: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FAULT_AT"}
    env.update(BENCH3D2D_BACKEND="_sweep_fault", BENCH3D2D_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]))  # fmt: skip
    if fault:
        env["FAULT_AT"] = fault
    return env


def _bench3d2d(args: list[str], fault: str | None) -> subprocess.CompletedProcess:
    code = "import sys, _sweep_fault; from bench3d2d.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=_fault_env(fault), capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _leftovers(*folders: Path) -> list[Path]:
    return [p for f in folders for p in f.rglob("*")
            if p.name.endswith((".tmp", ".takeover")) or p.name in LEFTOVERS]  # fmt: skip


@pytest.mark.slow
def test_sigkill_at_seeded_moments_then_rerun_gives_the_uninterrupted_results(tmp_path):
    import random

    from bench3d2d.data import load_dataset

    ref, out, report = tmp_path / "reference", tmp_path / "results", tmp_path / "report"
    done = _bench3d2d(["run", *TINY, "--out", str(ref)], None)
    assert done.returncode == 0, done.stderr
    expected = {r: (ref / "runs" / r / "cases.csv").read_bytes() for r in _complete(ref)}
    assert len(expected) == 2
    n_cases = len(load_dataset("synthetic-rpd", size="quick"))
    n_maps = min(len(list((ref / "runs" / r / "predictions").rglob("*.npz"))) for r in expected)
    rng = random.Random(15)
    first = rng.randint(2, n_cases // 2)
    moments = [
        f"prepare:{first}",  # the first case folders are cached, the next one is a temporary folder
        f"prepare:{rng.randint(1, n_cases - first)}",
        "fit:1",  # the first run's first validation (checkpoint written)
        f"evaluate:{rng.randint(1, n_maps)}",  # the first run's evaluation, between prediction files
        f"fit:{rng.randint(1, 2)}",  # the second run's fit (or the first's resumed one)
        f"evaluate:{rng.randint(1, n_maps)}",
    ]
    seen: dict[str, int] = {}
    for moment in moments:
        killed = _bench3d2d(["run", *TINY, "--out", str(out)], moment)
        assert killed.returncode == -signal.SIGKILL, (moment, killed.returncode, killed.stderr[-2000:])
        if moment.startswith("prepare"):  # a kill during preparation leaves a temporary cache folder
            assert any("cache" in p.parts and p.name.endswith(".tmp") for p in _leftovers(out)), moment
        now = _complete(out)
        assert {r: now[r] for r in seen} == seen, moment  # a complete run is never redone
        seen = now
    rerun = _bench3d2d(["run", *TINY, "--out", str(out)], None)
    assert rerun.returncode == 0, rerun.stderr
    final = _complete(out)
    assert set(final) == set(expected) and {r: final[r] for r in seen} == seen
    for run_id, data in expected.items():  # byte-identical to the uninterrupted sweep
        assert (out / "runs" / run_id / "cases.csv").read_bytes() == data, run_id
    assert "0 runs and 0 pre-trainings to do" in _bench3d2d(["run", *TINY, "--out", str(out)], None).stderr

    report_args = ["report", str(out), "--out", str(report), "--no-figures", "--bootstrap", "99"]
    killed = _bench3d2d(report_args, f"report:{rng.randint(1, 4)}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _leftovers(report)  # the kill left a temporary file ...
    again = _bench3d2d(report_args, None)
    assert again.returncode == 0, again.stderr
    assert (report / "README.md").is_file()
    assert _leftovers(out, report) == []  # ... which the next report removed; the sweep left none
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(expected)
