"""Recipe sets: resolution per set with provenance, precedence profile < recipe < hparams, and that a
run under ``official`` really trains IPN with Adam."""

from __future__ import annotations

import json

import pytest
from _engine_toy import SHAPE, TOY_PROFILE, toy_cases
from torch import nn

from bench3d2d.engine import FitOptions, build_model, fit
from bench3d2d.engine import checkpoints as ckpt_io
from bench3d2d.engine.profiles import SMOKE, STANDARD
from bench3d2d.engine.recipes import (
    COMMON,
    RecipeError,
    apply_recipe,
    load_tuned,
    resolve_recipe,
    run_profile,
)
from bench3d2d.engine.tasks import segmentation
from bench3d2d.models import _registry, register_model


@pytest.fixture
def toy_official_model():
    """A model registered with official settings only for the test (removed afterwards)."""

    @register_model(
        name="recipe_toy_net",
        depth={"min": 1},
        defaults={
            "official": {
                "optimizer": "adamw",
                "lr": 3e-3,
                "weight_decay": 0.05,
                "batch_size": 7,
                "iterations": 999,
            }
        },
    )
    def recipe_toy_net(in_channels=1, out_channels=1, depth=None, **kwargs):
        """Mean over depth, then a 1x1 conv."""
        return _MeanConv(in_channels, out_channels)

    yield "recipe_toy_net"
    _registry._REGISTRY.pop("recipe_toy_net", None)


class _MeanConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x.mean(dim=-1))


