"""FPB net: parameter counts per block (docs/models.md §1) and the sizes it must run at."""

from __future__ import annotations

import pytest
import torch

import bench3d2d
from bench3d2d.models._registry import count_parameters


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def model():
    return bench3d2d.create_model("fpbnet")


def test_total_parameters(model):
    assert count_parameters(model) == 4_369_553


def test_block_parameters_match_the_spec(model):
    assert [n_params(level) for level in model.encoder] == [8_032, 36_224, 144_128, 574_976, 2_296_832]
    assert [n_params(level.unit_a) for level in model.encoder] == [2_560, 14_528, 57_728, 230_144, 919_040]
    assert [n_params(fpb) for fpb in model.projections] == [4_544, 14_656, 45_568, 131_840, 262_656]
    assert [n_params(block) for block in model.decoder] == [639_744, 160_128, 40_128, 10_080]
    assert n_params(model.head) == 17


@pytest.mark.parametrize(("cin", "k"), [(1, 1), (2, 1), (1, 3), (3, 2)])
def test_parameter_formula_for_other_channels(cin, k):
    """docs/models.md §6: 4,369,553 + 160·(C_in − 1) + 17·(K − 1), independent of D."""
    m = bench3d2d.create_model("fpbnet", in_channels=cin, out_channels=k, depth=100)
    assert count_parameters(m) == 4_369_553 + 160 * (cin - 1) + 17 * (k - 1)


def test_forward_backward_small(model):
    model.train()
    x = torch.randn(1, 1, 16, 64, 64)
    out = model(x)
    assert out.shape == (1, 1, 16, 64)
    out.mean().backward()


@pytest.mark.parametrize(
    "hwd", [(4, 16, 64), (8, 16, 64), (4, 32, 64), (4, 16, 100), (4, 16, 129), (12, 48, 128)]
)
def test_spec_sizes_run(model, hwd):
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, *hwd)).shape == (1, 1, *hwd[:2])


@pytest.mark.parametrize(
    ("hwd", "message"),
    [
        ((2, 16, 64), "H = 2"),
        ((6, 16, 64), "H = 6"),
        ((4, 24, 64), "W = 24"),
        ((4, 16, 60), "D = 60"),
        ((4, 16, 63), "D = 63"),
    ],
)
def test_spec_violations_are_rejected(model, hwd, message):
    with pytest.raises(bench3d2d.InputShapeError, match=message):
        model(torch.randn(1, 1, *hwd))


def test_initialisation_follows_the_reference(model):
    """Xavier-normal convs, zero head bias, BN weight ~ N(1, 0.02), BN bias 0."""
    conv = model.encoder[4].unit_b.body[0].conv.weight  # 256 -> 256, kernel (1,3,3)
    fan = 256 * 9
    expected_std = (2.0 / (fan + fan)) ** 0.5
    assert conv.std().item() == pytest.approx(expected_std, rel=0.05)
    assert torch.count_nonzero(model.head.bias) == 0
    bn = model.encoder[4].unit_b.body[0].bn
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.count_nonzero(bn.bias) == 0


@pytest.mark.slow
def test_paper_size_inference(model):
    """The GA-S size after preprocessing, (1, 1, 48, 512, 128), runs under no_grad."""
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 48, 512, 128)).shape == (1, 1, 48, 512)
