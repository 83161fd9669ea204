"""SSL pre-training for every registered model, weight transfer, and the pre-training cache."""

from __future__ import annotations

import math

import pytest
import torch
from _engine_toy import TOY_PROFILE, toy_cases

from bench3d2d import list_models, model_info
from bench3d2d.engine import Compute, FitOptions, PretrainTarget, RunPaths, RunTarget, build_model, fit
from bench3d2d.engine import checkpoints as ckpt_io
from bench3d2d.engine.ssl import pretrain, pretrain_on
from bench3d2d.engine.tasks import reconstruction, segmentation

ONE_STEP = TOY_PROFILE.with_overrides({"rounds": 1, "steps_per_round": 1, "batch_size": 2})


def _depth_for(name: str) -> int:
    rule = model_info(name).size_rule
    d = max(64, rule.depth_min)
    return -(-d // rule.depth_multiple) * rule.depth_multiple


@pytest.mark.parametrize("name", list_models())
def test_one_ssl_step_then_transfer_for_every_model(name, tmp_path):
    depth = _depth_for(name)
    train = toy_cases(2, 0, "t", shape=(16, 16, depth), with_maps=True)
    val = toy_cases(1, 1, "v", shape=(16, 16, depth), with_maps=True)
    weights, res = pretrain_on(name, train, val, "faf", FitOptions(ONE_STEP, 0), out_dir=tmp_path / "pre")
    assert res.steps == 1 and math.isfinite(res.best.score)
    meta = ckpt_io.read(weights)["meta"]
    assert meta["model"] == name and meta["task"] == "reconstruction" and meta["target"] == "faf"
    # fine-tuning loads every weight (head included) strictly; lr 0 keeps the parameters as loaded
    frozen = ONE_STEP.with_overrides({"lr": 0.0, "weight_decay": 0.0, "optimizer": "sgd", "momentum": 0.0})
    torch.manual_seed(1)
    model = build_model(name, depth)
    fit(
        model,
        segmentation(),
        train,
        val,
        FitOptions(frozen, 0, init_weights=weights),
        out_dir=tmp_path / "ft",
    )
    loaded = ckpt_io.read(weights)["state_dict"]
    params = dict(model.named_parameters())
    assert params, f"{name} has no parameters"
    for key, p in params.items():
        assert torch.equal(p.detach().cpu(), loaded[key]), f"{name}: parameter {key} was not transferred"


def test_reconstruction_task_scores_ssim():
    task = reconstruction("slo")
    t = torch.rand(1, 1, 16, 16)
    assert task.score(t, t) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="modality"):
        reconstruction("oct")


@pytest.mark.slow
def test_pretrain_on_synthetic_source_is_cached_and_excludes_test_patients(tmp_path):
    from bench3d2d.data import load_dataset

    opts = {"n_patients": 12}
    kw = dict(
        profile=ONE_STEP.with_overrides({"crop": [8, 32]}),
        compute=Compute(threads=1),
        root=tmp_path / "pre",
        cache_dir=tmp_path / "cache",
    )
    first = pretrain(PretrainTarget("fpbnet", "synthetic-ga-m", "faf", data_options=opts), **kw)
    assert not first.cached and first.weights.exists()
    excluded = set(load_dataset("synthetic-ga-m-s", size="quick", seed=0, **opts).patient_ids())
    assert excluded and set(first.info["excluded_patients"]) == excluded
    assert not excluded & set(first.info["train_patients"] + first.info["val_patients"])
    assert first.info["excluded_datasets"] == ["synthetic-ga-m-s"]
    second = pretrain(PretrainTarget("fpbnet", "synthetic-ga-m", "faf", data_options=opts), **kw)
    assert second.cached and second.weights == first.weights and second.key == first.key
    third = pretrain(PretrainTarget("fpbnet", "synthetic-ga-m", "slo", data_options=opts), **kw)
    assert third.key != first.key


@pytest.mark.slow
def test_train_and_evaluate_with_faf_pretraining_shares_the_weights(tmp_path):
    import pandas as pd

    from bench3d2d.engine import RunSettings, train_and_evaluate
    from bench3d2d.engine.profiles import SMOKE

    tiny = SMOKE.with_overrides({"rounds": 1, "steps_per_round": 2, "top_k": 1})
    runs = {}
    for fraction in (5, 20):
        runs[fraction] = train_and_evaluate(
            RunTarget(
                "fpbnet", "synthetic-ga-s-1", ["synthetic-ga-s-2"], fraction=fraction, seed=0, pretrain="faf"
            ),
            RunSettings(profile=tiny, compute=Compute(threads=1)),
            RunPaths(tmp_path / f"run{fraction}", tmp_path / "cache"),
        )
    assert not runs[5].pretrain["cached"] and runs[20].pretrain["cached"]
    assert runs[5].pretrain["weights"] == runs[20].pretrain["weights"]
    assert "initialised from" in (tmp_path / "run20" / "log.txt").read_text()
    cases = pd.read_csv(tmp_path / "run5" / "cases.csv")
    assert set(cases["test_set"]) == {"synthetic-ga-s-1", "synthetic-ga-s-2"}
    assert (cases["pretrain"] == "faf").all()
    ga_s2 = cases[cases["test_set"] == "synthetic-ga-s-2"]
    assert {"dice", "dice:rater1", "dice:rater2", "interrater_dice"} <= set(ga_s2["metric"])
    # the label subsets are nested for one seed (docs/protocol.md §9)
    assert set(runs[5].split["label_patients"]) <= set(runs[20].split["label_patients"])