def test_common_is_the_paper_sgd_for_every_model():
    for name in ("fpbnet", "ipn", "ipnv2", "lachinov", "resensnet", "enface_unet"):
        recipe = resolve_recipe(name, "common")
        assert recipe.values == COMMON
        assert COMMON == {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
        assert (recipe.recipe_set, recipe.source, recipe.note) == ("common", "common", "")


def test_official_carries_the_published_optimisers():
    ipn = resolve_recipe("ipn", "official")
    assert ipn.source == "official"
    assert dict(ipn.values) == {"optimizer": "adam", "lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 0.0}
    assert ipn.not_applied["batch_size"] == 3 and "iterations" in ipn.not_applied
    ipnv2 = resolve_recipe("ipnv2", "official")
    assert dict(ipnv2.values) == {"optimizer": "adam", "lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0}
    assert ipnv2.not_applied["batch_size"] == 2
    for name in ("fpbnet", "lachinov", "resensnet"):  # no official settings: the common recipe, said so
        recipe = resolve_recipe(name, "official")
        assert recipe.values == COMMON and recipe.source == "common" and "no official" in recipe.note


def test_official_of_a_registered_model_is_read_from_its_defaults(toy_official_model):
    recipe = resolve_recipe(toy_official_model, "official")
    assert dict(recipe.values) == {
        "optimizer": "adamw",
        "lr": 3e-3,
        "betas": (0.9, 0.999),
        "weight_decay": 0.05,
    }
    assert recipe.not_applied == {"batch_size": 7, "iterations": 999}


def test_tuned_falls_back_to_official_then_common_and_says_so():
    table = {"ipnv2": {"optimizer": "adam", "lr": 1e-3}, "lachinov": {"lr": 0.03, "batch_size": 2}}
    tuned = resolve_recipe("ipnv2", "tuned", tuned=table)
    assert tuned.source == "tuned" and tuned.values["lr"] == 1e-3 and tuned.values["weight_decay"] == 0.0
    assert resolve_recipe("lachinov", "tuned", tuned=table).values == {**COMMON, "lr": 0.03, "batch_size": 2}
    ipn = resolve_recipe("ipn", "tuned", tuned=table)
    assert (ipn.recipe_set, ipn.source) == ("tuned", "official") and "no tuned entry" in ipn.note
    assert ipn.values["optimizer"] == "adam"
    fpb = resolve_recipe("fpbnet", "tuned", tuned={"fpbnet": {}})  # an empty entry counts as none
    assert fpb.source == "common" and "no tuned entry" in fpb.note and "no official" in fpb.note
    assert fpb.to_dict()["set"] == "tuned" and json.dumps(fpb.to_dict())


def test_shipped_tuned_table_loads_and_bad_tables_name_the_file(tmp_path):
    assert isinstance(load_tuned(), dict)
    assert resolve_recipe("ipn", "tuned").recipe_set == "tuned"
    assert load_tuned(tmp_path / "absent.json") == {}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RecipeError, match=r"bad\.json"):
        load_tuned(bad)
    table = {"format": "bench3d2d-tuned-recipes/1", "recipes": {"ipn": {"lr": 1, "epochs": 3}}}
    bad.write_text(json.dumps(table))
    with pytest.raises(RecipeError, match=r"bad\.json.*'ipn'.*epochs"):
        load_tuned(bad)
    bad.write_text(json.dumps({"recipes": {}}))
    with pytest.raises(RecipeError, match="format"):
        load_tuned(bad)


def test_unknown_set_or_model_is_refused():
    with pytest.raises(RecipeError, match="unknown recipe set 'best'"):
        resolve_recipe("ipn", "best")
    with pytest.raises(LookupError, match="unknown model"):
        resolve_recipe("no_such_net", "common")


def test_precedence_profile_then_recipe_then_hparams():
    prof = run_profile(SMOKE, "ipn", "official", {"lr": 5e-4, "top_k": 2})
    assert (prof.optimizer, prof.lr, prof.betas, prof.weight_decay) == ("adam", 5e-4, (0.9, 0.999), 0.0)
    assert prof.top_k == 2 and prof.rounds == SMOKE.rounds and prof.crop == SMOKE.crop  # profile otherwise
    assert run_profile(SMOKE, "ipn", "official").lr == 1e-4
    assert run_profile(SMOKE, "ipn", "common", {"optimizer": "adam"}).lr == 0.1
    # a recipe's batch size sets the segmentation batch only
    batched = apply_recipe(STANDARD, {"batch_size": 2})
    assert batched.batch_for("segmentation") == 2 and batched.batch_for("reconstruction") == 4


def test_common_leaves_the_built_in_profiles_unchanged():
    """So SSL cache keys and run ids of the existing profiles do not move."""
    for prof in (SMOKE, STANDARD):
        assert run_profile(prof, "fpbnet", "common").to_dict() == prof.to_dict()


def test_a_fit_under_official_trains_ipn_with_adam(tmp_path):
    class Stop(Exception):
        pass

    def stop(step, score):
        raise Stop

    prof = run_profile(TOY_PROFILE, "ipn", "official")
    model = build_model("ipn", SHAPE[2])
    with pytest.raises(Stop):
        fit(
            model,
            segmentation(),
            toy_cases(2, 1),
            toy_cases(1, 2),
            FitOptions(prof, 0),
            out_dir=tmp_path,
            on_validation=stop,
        )
    optimizer = ckpt_io.read(tmp_path / "checkpoints" / "last.pt")["optimizer"]
    group = optimizer["param_groups"][0]
    assert group["lr"] == 1e-4 and tuple(group["betas"]) == (0.9, 0.999) and group["weight_decay"] == 0.0
    assert "momentum" not in group and "amsgrad" in group  # torch.optim.Adam, not SGD
    assert all("exp_avg_sq" in s for s in optimizer["state"].values())


def test_train_and_evaluate_applies_the_recipe_set_and_records_it(tmp_path):
    from bench3d2d.engine import Compute, RunPaths, RunSettings, RunTarget, train_and_evaluate

    tiny = SMOKE.with_overrides({"rounds": 1, "steps_per_round": 1, "top_k": 1})
    res = train_and_evaluate(
        RunTarget("ipn", "synthetic-ga-s-1", fraction=5),
        RunSettings(profile=tiny, recipe="official", hparams={"lr": 5e-4}, compute=Compute(threads=1)),
        RunPaths(tmp_path / "run", tmp_path / "cache"),
    )
    assert res.extra["recipe"]["set"] == "official" and res.extra["recipe"]["values"]["lr"] == 1e-4
    assert res.extra["recipe"]["not_applied"]["batch_size"] == 3
    prof = res.extra["profile"]
    assert (prof["optimizer"], prof["lr"], prof["betas"]) == ("adam", 5e-4, [0.9, 0.999])
    assert prof["weight_decay"] == 0.0 and prof["top_k"] == 1
    assert res.extra["stop"] == {"reason": "rounds", "step": 1, "validations": 1} == res.fit.stop
    assert "recipe official (official:" in (tmp_path / "run" / "log.txt").read_text()
