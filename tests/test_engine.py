"""Engine: top-k rule, determinism, checkpoints, NaN stop, ensembling, augmentation, schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _engine_toy import SHAPE, TOY_PROFILE, toy_cases, toy_fit

from bench3d2d.data.evalgrid import resize_map, to_eval_grid
from bench3d2d.engine import (
    ArchitectureMismatchError,
    Checkpoint,
    FitOptions,
    NonFiniteLossError,
    ResumeMismatchError,
    augment,
    build_model,
    fit,
    load_ensemble,
    model_from_checkpoint,
    predict,
    round_schedule,
    training_crop,
    update_topk,
)
from bench3d2d.engine import checkpoints as ckpt_io
from bench3d2d.engine.profiles import PAPER, SMOKE, get_profile
from bench3d2d.engine.tasks import Task, segmentation


def test_topk_keeps_strictly_better_and_ties_keep_the_earlier(tmp_path):
    kept: list[Checkpoint] = []
    scores = [0.5, 0.7, 0.6, 0.7, 0.4, 0.8]
    evicted_all = []
    for step, s in enumerate(scores, 1):
        kept, evicted, entered = update_topk(kept, s, step, 3, tmp_path / f"{step}")
        evicted_all.append(evicted.step if evicted else None)
    assert [(c.score, c.step) for c in kept] == [(0.8, 6), (0.7, 2), (0.7, 4)]
    # step 4 (0.7) beat the worst (0.5 at step 1); step 5 (0.4) did not enter; step 6 evicted 0.6
    assert evicted_all == [None, None, None, 1, None, 3]
    kept2, ev, entered = update_topk(kept, 0.7, 7, 3, tmp_path / "7")  # tie with the worst: stays out
    assert not entered and ev is None and kept2 == kept
    _, _, entered = update_topk(kept, math.nan, 8, 3, tmp_path / "8")
    assert not entered


def test_round_schedule_repeats_every_case_and_drops_the_incomplete_batch():
    rng = np.random.default_rng(0)
    # paper rule: 20 repeats of 3 cases, batch 8 -> 7 steps of 8 (4 samples dropped)
    steps = PAPER.steps_in_round(3, 8)
    assert steps == 7
    sched = round_schedule(3, steps, 8, 20, rng)
    assert sched.shape == (7, 8)
    counts = np.bincount(sched.ravel(), minlength=3)
    assert counts.sum() == 56 and counts.max() <= 20
    # fixed-step profile: as many repeats as needed
    sched = round_schedule(2, 5, 4, None, rng)
    assert sched.shape == (5, 4) and set(np.unique(sched)) == {0, 1}


REV = slice(None, None, -1)
FLIPS = ((slice(None), slice(None)), (REV, slice(None)), (slice(None), REV), (REV, REV))


def test_augment_crop_flip_and_intensity():
    rng = np.random.default_rng(3)
    vol = np.arange(8 * 32 * 4, dtype=np.float32).reshape(8, 32, 4)
    tgt = (np.arange(8 * 32).reshape(8, 32) % 2).astype(np.float32)
    v, t = augment(vol, tgt, (4, 16), True, rng)
    assert v.shape == (4, 16, 4) and t.shape == (4, 16)
    # the volume is an affine intensity map of some crop (same for every voxel), target untouched
    # in value set
    assert set(np.unique(t)) <= {0.0, 1.0}
    found = False
    for h0 in range(5):
        for w0 in range(17):
            for flip in FLIPS:
                crop = vol[h0 : h0 + 4, w0 : w0 + 16][flip]
                a, b = np.polyfit(crop.ravel(), v.ravel(), 1)
                same_target = np.array_equal(tgt[h0 : h0 + 4, w0 : w0 + 16][flip], t)
                if np.allclose(a * crop + b, v, atol=1e-3) and same_target:
                    found = True
                    assert 0.9 - 1e-4 <= a <= 1.1 + 1e-4
    assert found
    # a volume smaller than the crop is resized up to the crop (volume linear, mask nearest)
    v, t = augment(vol[:2, :8], tgt[:2, :8], (4, 16), True, rng)
    assert v.shape == (4, 16, 4) and set(np.unique(t)) <= {0.0, 1.0}


def test_training_crop_respects_the_size_rule():
    model = build_model("fpbnet", 64)
    assert training_crop(model, SMOKE.with_overrides({"crop": [5, 20]})) == (8, 32)
    assert training_crop(model, PAPER) == (32, 256)


def test_profiles():
    assert get_profile("paper").optimizer == "sgd" and PAPER.lr == 0.1 and PAPER.rounds * PAPER.repeats == 800
    assert PAPER.batch_for("segmentation") == 8 and PAPER.batch_for("reconstruction") == 4
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("fast")
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        SMOKE.with_overrides({"learning_rate": 1})
    assert SMOKE.with_overrides({"batch_size": 3}).batch_for("reconstruction") == 3


def test_fit_is_deterministic_and_checkpoints_load_weights_only(tmp_path):
    r1, cases1 = toy_fit(tmp_path / "a")
    r2, cases2 = toy_fit(tmp_path / "b")
    assert r1.history == r2.history
    assert r1.k == 2 and len(r1.history) == 3 and r1.steps == 6
    np.testing.assert_array_equal(
        cases1.drop(columns="case_id").to_numpy(), cases2.drop(columns="case_id").to_numpy()
    )
    files = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert files == sorted([c.path.name for c in r1.checkpoints] + ["last.pt"])
    for c in r1.checkpoints:
        ck = torch.load(c.path, weights_only=True)
        assert ck["kind"] == "weights" and set(ck) == {"format", "kind", "meta", "state_dict"}
        assert ck["meta"]["model"] == "fpbnet" and ck["meta"]["score"] == pytest.approx(c.score)
    last = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert last["progress"]["finished"] and not last["state_dict"]  # slimmed once finished
    assert (tmp_path / "a" / "log.txt").read_text().count("validation dice") == 3
    # a finished fit returns at once with the same checkpoints
    r3, _ = toy_fit(tmp_path / "a")
    assert r3.history == r1.history and [c.path for c in r3.checkpoints] == [c.path for c in r1.checkpoints]
    # another configuration in the same folder is refused
    with pytest.raises(ResumeMismatchError, match="different configuration"):
        toy_fit(tmp_path / "a", profile=TOY_PROFILE.with_overrides({"lr": 1e-4}))


def test_architecture_mismatch_names_the_file_and_both_models(tmp_path):
    model = build_model("fpbnet", 64)
    path = tmp_path / "w.pt"
    ckpt_io.save_weights(model, path)
    other = build_model("fpbnet", 64, out_channels=2)
    with pytest.raises(ArchitectureMismatchError, match=r"w\.pt.*fpbnet\(.*out=1.*fpbnet\(.*out=2"):
        ckpt_io.load_weights(other, path)
    same = model_from_checkpoint(path)
    for a, b in zip(same.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt_io.CheckpointError, match=r"junk\.pt"):
        ckpt_io.read(tmp_path / "junk.pt")


def test_nan_loss_stops_and_keeps_the_last_good_state(tmp_path):
    calls = [0]
    base = segmentation()

    def loss(logits, target):
        calls[0] += 1
        out = base.loss(logits, target)
        return out * float("nan") if calls[0] == 4 else out  # round 2, step 2

    task = Task("segmentation", "mask", loss, "dice", binary_target=True)
    torch.manual_seed(0)
    model = build_model("fpbnet", 64)
    with pytest.raises(NonFiniteLossError, match=r"nan at step 4.*last\.pt"):
        fit(model, task, toy_cases(3, 1), toy_cases(2, 2), FitOptions(TOY_PROFILE, 0), out_dir=tmp_path)
    last = ckpt_io.read(tmp_path / "checkpoints" / "last.pt")
    assert last["progress"]["step"] == 2 and not last["progress"]["finished"]
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_predict_averages_probabilities_and_resizes_back(tmp_path):
    torch.manual_seed(0)
    paths = []
    for i in range(2):
        m = build_model("fpbnet", 64)
        with torch.no_grad():
            m.head.bias.fill_(float(i) - 0.5)
        paths.append(tmp_path / f"{i}.pt")
        ckpt_io.save_weights(m, paths[-1])
    src = toy_cases(1, 5, shape=(20, 36, 64))  # evaluation grid 16 x 32
    models = load_ensemble(paths)
    ((prob, pred),) = predict(models, src, amp=False).values()  # float32: the exact average
    x = torch.from_numpy(to_eval_grid(src.volume("c0")))[None, None]
    with torch.no_grad():
        ps = [torch.sigmoid(m(x))[0, 0].numpy() for m in models]
    expected = resize_map((ps[0] + ps[1]) / 2, (20, 36))
    assert prob.shape == (20, 36)
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    np.testing.assert_array_equal(pred, (expected > 0.5).astype(np.uint8))


def test_fit_rejects_cases_without_targets(tmp_path):
    src = toy_cases(2, 0)
    del src.maps["mask"]["c1"]
    with pytest.raises(ValueError, match="case 'c1' has no 'mask' target"):
        fit(
            build_model("fpbnet", 64),
            segmentation(),
            src,
            toy_cases(1, 1),
            FitOptions(TOY_PROFILE, 0),
            out_dir=tmp_path,
        )


def test_toy_shape_is_valid_for_fpbnet():
    assert SHAPE[0] % 4 == 0 and SHAPE[1] % 16 == 0 and SHAPE[2] >= 64


def test_two_raters_give_per_rater_metrics_their_mean_and_the_interrater_dice():
    from bench3d2d.engine import evaluate_case

    r1 = np.zeros((8, 8), np.float32)
    r1[2:6, 2:6] = 1  # 16 px
    r2 = np.zeros((8, 8), np.float32)
    r2[2:6, 2:4] = 1  # 8 px, inside r1
    prob = r1 * 0.9  # predicts r1 exactly
    out = evaluate_case(prob, {"mask": r1, "mask:rater2": r2}, (0.1, 0.1))
    assert out["dice:rater1"] == pytest.approx(1.0)
    assert out["dice:rater2"] == pytest.approx(2 * 8 / 24)
    assert out["dice"] == pytest.approx((1.0 + 2 * 8 / 24) / 2)
    assert out["interrater_dice"] == pytest.approx(2 * 8 / 24)
    single = evaluate_case(prob, {"mask": r1}, (0.1, 0.1))
    assert "dice:rater1" not in single and single["dice"] == pytest.approx(1.0)


def test_cpu_mixed_precision_only_where_the_cpu_has_native_bf16():
    from bench3d2d.engine._precision import amp_dtype, autocast, cpu_has_native_bf16

    cpu = torch.device("cpu")
    assert amp_dtype(cpu, False) is None
    native = cpu_has_native_bf16()
    assert amp_dtype(cpu, True) is (torch.bfloat16 if native else None)
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast(cpu, True):
        out = conv(torch.randn(1, 1, 5, 5))
    assert out.dtype is (torch.bfloat16 if native else torch.float32)
    with autocast(cpu, False):
        assert conv(torch.randn(1, 1, 5, 5)).dtype is torch.float32
