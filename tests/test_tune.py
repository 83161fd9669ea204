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
from bench3d2d.engine.profiles import get_profile
from bench3d2d.engine.recipes import RecipeError, apply_recipe, load_tuned, resolve_recipe, run_profile
from bench3d2d.harness.tune import (
    OVER_BUDGET_ATTR,
    StudySummary,
    TuneSettings,
    TuningError,
    best_params,
    database_url,
    make_storage,
    recipe_table,
    study_name,
    suggest,
    trial_hparams,
    tune,
)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def no_shipped_table(monkeypatch):
    """No shipped tuned table, hence no shipped budget to match: a table of any budget may be written."""
    from bench3d2d.engine import recipes

    monkeypatch.setattr(recipes, "_shipped_text", lambda: None)


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
    # smoke: a round-based profile (min_steps 0), so the fake's validations at steps 1-3 can be pruned
    study = tune(
        TuneSettings("fpbnet", "ga", 100, trials=14, seed=3, profile="smoke"),
        results=out,
        backend=_sweep_fake,
    )
    trials = study.get_trials()
    assert len(trials) == 14 and sorted(t.number for t in trials) == list(range(14))
    states = {t.state for t in trials}
    assert optuna.trial.TrialState.PRUNED in states  # median pruning on intermediate validation Dice
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in complete)
    assert all(t.value == max(t.intermediate_values.values()) for t in complete)
    # The search space is the registry's (optimizer x lr); each trial trained with its recipe completed.
    assert set(study.best_params) == {"optimizer", "lr"}
    assert all(t.user_attrs["hparams"] == trial_hparams("fpbnet", t.params) for t in trials)
    assert not any((out / "tuning").rglob("checkpoints"))  # removed after each trial by default
    # The budget is the study's total: asking again for 14 does nothing, for 16 runs two more.
    for budget, fraction in ((14, 100), (16, "100%")):
        settings = TuneSettings("fpbnet", "ga", fraction, trials=budget, profile="smoke")
        assert len(tune(settings, results=out, backend=_sweep_fake).trials) == budget

    best = best_params(
        "fpbnet", "synthetic-ga-s-1", 20, "smoke", results=out
    )  # falls back to the 100 % study
    assert best == trial_hparams("fpbnet", study.best_params)
    argv = ["run", "--models", "fpbnet", "--datasets", "ga", "--fractions", "20", "--pretrain", "none",
            "--profile", "smoke", "--seeds", "0"]  # fmt: skip
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
    assert "no tuning study 'fpbnet|synthetic-ga-s-1|20%|standard'" in err and "bench3d2d tune" in err


