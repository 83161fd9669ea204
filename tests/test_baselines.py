"""The published baselines (``baselines/``): pinned parameter counts, per-block counts, IPN's pool
rule, the issue's shapes and one training step, entry-point registration and size refusals.

Counts and tables are those of ``docs/models.md`` (§2-§6).
"""

from __future__ import annotations

import importlib
import json
from importlib import metadata

import pytest
import torch
from bench3d2d.baselines.enface_unet import EnfaceUNet, slab_projections
from bench3d2d.baselines.ipn import IPN, pool_sizes
from bench3d2d.baselines.ipnv2 import IPNv2
from bench3d2d.baselines.lachinov import Bottleneck, LachinovNet
from bench3d2d.baselines.resensnet import ReSensNet

import bench3d2d
from bench3d2d.models._registry import PAPER_DEFAULTS, InputShapeError, count_parameters
from bench3d2d.models.fpbnet import ProjectionUNet

BASELINES = ("ipn", "ipnv2", "lachinov", "resensnet", "enface_unet")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- parameter counts -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ipn128() -> IPN:
    """IPN at depth 128, built once (its truncated-normal init re-draws and takes a moment)."""
    return IPN(depth=128)


@pytest.fixture(scope="module")
def ipnv2_128() -> IPNv2:
    return IPNv2(depth=128)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ipn", 1_552_705), ("ipnv2", 2_113_025), ("lachinov", 1_513_697), ("resensnet", 4_718_737)],
)
def test_parameter_count_at_depth_128(name, expected):
    """docs/models.md §0.4, 1 -> 1 channels, D = 128.

    ipn 223,104 + 4 x 331,968 + 1,729; ipnv2 1,588,737 + 4,096 x 128; lachinov (used layers only)
    864 + 9,952 + 46,208 + 236,032 + 32,768 + 898,432 + 8,192 + 223,072 + 2,048 + 55,840 + 289;
    resensnet 3,060,192 + 808,448 + 850,080 + 17.
    """
    assert count_parameters(bench3d2d.create_model(name, depth=128)) == expected


def test_ipn_block_counts(ipn128):
    """docs/models.md §4.3: PLM1 223,104, PLM2-5 331,968 each, head 27 x 64 + 1 = 1,729."""
    m = ipn128
    assert [n_params(p) for p in m.plms] == [223_104] + [331_968] * 4
    assert n_params(m.head) == 1_729


def test_ipnv2_block_counts(ipnv2_128):
    """docs/models.md §5.1 at D = 128."""
    m = ipnv2_128
    assert n_params(m.in3d) == 1_792
    assert [n_params(p) for p in m.plms] == [221_312] * 3
    assert n_params(m.skip) == 64 * 64 * 128 + 64 == 524_352
    assert n_params(m.fuse) == 110_720
    assert n_params(m.unet) == 812_225
    assert n_params(m.unet.inc) == 73_856
    assert [n_params(d) for d in m.unet.downs] == [73_856] * 4
    assert [n_params(u) for u in m.unet.ups] == [110_720] * 4
    assert n_params(m.unet.outc) == 65


def test_lachinov_block_counts():
    """docs/models.md §3.1-3.2: bottleneck 25c²/64 + 5c/2; stage table; the unused 4th stage is not built."""
    assert [n_params(Bottleneck(c, (1, 3, 3), (0, 1, 1))) for c in (32, 64, 128, 256)] == [
        480,
        1_760,
        6_720,
        26_240,
    ]
    m = LachinovNet()
    assert n_params(m.stem) == 864
    assert [n_params(s) for s in m.encoder] == [9_952, 46_208, 236_032]
    assert [n_params(u) for u in m.upsample] == [2_048, 8_192, 32_768]
    assert [n_params(d) for d in m.decoder] == [55_840, 223_072, 898_432]
    assert len(m.decoder) == 3
    assert n_params(m.head) == 289


def test_resensnet_reuses_projection_unet_with_depth_16th_kernels():
    """docs/models.md §2: FPB net's family; final projection kernels (1, 1, D/16), FPB params per level."""
    m = ReSensNet(depth=128)
    assert isinstance(m, ProjectionUNet)
    assert all(not p.mean for p in m.projections)
    assert all(p.final.body[0].conv.kernel_size == (1, 1, 8) for p in m.projections)
    assert [n_params(p) for p in m.projections] == [5_568, 18_752, 61_952, 197_376, 524_800]


