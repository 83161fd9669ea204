"""Contract tests generated over ``list_models()``: every registered model is covered automatically."""

from __future__ import annotations

import pytest
import torch

import bench3d2d
from bench3d2d.models._registry import InputShapeError, SizeRule

MODELS = bench3d2d.list_models()


def test_error_plugins_are_not_hidden():
    """Every entry-point plugin loaded; none was skipped with a warning."""
    from bench3d2d.models import _registry as registry

    assert registry._ENTRY_POINT_ERRORS == {}


def small_config(rule: SizeRule) -> tuple[int, int, int]:
    """A small (H, W, D) that the rule accepts and that every family can build for."""
    depth = max(rule.depth_min, 32)
    depth = -(-depth // rule.depth_multiple) * rule.depth_multiple
    h, w = rule.smallest_valid(4, 16)
    return h, w, depth


def build(name: str, seed: int = 0):
    rule = bench3d2d.model_info(name).size_rule
    h, w, d = small_config(rule)
    torch.manual_seed(seed)
    return bench3d2d.create_model(name, in_channels=1, out_channels=1, depth=d), (h, w, d)


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_logits(name):
    model, (h, w, d) = build(name)
    out = model(torch.randn(2, 1, h, w, d))
    assert out.shape == (2, 1, h, w)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_multi_channel_contract(name):
    """in_channels and out_channels are honoured (C_in 2 -> K 3)."""
    rule = bench3d2d.model_info(name).size_rule
    h, w, d = small_config(rule)
    model = bench3d2d.create_model(name, in_channels=2, out_channels=3, depth=d)
    assert model(torch.randn(2, 2, h, w, d)).shape == (2, 3, h, w)


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name):
    model, (h, w, d) = build(name)
    model(torch.randn(2, 1, h, w, d)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    dead = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
    assert not dead, f"parameters with an all-zero gradient: {dead}"


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_output(name):
    torch.manual_seed(123)
    model_a, (h, w, d) = build(name, seed=7)
    model_b, _ = build(name, seed=7)
    x = torch.randn(1, 1, h, w, d)
    model_a.eval()
    model_b.eval()
    with torch.no_grad():
        assert torch.equal(model_a(x), model_b(x))


def violations(rule: SizeRule, h: int, w: int, d: int) -> list[tuple[int, int, int]]:
    """Input sizes that break the rule in exactly one way."""
    bad = []
    if rule.h_multiple > 1:
        bad.append((h + 1, w, d))
    if rule.h_min > 1:
        bad.append((rule.h_min - 1, w, d))
    if rule.w_multiple > 1:
        bad.append((h, w + rule.w_multiple // 2, d))
    if rule.w_min > 1:
        bad.append((h, rule.w_min - 1, d))
    if rule.depth_fixed:
        bad.append((h, w, d + rule.depth_multiple))
    elif rule.depth_min > 1:
        bad.append((h, w, rule.depth_min - 1))
    return bad


@pytest.mark.parametrize("name", MODELS)
def test_declared_sizes_accepted_and_violations_rejected(name):
    model, (h, w, d) = build(name)
    rule = model.size_rule
    model.eval()
    with torch.no_grad():
        # A second accepted size: twice the smallest en-face size.
        h2, w2 = rule.smallest_valid(2 * h, 2 * w)
        assert model(torch.randn(1, 1, h2, w2, d)).shape == (1, 1, h2, w2)
        bad_sizes = violations(rule, h, w, d)
        if not bad_sizes:
            pytest.skip(f"{name} declares no size rule that an input could break ({rule.describe()})")
        for bh, bw, bd in bad_sizes:
            calls: list[str] = []
            hooks = [
                m.register_forward_pre_hook(lambda mod, args, calls=calls: calls.append(type(mod).__name__))
                for m in model.modules()
                if m is not model
            ]
            with pytest.raises(InputShapeError, match="Rule: "):
                model(torch.randn(1, 1, bh, bw, bd))
            for hk in hooks:
                hk.remove()
            assert not calls, f"a layer ran before the size check for input {(bh, bw, bd)}"


@pytest.mark.parametrize("name", MODELS)
def test_metadata_is_complete(name):
    info = bench3d2d.model_info(name)
    assert info.paper and info.description and info.reduction
    hp = info.hyperparameters()
    assert {"optimizer", "lr", "weight_decay", "batch_size"} <= set(hp)
    assert {"optimizer", "lr"} <= set(info.search_space)  # the equal-budget tuning's space


def test_wrong_dimensionality_is_rejected():
    model = bench3d2d.create_model("fpbnet")
    with pytest.raises(InputShapeError, match=r"5-D input \(B, C, H, W, D\)"):
        model(torch.randn(1, 16, 64, 64))
