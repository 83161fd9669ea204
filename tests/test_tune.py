"""Optuna tuning: storages (SQLite, journal file, PostgreSQL), pruning, budgets shared by workers.

The PostgreSQL test uses a real server: $BENCH3D2D_TEST_POSTGRES_URL (exported by
.ci/start-postgres.sh), else a throwaway server started here with that script when the
PostgreSQL binaries are installed; it skips, saying why, only when neither works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import _sweep_fake
import optuna
import pytest

from bench3d2d.cli import main
from bench3d2d.harness.tune import (
    OVER_BUDGET_ATTR,
    TuneSettings,
    TuningError,
    best_params,
    database_url,
    make_storage,
    study_name,
    suggest,
    tune,
)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_study_name_and_storages(tmp_path):
    assert study_name("fpbnet", "synthetic-ga-s-1", 5, "quick") == "fpbnet|synthetic-ga-s-1|5%|quick"
    assert study_name("m", "/data/x/manifest.csv", 12.5, "paper").startswith("m|manifest-")
    sqlite = make_storage(None, tmp_path / "r")
    assert isinstance(sqlite, optuna.storages.RDBStorage) and (tmp_path / "r" / "tuning.db").is_file()
    journal = make_storage(f"journal:{tmp_path / 'j' / 'tuning.log'}", tmp_path)
    assert isinstance(journal, optuna.storages.JournalStorage)
    with pytest.raises(ValueError, match="not a URL"):
        make_storage("tuning.db", tmp_path)


def test_suggest_every_kind():
    study = optuna.create_study()
    trial = study.ask()
    space = {
        "lr": ("log", 1e-4, 0.3),
        "momentum": ("float", 0.8, 0.99),
        "rounds": ("int", 2, 4),
        "batch_size": ("categorical", [2, 4, 8]),
    }
    params = suggest(trial, space)
    assert 1e-4 <= params["lr"] <= 0.3 and 0.8 <= params["momentum"] <= 0.99
    assert params["rounds"] in (2, 3, 4) and params["batch_size"] in (2, 4, 8)
    with pytest.raises(ValueError, match="unknown kind"):
        suggest(study.ask(), {"x": ("normal", 0, 1)})


def test_tune_reports_validation_prunes_and_feeds_run_params_tuned(tmp_path, fake_env, capsys):
    out = tmp_path / "results"
    study = tune(TuneSettings("fpbnet", "ga", 100, trials=14, seed=3), results=out, backend=_sweep_fake)
    trials = study.get_trials()
    assert len(trials) == 14 and sorted(t.number for t in trials) == list(range(14))
    states = {t.state for t in trials}
    assert optuna.trial.TrialState.PRUNED in states  # median pruning on intermediate validation Dice
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in complete)
    assert all(t.value == max(t.intermediate_values.values()) for t in complete)
    # The search space is the registry's (lr, weight decay, batch size).
    assert set(study.best_params) == {"lr", "weight_decay", "batch_size"}
    assert not any((out / "tuning").rglob("checkpoints"))  # removed after each trial by default
    # The budget is the study's total: asking again for 14 does nothing, for 16 runs two more.
    for budget, fraction in ((14, 100), (16, "100%")):
        settings = TuneSettings("fpbnet", "ga", fraction, trials=budget)
        assert len(tune(settings, results=out, backend=_sweep_fake).trials) == budget

    best = best_params(
        "fpbnet", "synthetic-ga-s-1", 20, "quick", results=out
    )  # falls back to the 100 % study
    assert best == study.best_params
    argv = ["run", "--models", "fpbnet", "--datasets", "ga", "--fractions", "20", "--pretrain", "none"]
    assert main([*argv, "--params", "tuned", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"]["complete"] == 1
    spec = json.loads(next((out / "runs").glob("*/spec.json")).read_text())
    assert spec["hparams"] == best


def test_params_tuned_without_a_study_is_a_clear_error(tmp_path, capsys):
    argv = ["run", "--models", "fpbnet", "--datasets", "ga", "--fractions", "20", "--params", "tuned"]
    assert main([*argv, "--out", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no tuning study 'fpbnet|synthetic-ga-s-1|20%|quick'" in err and "bench3d2d tune" in err


def test_tune_cli(tmp_path, fake_env, capsys):
    argv = ["tune", "--model", "fpbnet", "--dataset", "rpd", "--fraction", "20", "--trials", "2"]
    assert main([*argv, "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["study"] == "fpbnet|synthetic-rpd|20%|quick" and summary["trials"] == 2
    assert summary["states"] == {"complete": 2}


# -- many workers, one study ----------------------------------------------------------------------------
def _postgres_url(tmp_path_factory) -> tuple[str | None, str]:
    url = os.environ.get("BENCH3D2D_TEST_POSTGRES_URL")
    if url:
        return url, ""
    script = ROOT / ".ci" / "start-postgres.sh"
    has_binaries = shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not has_binaries:
        return None, "BENCH3D2D_TEST_POSTGRES_URL is unset and no PostgreSQL binaries are installed"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return None, f"BENCH3D2D_TEST_POSTGRES_URL is unset and {script.name} failed: {proc.stderr.strip()}"
    env = dict(line.removeprefix("export ").split("=", 1) for line in proc.stdout.splitlines())
    return env["BENCH3D2D_TEST_POSTGRES_URL"], env["BENCH3D2D_TEST_POSTGRES_DIR"]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    url, info = _postgres_url(tmp_path_factory)
    if url is None:
        pytest.skip(f"no PostgreSQL server reachable: {info}")
    try:
        import sqlalchemy

        with sqlalchemy.create_engine(database_url(url)).connect():
            pass
        yield url
    except (ImportError, sqlalchemy.exc.SQLAlchemyError) as exc:
        pytest.skip(f"no PostgreSQL server reachable at {url}: {exc}")
    finally:
        if info:  # we started it: stop it
            subprocess.run(["bash", str(ROOT / ".ci" / "start-postgres.sh"), "stop", info], timeout=60)


def _two_workers(tmp_path: Path, storage: str, trials: int) -> tuple[list, set[str]]:
    out = tmp_path / "results"
    fraction = 50 + uuid.uuid4().int % 1000 / 100  # a fresh study in a shared server
    cmd = [sys.executable, "-m", "bench3d2d", "tune", "--model", "fpbnet", "--dataset", "ga",
           "--fraction", f"{fraction}", "--trials", str(trials), "--storage", storage,
           "--out", str(out)]  # fmt: skip
    env = {**os.environ, "FAKE_SLEEP": "0.8"}
    pipe = subprocess.PIPE
    procs = [
        subprocess.Popen([*cmd, "--seed", str(s)], env=env, stdout=pipe, stderr=pipe, text=True)
        for s in (0, 1)
    ]
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stdout + stderr
    study = optuna.load_study(
        study_name=study_name("fpbnet", "synthetic-ga-s-1", fraction, "quick"),
        storage=make_storage(storage, out),
    )
    return study.get_trials(), {
        pid for f in (tmp_path / "counters").glob("*.count") for pid in f.read_text().split()
    }


def _check_shared_budget(trials: list, pids: set[str], n: int) -> None:
    counted = [t for t in trials if not t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert len(counted) == n
    assert sorted(t.number for t in counted) == list(range(n))  # no trial number repeated or skipped
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state in done for t in counted)
    extra = [t for t in trials if t.user_attrs.get(OVER_BUDGET_ATTR)]
    assert len(extra) <= 1 and all(t.state == optuna.trial.TrialState.FAIL for t in extra)
    assert len(pids) == 2  # both workers did trials


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_processes_share_one_study(tmp_path, fake_env, kind):
    storage = (
        f"sqlite:///{tmp_path / 'shared.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'shared.log'}"
    )
    trials, pids = _two_workers(tmp_path, storage, 8)
    _check_shared_budget(trials, pids, 8)


@pytest.mark.slow
def test_two_processes_share_one_study_on_postgresql(tmp_path, fake_env, postgres_url):
    trials, pids = _two_workers(tmp_path, postgres_url, 8)
    _check_shared_budget(trials, pids, 8)


def test_tune_settings_are_checked_and_normalised():
    assert TuneSettings("fpbnet", fraction="12.5%").fraction == 12.5
    with pytest.raises(ValueError, match="at least 1"):
        TuneSettings("fpbnet", trials=0)
    with pytest.raises(ValueError, match="percentage"):
        TuneSettings("fpbnet", fraction=0)


def test_best_params_errors(tmp_path, fake_env):
    with pytest.raises(TuningError, match="no tuning study"):
        best_params("fpbnet", "synthetic-ga-s-1", 5, "quick", results=tmp_path)
