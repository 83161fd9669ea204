"""Tuned recipe tables of one's own (``run --recipes FILE``) and models without a tuned entry."""

from __future__ import annotations

import json

import pytest

from bench3d2d.cli import main
from bench3d2d.engine.recipes import SHIPPED_TABLE, RecipeError, load_tuned, recipe_label, resolve_recipe
from bench3d2d.harness._runner import read_pretrain_spec, write_pretrain_spec
from bench3d2d.harness._spec import PretrainSpec, RunSpec
from bench3d2d.harness.sweep import PlanOptions, ResultsStore, expand_plan
from bench3d2d.models import _registry as registry


def _table(path, **entries):
    path.write_text(json.dumps({"format": "bench3d2d-tuned-recipes/1", "recipes": entries}))
    return path


@pytest.fixture
def newcomer(monkeypatch):
    """A registered model that the shipped table does not know."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_model(registry.model_info("fpbnet").factory, name="newcomer_net", tags=("test",))
    return "newcomer_net"


def test_user_tables_are_layered_over_the_shipped_one_the_last_winning(tmp_path, newcomer):
    a = _table(tmp_path / "a.json", newcomer_net={"optimizer": "adam", "lr": 1e-3}, fpbnet={"lr": 0.02})
    b = _table(tmp_path / "b.json", newcomer_net={"optimizer": "sgd", "lr": 0.03})
    got = resolve_recipe(newcomer, "tuned", tables=[a, b])
    assert (got.source, got.table, got.values["lr"]) == ("tuned", "b.json", 0.03)
    assert got.describe() == "tuned (b.json)" and got.to_dict()["table"] == "b.json"
    assert resolve_recipe("fpbnet", "tuned", tables=[a, b]).values["lr"] == 0.02  # a over the shipped
    shipped = resolve_recipe("ipn", "tuned", tables=[a, b])
    assert shipped.table == SHIPPED_TABLE and shipped.describe() == "tuned (shipped table)"
    assert shipped.values == resolve_recipe("ipn", "tuned").values
    untuned = resolve_recipe(newcomer, "tuned")
    assert (
        untuned.describe() == "common (no tuned entry)" and "no tuned entry for newcomer_net" in untuned.note
    )
    with pytest.raises(RecipeError, match=r"recipe table .*missing\.json: no such file"):
        resolve_recipe(newcomer, "tuned", tables=[tmp_path / "missing.json"])
    assert load_tuned(tmp_path / "missing.json") == {}  # without must_exist, as before
    assert recipe_label({"set": "official", "source": "common"}) == "common (no official entry)"
    assert recipe_label(None) == "not recorded"


def test_a_table_changes_only_the_ids_of_its_models_and_workers_get_it(tmp_path, newcomer):
    table = _table(tmp_path / "mine.json", newcomer_net={"optimizer": "adam", "lr": 1e-3})
    opts = PlanOptions(recipe="tuned", recipe_tables=(str(table),))
    plain = expand_plan(f"fpbnet,{newcomer}", "100", "rpd", "none,faf", "0", "smoke")
    mine = expand_plan(f"fpbnet,{newcomer}", "100", "rpd", "none,faf", "0", "smoke", opts)
    ids = {s.model: set() for s in plain.runs}
    for s in plain.runs:
        ids[s.model].add(s.run_id)
    assert {s.run_id for s in mine.runs if s.model == "fpbnet"} == ids["fpbnet"]  # baselines keep their runs
    assert not {s.run_id for s in mine.runs if s.model == newcomer} & ids[newcomer]
    assert plain.untuned == [newcomer] and mine.untuned == []
    assert any("newcomer_net: no tuned entry" in n and "common (no tuned entry)" in n for n in plain.notes)
    spec = next(s for s in mine.runs if s.model == newcomer)
    assert spec.recipe_tables == (str(table.resolve()),)
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    store = ResultsStore(tmp_path / "results")
    pre = PretrainSpec(
        newcomer, "synthetic-ga-m", "faf", "smoke", recipe="tuned", recipe_tables=spec.recipe_tables
    )
    write_pretrain_spec(pre, store)
    assert read_pretrain_spec(store, pre.key).recipe_tables == spec.recipe_tables
    with pytest.raises(ValueError, match="apply to --recipe tuned, not common"):
        expand_plan(
            "fpbnet",
            "100",
            "rpd",
            "none",
            "0",
            "smoke",
            PlanOptions(recipe="common", recipe_tables=(str(table),)),
        )


def test_the_dry_run_names_what_an_untuned_model_gets_and_refuses_it(tmp_path, newcomer, fake_env, capsys):
    argv = ["run", "--models", f"fpbnet,{newcomer}", "--datasets", "rpd", "--fractions", "100",
            "--seeds", "0", "--pretrain", "none", "--profile", "smoke", "--out", str(tmp_path / "r"),
            "--dry-run", "--list"]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "recipe: newcomer_net trains with common (no tuned entry)" in captured.out
    assert "recipe: fpbnet trains with tuned (shipped table)" in captured.out
    assert "newcomer_net scratch synthetic-rpd 100% seed 0 common (no tuned entry) recipe" in captured.out
    assert "bench3d2d: error: no tuned recipe for newcomer_net" in captured.err
    assert main([*argv, "--allow-untuned"]) == 0


def test_train_and_pretrain_take_recipes_too_and_refuse_a_missing_table(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    argv = [
        "train",
        "--model",
        "fpbnet",
        "--dataset",
        "rpd",
        "--out",
        str(tmp_path / "one"),
        "--recipes",
        str(missing),
    ]
    assert main(argv) == 2
    assert f"recipe table {missing}: no such file" in capsys.readouterr().err
    argv = ["pretrain", "--model", "fpbnet", "--source", "synthetic-ga-m", "--modality", "faf",
            "--out", str(tmp_path / "pre"), "--recipes", str(missing)]  # fmt: skip
    assert main(argv) == 2 and not (tmp_path / "one").exists() and not (tmp_path / "pre").exists()