def _fpbnet_and_resensnet_outputs(depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(2, 1, 8, 32, depth, generator=torch.Generator().manual_seed(1))
    outs = []
    for name in ("fpbnet", "resensnet"):
        torch.manual_seed(0)
        model = bench3d2d.create_model(name, depth=depth).eval()
        with torch.no_grad():
            outs.append(model(x))
    return outs[0], outs[1]


def test_resensnet_is_the_fpb_net_at_depth_64_only():
    """docs/models.md §2: at D = 64 the final conv spans D/16 = 4, the FPB net's own kernel, and the
    FPB net's mean runs over depth 1, so the networks coincide (same seed, same output). At the
    standard profile's depth they differ."""
    from bench3d2d.engine.profiles import STANDARD

    fpb, res = _fpbnet_and_resensnet_outputs(64)
    torch.testing.assert_close(fpb, res, rtol=0, atol=0)
    fpb, res = _fpbnet_and_resensnet_outputs(STANDARD.depth)
    assert fpb.shape == res.shape == (2, 1, 8, 32)
    assert (fpb - res).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("depth", "expected"), [(64, 4_369_553), (256, 5_417_105), (16, 4_369_553 - 3 * 87_296)]
)
def test_resensnet_count_grows_with_depth(depth, expected):
    """docs/models.md §2/§6: 4,369,553 + 87,296 x (D/16 - 4), 87,296 = 16² + 32² + 64² + 128² + 256²."""
    assert count_parameters(bench3d2d.create_model("resensnet", depth=depth)) == expected


@pytest.mark.parametrize(
    ("name", "cin", "k", "depth", "expected"),
    [
        ("ipn", 2, 3, 64, 1_552_705 + 1_728 + 2 * 1_729),
        ("lachinov", 3, 2, 128, 1_513_697 + 2 * 288 + 289),
        ("ipnv2", 2, 2, 160, 2_245_890),  # the official setting and count (docs/models.md §5.5)
        ("resensnet", 2, 2, 128, 4_718_737 + 160 + 17),
    ],
)
def test_parameter_formulas_for_other_channels(name, cin, k, depth, expected):
    """docs/models.md §6 formulas for other C_in, K and D."""
    m = bench3d2d.create_model(name, in_channels=cin, out_channels=k, depth=depth)
    assert count_parameters(m) == expected


# --- IPN's pool rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "five", "three"),
    [
        (32, (2, 2, 2, 2, 2), (4, 4, 2)),
        (64, (4, 2, 2, 2, 2), (4, 4, 4)),
        (100, (3, 3, 3, 2, 2), (5, 5, 4)),
        (128, (4, 4, 2, 2, 2), (8, 4, 4)),
        (160, (5, 4, 2, 2, 2), (8, 5, 4)),
    ],
)
def test_pool_rule_table(depth, five, three):
    """docs/models.md §4.2 table (5 PLMs for IPN, 3 for IPNv2), largest factor first."""
    assert pool_sizes(depth, 5) == five
    assert pool_sizes(depth, 3) == three


def test_pool_rule_without_solution_names_the_rule():
    """D = 33 has no 5-factor solution (the product must lie in [33, 36]); 3 factors give (4, 3, 3)."""
    assert pool_sizes(33, 3) == (4, 3, 3)
    with pytest.raises(InputShapeError, match=r"pool rule.*depth 33.*33 <= P <= .* = 36"):
        pool_sizes(33, 5)
    with pytest.raises(InputShapeError, match="pool rule"):
        bench3d2d.create_model("ipn", depth=33)


def test_ipn_layers_follow_the_pool_rule(ipn128, ipnv2_128):
    m = ipn128
    assert [p.pool.kernel_size for p in m.plms] == [(1, 1, f) for f in (4, 4, 2, 2, 2)]
    assert all(p.pool.ceil_mode for p in m.plms)
    v2 = ipnv2_128
    assert [plm[0].kernel_size for plm in v2.plms] == [(1, 1, f) for f in (8, 4, 4)]
    assert v2.skip.kernel_size == v2.skip.stride == (1, 1, 128)


# --- the shapes and one training step ----------------------------------------------------