def test_tune_cli(tmp_path, fake_env, capsys):
    argv = ["tune", "--models", "fpbnet", "--dataset", "rpd", "--fraction", "20", "--trials", "2"]
    assert main([*argv, "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (summary,) = out["studies"]
    assert summary["study"] == "fpbnet|synthetic-rpd|20%|standard" and summary["trials"] == 2
    assert summary["states"] == {"complete": 2} and out["not_tuned"] == []
    assert out["equal_budget"]["trials"] == 2 and out["equal_budget"]["profile"] == "standard"


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
    cmd = [sys.executable, "-m", "bench3d2d", "tune", "--models", "fpbnet", "--dataset", "ga",
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
        study_name=study_name("fpbnet", "synthetic-ga-s-1", fraction, "standard"),
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


# -- equal-budget tuning of many models and the tuned recipe table ----------------------------------------
def test_trial_settings_are_what_the_tuned_recipe_of_its_params_trains_with():
    prof = get_profile("standard")
    keys = ("optimizer", "lr", "momentum", "betas", "weight_decay", "batch_size")
    for params in ({"optimizer": "adam", "lr": 3e-3}, {"optimizer": "sgd", "lr": 0.05}):
        trial = run_profile(prof, "fpbnet", "common", trial_hparams("fpbnet", params))  # how tune trains
        table = apply_recipe(prof, resolve_recipe("fpbnet", "tuned", tuned={"fpbnet": params}))
        assert {k: getattr(trial, k) for k in keys} == {k: getattr(table, k) for k in keys}, params
    adam = trial_hparams("fpbnet", {"optimizer": "adam", "lr": 3e-3})
    assert adam["weight_decay"] == 0.0 and adam["betas"] == [0.9, 0.999]  # Adam's defaults, not SGD's
    assert trial_hparams("fpbnet", {"rounds": 3}) == {"rounds": 3}  # no recipe part: passed on as it is


def test_tune_models_one_study_each_and_write_the_recipe_table(tmp_path, fake_env, capsys, no_shipped_table):
    out, table_file = tmp_path / "results", tmp_path / "tuned.json"
    argv = ["tune", "--models", "fpb*,ipn", "--trials", "3", "--seed", "1", "--out", str(out),
            "--write-recipes", str(table_file)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "equal budget: 2 model(s) (fpbnet, ipn), each 3 trials of profile standard" in printed
    storage = make_storage(None, out)
    names = sorted(optuna.get_all_study_names(storage))
    assert names == ["fpbnet|synthetic-ga-s-1|100%|standard", "ipn|synthetic-ga-s-1|100%|standard"]
    assert sum(line.startswith(("fpbnet: best", "ipn: best")) for line in printed.splitlines()) == 2

    tuned = load_tuned(table_file)  # the engine accepts the table
    data = json.loads(table_file.read_text())
    command = ("bench3d2d tune --models 'fpb*,ipn' --dataset ga --fraction 100 --trials 3 --profile standard "
               f"--seed 1 --out {out} --write-recipes {table_file}")  # fmt: skip
    assert data["command"] == command and data["not_tuned"] == {}
    for name in names:
        model = name.split("|")[0]
        study = optuna.load_study(study_name=name, storage=storage)
        assert len(study.trials) == 3
        assert tuned[model] == study.best_params  # the best trial's parameters, as recipe values
        info = data["recipes"][model]["_study"]
        assert info["study"] == name and info["trials"] == 3 and info["seed"] == 1
        assert (info["profile"], info["dataset"], info["fraction"]) == ("standard", "synthetic-ga-s-1", 100)
        assert info["best_trial"] == study.best_trial.number
        assert info["best_validation_dice"] == study.best_value
        assert sum(info["states"].values()) == 3 and info["command"] == command
        space = {
            "optimizer": ["categorical", ["sgd", "adam"]],
            "lr": ["log", {"given": "optimizer", "sgd": [1e-3, 0.3], "adam": [1e-5, 1e-2]}],
        }
        assert info["search_space"] == space


def test_a_model_without_a_complete_trial_gets_no_entry(
    tmp_path, fake_env, monkeypatch, capsys, no_shipped_table
):
    monkeypatch.setenv("FAKE_FAIL_MODELS", "ipn")
    table_file = tmp_path / "tuned.json"
    argv = ["tune", "--models", "fpbnet,ipn", "--trials", "2", "--out", str(tmp_path / "r"),
            "--write-recipes", str(table_file)]  # fmt: skip
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "ipn: no complete trial (fail 2); not tuned" in printed
    assert "not tuned (no complete trial, no recipe entry): ipn" in printed
    assert set(load_tuned(table_file)) == {"fpbnet"}
    assert "no complete trial" in json.loads(table_file.read_text())["not_tuned"]["ipn"]


def _summary(**changes) -> StudySummary:
    base = dict(model="m", study="m|d|100%|standard", dataset="d", fraction=100.0, profile="standard", seed=0,
                budget=4, states={"complete": 3, "pruned": 1}, search_space={"lr": ("log", 1e-4, 0.3)},
                best_value=0.8, best_trial=2, best_params={"optimizer": "adam", "lr": 1e-3})  # fmt: skip
    return StudySummary(**{**base, **changes})


def test_recipe_table_rejects_what_a_recipe_cannot_hold_and_over_budget_studies(tmp_path):
    table = recipe_table([_summary()], "bench3d2d tune ...")
    assert table["recipes"]["m"]["optimizer"] == "adam" and table["recipes"]["m"]["lr"] == 1e-3
    with pytest.raises(RecipeError, match=r"parameter\(s\) rounds .*allowed: optimizer, lr"):
        recipe_table([_summary(best_params={"lr": 1e-3, "rounds": 3})], "cmd")
    with pytest.raises(RecipeError, match="holds 5 trials, more than the budget of 4"):
        recipe_table([_summary(states={"complete": 5})], "cmd")
    # over-budget trials of racing workers do not count
    assert "m" in recipe_table([_summary(states={"complete": 4, OVER_BUDGET_ATTR: 1})], "cmd")["recipes"]


def test_write_recipes_refuses_a_search_space_a_recipe_cannot_hold_before_tuning(
    tmp_path, fake_env, monkeypatch, capsys, no_shipped_table
):
    from dataclasses import replace

    from bench3d2d.models import _registry, model_info

    info = model_info("fpbnet")
    space = {**info.search_space, "rounds": ("int", 2, 4)}
    monkeypatch.setitem(_registry._REGISTRY, "fpbnet", replace(info, search_space=space))
    argv = ["tune", "--models", "fpbnet", "--trials", "2", "--out", str(tmp_path), "--write-recipes",
            str(tmp_path / "t.json")]  # fmt: skip
    assert main(argv) == 2
    assert "parameter(s) rounds that a tuned recipe cannot hold" in capsys.readouterr().err
    assert not (tmp_path / "tuning.db").exists() and not list(fake_env.iterdir())  # no trial ran


def test_the_lr_range_follows_the_optimizer_drawn_before_it():
    """The default space draws lr in the chosen optimiser's own range (SGD 1e-3..0.3, Adam 1e-5..1e-2)."""
    from bench3d2d.harness.tune import suggest
    from bench3d2d.models._registry import DEFAULT_SEARCH_SPACE

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        params = suggest(study.ask(), DEFAULT_SEARCH_SPACE)
        lo, hi = {"sgd": (1e-3, 0.3), "adam": (1e-5, 1e-2)}[params["optimizer"]]
        assert lo <= params["lr"] <= hi
        seen.add(params["optimizer"])
    assert seen == {"sgd", "adam"}
    with pytest.raises(ValueError, match="depends on 'optimizer'"):
        suggest(study.ask(), {"lr": ("log", {"given": "optimizer", "sgd": (1e-3, 0.3)})})


def test_no_trial_is_pruned_before_the_profiles_min_steps(tmp_path, fake_env):
    """standard's first regular validation is at step 300; the fake run validates at steps 1-3, so nothing
    may be pruned."""
    from bench3d2d.harness.tune import first_judged_step

    study = tune(TuneSettings("fpbnet", "ga", 100, trials=10, seed=3), results=tmp_path, backend=_sweep_fake)
    assert first_judged_step(get_profile("standard"), TuneSettings("fpbnet", "ga", 100)) == 300
    assert first_judged_step(get_profile("standard"), TuneSettings("fpbnet", "ga", 100, max_steps=200)) == 150
    assert {t.state for t in study.get_trials()} == {optuna.trial.TrialState.COMPLETE}


def test_max_steps_caps_every_trial_and_is_recorded(
    tmp_path, fake_env, capsys, monkeypatch, no_shipped_table
):
    """--max-steps sets the trials' step budget (not a recipe value) and goes into the table's command."""
    seen = []
    real = _sweep_fake.execute_run

    def spy(spec, *args, **kwargs):
        seen.append(dict(spec.hparams))
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(_sweep_fake, "execute_run", spy)
    table = tmp_path / "tuned.json"
    argv = [
        "tune",
        "--models",
        "fpbnet",
        "--trials",
        "2",
        "--max-steps",
        "30",
        "--out",
        str(tmp_path / "r"),
        "--write-recipes",
        str(table),
    ]
    assert main(argv) == 0
    assert seen and all(h == {**h, "max_steps": 30} and "min_steps" not in h for h in seen)  # no plateau
    data = json.loads(table.read_text())
    entry = data["recipes"]["fpbnet"]
    assert "max_steps" not in entry and entry["_study"]["max_steps"] == 30
    assert "--max-steps 30" in data["command"] and "at most 30 steps a trial" in capsys.readouterr().out


def test_an_equal_budget_needs_the_same_step_budget_for_every_model(tmp_path, fake_env):
    from bench3d2d.harness.tune import tune_models

    settings = [TuneSettings("fpbnet", trials=2, max_steps=100), TuneSettings("ipn", trials=2, max_steps=200)]
    with pytest.raises(ValueError, match="max_steps"):
        tune_models(settings, results=tmp_path, backend=_sweep_fake)


# -- the shipped table's budget is what "equal" means for a model tuned later ---------------------------
def _table(**studies) -> str:
    recipes = {m: {"optimizer": "sgd", "lr": 0.05, "_study": st} for m, st in studies.items()}
    return json.dumps({"format": "bench3d2d-tuned-recipes/1", "recipes": recipes})


def _study(**changes):
    from bench3d2d.models._registry import DEFAULT_SEARCH_SPACE

    space = json.loads(json.dumps(DEFAULT_SEARCH_SPACE))
    base = {"trials": 3, "profile": "standard", "max_steps": 40, "dataset": "synthetic-rpd",
            "fraction": 100.0, "seed": 2, "search_space": space}  # fmt: skip
    return {**base, **changes}


def test_tune_defaults_to_the_budget_the_shipped_table_records(tmp_path, fake_env, monkeypatch, capsys):
    """Without budget options, a model is tuned exactly as the shipped table's models were (read from
    their _study records, so a regenerated table moves the default with it)."""
    from bench3d2d.engine import recipes

    monkeypatch.setattr(recipes, "_shipped_text", lambda: _table(ipn=_study(), fpbnet=_study()))
    table = tmp_path / "mine.json"
    assert (
        main(["tune", "--models", "lachinov", "--out", str(tmp_path / "r"), "--write-recipes", str(table)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "the same budget as the shipped table's models" in printed
    study = json.loads(table.read_text())["recipes"]["lachinov"]["_study"]
    got = {k: study[k] for k in ("trials", "profile", "max_steps", "dataset", "fraction", "seed")}
    assert got == {k: v for k, v in _study().items() if k != "search_space"}
    assert study["search_space"] == _study()["search_space"]


def test_a_table_to_layer_over_the_shipped_one_must_have_its_budget(tmp_path, fake_env, monkeypatch, capsys):
    from bench3d2d.engine import recipes
    from bench3d2d.harness.tune import shipped_budget

    monkeypatch.setattr(recipes, "_shipped_text", lambda: _table(ipn=_study(), fpbnet=_study()))
    argv = ["tune", "--models", "lachinov", "--trials", "2", "--seed", "2", "--out", str(tmp_path / "r"),
            "--write-recipes", str(tmp_path / "t.json")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "not the budget the shipped table's models were tuned with" in err and "trials 2 (shipped: 3)" in err
    )
    assert "leave those options out" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "tuning.db").exists() and not list(fake_env.iterdir())  # nothing ran
    # Tuning every shipped model too makes a complete table of one's own: any shared budget is equal.
    argv[2] = "ipn,fpbnet,lachinov"
    assert main(argv) == 0
    assert "NOT the shipped table's budget" in capsys.readouterr().out
    # Models tuned with different budgets leave no budget to call equal: --write-recipes is refused,
    # tuning without it goes on with a note.
    monkeypatch.setattr(recipes, "_shipped_text", lambda: _table(ipn=_study(), fpbnet=_study(trials=4)))
    with pytest.raises(RecipeError, match="tuned with different budgets"):
        shipped_budget()
    assert main(argv) == 2 and "tuned with different budgets" in capsys.readouterr().err
    assert main(argv[:-2]) == 0 and "no shipped budget to follow" in capsys.readouterr().err