@pytest.mark.slow  # 1-8 s of CPU each (IPN's full-depth 64-channel convs are the heaviest)
@pytest.mark.parametrize("name", ("fpbnet", *BASELINES))
def test_shape_and_one_training_step(name):
    """(2, 1, 16, 64, 128) -> (2, 1, 16, 64); one SGD step moves every weight tensor, loss finite."""
    torch.manual_seed(0)
    model = bench3d2d.create_model(name, depth=128)
    x = torch.randn(2, 1, 16, 64, 128)
    target = (torch.rand(2, 1, 16, 64) > 0.5).float()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(x)
    assert out.shape == (2, 1, 16, 64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out, target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed == len(before), f"{len(before) - changed} parameter tensors did not move"


# --- registration ----------------------------------------------------------------------------------


def test_baselines_come_from_the_installed_entry_points():
    """The installed distribution advertises every baseline in the ``bench3d2d.models`` group."""
    eps = {ep.name: ep for ep in metadata.entry_points(group="bench3d2d.models")}
    assert set(BASELINES) <= set(eps), f"missing entry points: {set(BASELINES) - set(eps)}"
    for name in BASELINES:
        assert eps[name].value == f"bench3d2d.baselines.{name}"
        assert eps[name].dist is not None and eps[name].dist.name == "bench3d2d"
        module = eps[name].load()
        assert module is importlib.import_module(f"bench3d2d.baselines.{name}")
        assert bench3d2d.model_info(name).source.startswith(f"bench3d2d.baselines.{name}:")


def test_baselines_import_only_the_public_model_api():
    """The baselines are written as a plugin author writes a model: no private ``_module`` import."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "baselines"
    private = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench3d2d"):
                parts = [*node.module.split("."), *(alias.name for alias in node.names)]
                private += [f"{path.name}: {node.module}" for p in parts if p.startswith("_")]
    assert not private, private


def test_cli_lists_all_six(capsys):
    from bench3d2d.cli import main

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"fpbnet", *BASELINES} <= set(rows)
    assert rows["ipn"]["parameters"] == 1_552_705
    assert rows["resensnet"]["parameters"] == 4_718_737


@pytest.mark.parametrize("name", ["ipn", "ipnv2"])
def test_official_settings_are_metadata_only(name):
    """The common protocol's keys stay the paper's; the official recipe sits under ``official``."""
    info = bench3d2d.model_info(name)
    hp = info.hyperparameters()
    assert {k: hp[k] for k in PAPER_DEFAULTS} == PAPER_DEFAULTS
    assert hp["official"]["optimizer"] == "adam" and hp["official"]["lr"] == 1e-4
    assert hp["official"]["batch_size"] == {"ipn": 3, "ipnv2": 2}[name]


# --- size rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ipn", "ipnv2", "resensnet"])
def test_fixed_depth_models_refuse_another_depth(name):
    model = bench3d2d.create_model(name, depth=32)
    assert model.size_rule.built_depth == 32
    built_for_32 = r"D = 64 differs from the depth the model was built for \(32\)"
    with pytest.raises(InputShapeError, match=built_for_32):
        model(torch.zeros(1, 1, 16, 16, 64))


@pytest.mark.parametrize("depth", [8, 24, 120])
def test_resensnet_refuses_to_build_off_multiples_of_16(depth):
    with pytest.raises(InputShapeError, match="multiple of 16"):
        ReSensNet(depth=depth)
    with pytest.raises(InputShapeError, match=r"depth >= 16|multiple of 16"):
        bench3d2d.create_model("resensnet", depth=depth)


def test_ipnv2_en_face_minimum_and_odd_sizes():
    """docs/models.md §5.3: H, W >= 16, any value above (pad-to-match in the U-Net)."""
    torch.manual_seed(0)
    model = bench3d2d.create_model("ipnv2", depth=16).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 49, 17, 16)).shape == (1, 1, 49, 17)
        with pytest.raises(InputShapeError, match="H = 15 is below the minimum 16"):
            model(torch.randn(1, 1, 15, 16, 16))


@pytest.mark.parametrize(("h", "w", "d"), [(3, 8, 8), (5, 16, 100), (5, 24, 130)])
def test_lachinov_runs_at_the_spec_sizes(h, w, d):
    """docs/models.md §3.3: any H, W % 8, any D >= 8 (skips floor-pooled to the bottleneck depth)."""
    model = bench3d2d.create_model("lachinov", depth=d).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, h, w, d)).shape == (1, 1, h, w)


@pytest.mark.parametrize(("w", "d"), [(12, 8), (20, 8), (8, 7)])
def test_lachinov_rejects_off_rule_sizes(w, d):
    model = bench3d2d.create_model("lachinov")
    with pytest.raises(InputShapeError, match="Rule: "):
        model(torch.zeros(1, 1, 3, w, d))


def test_lachinov_every_parameter_learns():
    """No unused layers are built: every parameter gets a non-zero gradient."""
    torch.manual_seed(0)
    model = LachinovNet()
    model(torch.randn(2, 1, 3, 8, 16)).square().mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not dead


# --- initialisation ------------------------------------------------------------------------------


def test_ipn_official_init():
    """docs/models.md §4.5: truncated normal sigma 0.02 cut at +-2 sigma; every bias 0.1."""
    torch.manual_seed(0)
    m = IPN(depth=32)
    weights = torch.cat([c.weight.flatten() for c in m.modules() if isinstance(c, torch.nn.Conv3d)])
    assert weights.abs().max() <= 0.04
    assert 0.016 < weights.std() < 0.019  # std of N(0, 0.02) cut at 2 sigma: 0.02 x 0.880
    assert all(torch.all(c.bias == 0.1) for c in m.modules() if isinstance(c, torch.nn.Conv3d))


def test_lachinov_init():
    """docs/models.md §3.4: conv biases (stem, head) zero; InstanceNorm gamma 1, beta 0."""
    m = LachinovNet()
    assert torch.all(m.stem[0].bias == 0) and torch.all(m.head.bias == 0)
    norms = [n for n in m.modules() if isinstance(n, torch.nn.InstanceNorm3d)]
    assert all(torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in norms)


# --- en-face U-Net -----------------------------------------------------------------------------------


def test_slab_projections_match_a_direct_computation():
    x = torch.randn(2, 2, 3, 5, 10)
    proj = slab_projections(x, 3)  # slabs of 4, 3, 3 depth samples
    assert proj.shape == (2, 3 * 2 * 3, 3, 5)
    bounds = [(0, 4), (4, 7), (7, 10)]
    for c in range(2):
        for s, (a, b) in enumerate(bounds):
            part = x[:, c, :, :, a:b]
            torch.testing.assert_close(proj[:, 0 * 6 + c * 3 + s], part.mean(-1))
            torch.testing.assert_close(proj[:, 1 * 6 + c * 3 + s], part.amax(-1))
            torch.testing.assert_close(proj[:, 2 * 6 + c * 3 + s], part.std(-1, correction=0))


@pytest.mark.parametrize(("h", "w", "d"), [(1, 1, 4), (5, 7, 9), (33, 70, 16)])
def test_enface_unet_any_en_face_size(h, w, d):
    torch.manual_seed(0)
    model = bench3d2d.create_model("enface_unet", depth=d)
    assert model(torch.randn(2, 1, h, w, d)).shape == (2, 1, h, w)


def test_enface_unet_other_backbone_and_slabs():
    """Any timm name through ``backbone``; random init only; D >= slabs."""
    torch.manual_seed(0)
    model = EnfaceUNet(in_channels=2, out_channels=3, slabs=2, backbone="mobilenetv3_small_050")
    assert model.encoder.feature_info.reduction()[-1] == 32
    assert model(torch.randn(1, 2, 20, 12, 5)).shape == (1, 3, 20, 12)
    with pytest.raises(InputShapeError, match="D = 1 is below the minimum depth 2"):
        model(torch.randn(1, 2, 20, 12, 1))
    with pytest.raises(InputShapeError, match="needs depth >= 8"):
        bench3d2d.create_model("enface_unet", depth=4, slabs=8)
    with pytest.raises(ValueError, match="never downloads"):
        EnfaceUNet(backbone_kwargs={"pretrained": True})


def test_ipn_scales_its_input_to_the_official_8_bit_range():
    """IPN-tf trains on raw 8-bit intensities; ours multiplies the z-scored input by 64 first
    (``input_scale``), and ``input_scale=1`` is the network on the input as given."""
    from bench3d2d.baselines.ipn import OFFICIAL_INPUT_SCALE

    torch.manual_seed(0)
    x = torch.randn(1, 1, 8, 16, 64)
    scaled = IPN(depth=64)
    plain = IPN(depth=64, input_scale=1.0)
    plain.load_state_dict(scaled.state_dict())
    assert OFFICIAL_INPUT_SCALE == scaled.input_scale == 64.0
    with torch.no_grad():
        assert torch.allclose(scaled(x), plain(x * OFFICIAL_INPUT_SCALE), atol=1e-5)
        assert (scaled(x) - plain(x)).abs().max() > 1e-4  # at initialisation the effect is small
