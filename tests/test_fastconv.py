"""``bench3d2d.engine.acceleration``: each FastConv3d path equals Conv3d; each model keeps its function."""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bench3d2d
from bench3d2d.engine import acceleration as acc
from bench3d2d.engine.acceleration import FastConv3d, FastInstanceNorm3d, accelerate, conv_path, decelerate

CL3D = torch.channels_last_3d
MODELS = bench3d2d.list_models()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP barrier stalls when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    """max |a - e| <= tol * max(1, max |e|): absolute for O(1) values, relative for large sums."""
    actual, expected = actual.detach(), expected.detach()
    scale = max(1.0, float(expected.abs().max()))
    err = float((actual - expected).abs().max())
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol:g} x {scale:.3g}"


def _fast_copy(conv: nn.Conv3d, channels_last: bool = True) -> nn.Conv3d:
    fast = copy.deepcopy(conv)
    accelerate(fast, channels_last=channels_last)
    return fast


def _random_config(path: str, rng: random.Random) -> dict:
    """Conv3d arguments that take ``path``: the passive axes fixed, the others random."""

    def active() -> tuple[int, int, int, int]:
        k = rng.choice([1, 2, 3, 4])
        s = rng.choice([1, 1, 2, 3])
        p = rng.choice([0, 1, 2]) if k > 1 else rng.choice([0, 1])
        if k == 1 and s == 1 and p == 0:
            s = 2  # make the axis active
        return k, s, p, rng.choice([1, 1, 2])

    passive = (1, 1, 0, 1)
    cin = rng.choice([2, 3, 4])
    groups = 1
    if path == acc.POINTWISE:
        axes = [passive] * 3
    elif path == acc.UNFOLD:
        axes, cin = [active(), active(), active()], 1
    elif path == acc.FOLD_H:
        axes = [passive, active(), active()]
        groups = rng.choice([1, 1, cin])
    elif path == acc.MERGE_WD:
        axes = [active(), passive, passive]
        groups = rng.choice([1, 1, cin])
    elif path == acc.SQUEEZE_D:
        axes = [active(), active(), passive]
    else:
        axes = [active(), active(), active()]
    cout = groups * rng.choice([1, 2, 3])
    k, s, p, d = (tuple(a[i] for a in axes) for i in range(4))
    return dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=k,
        stride=s,
        padding=p,
        dilation=d,
        groups=groups,
        bias=rng.random() < 0.5,
    )


PATHS = [acc.POINTWISE, acc.UNFOLD, acc.FOLD_H, acc.MERGE_WD, acc.SQUEEZE_D, acc.CONV3D]


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("path", PATHS)
def test_every_path_matches_conv3d(path, channels_last):
    """Outputs and input / weight / bias gradients equal Conv3d's (fp32, 1e-5) over random configs."""
    rng = random.Random(PATHS.index(path))
    torch.manual_seed(0)
    for _ in range(8):
        cfg = _random_config(path, rng)
        conv = nn.Conv3d(**cfg)
        fast = _fast_copy(conv, channels_last)
        k, p, d = cfg["kernel_size"], cfg["padding"], cfg["dilation"]
        # Odd sizes, large enough for the dilated kernel.
        sizes = [max(d[i] * (k[i] - 1) + 1 - 2 * p[i], 1) + rng.randint(0, 6) for i in range(3)]
        if path == acc.SQUEEZE_D:
            sizes[2] = 1
        shape = (rng.randint(1, 3), cfg["in_channels"], *sizes)
        assert conv_path(conv, shape) == path, (cfg, shape)
        x = torch.randn(shape, requires_grad=True)
        x_fast = x.detach().clone().requires_grad_()
        y = conv(x)
        y_fast = fast(x_fast)
        assert y_fast.shape == y.shape
        _close(y_fast, y, 1e-5)
        g = torch.randn_like(y)
        y.backward(g)
        y_fast.backward(g)
        _close(x_fast.grad, x.grad, 1e-5)
        _close(fast.weight.grad, conv.weight.grad, 1e-5)
        if conv.bias is not None:
            _close(fast.bias.grad, conv.bias.grad, 1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_in_place_consumer_gets_a_plain_tensor(path):
    """Conv3d -> ReLU(inplace=True): the output is no autograd view, and gradients stay right."""
    rng = random.Random(10 + PATHS.index(path))
    torch.manual_seed(1)
    cfg = _random_config(path, rng)
    conv = nn.Conv3d(**cfg)
    fast = _fast_copy(conv)
    k, p, d = cfg["kernel_size"], cfg["padding"], cfg["dilation"]
    sizes = [max(d[i] * (k[i] - 1) + 1 - 2 * p[i], 1) + 3 for i in range(3)]
    if path == acc.SQUEEZE_D:
        sizes[2] = 1
    x = torch.randn(2, cfg["in_channels"], *sizes, requires_grad=True)
    x_fast = x.detach().clone().requires_grad_()
    y_fast = fast(x_fast)
    assert not y_fast._is_view()
    y, y_fast = torch.relu_(conv(x)), torch.relu_(y_fast)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_fast * g).sum().backward()
    _close(y_fast, y, 1e-5)
    _close(x_fast.grad, x.grad, 1e-5)
    _close(fast.weight.grad, conv.weight.grad, 1e-5)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "path"),
    [
        ((1, 3, 3), 1, (0, 1, 1), acc.FOLD_H),  # inside one B-scan
        ((3, 1, 1), 1, (1, 0, 0), acc.MERGE_WD),  # across B-scans
        ((1, 1, 3), (1, 1, 2), (0, 0, 1), acc.FOLD_H),  # depth-strided
        ((1, 1, 1), (1, 1, 4), 0, acc.FOLD_H),  # strided projection
        ((1, 1, 1), 1, 0, acc.POINTWISE),
        ((3, 3, 3), 1, 1, acc.CONV3D),
    ],
)
def test_network_layers_keep_channels_last_without_copies(kernel, stride, padding, path):
    """The layers the networks use take the intended path, in float64 to rounding, channels-last out."""
    conv = nn.Conv3d(4, 6, kernel, stride, padding).double()
    fast = _fast_copy(conv)
    x = torch.randn(2, 4, 5, 7, 9, dtype=torch.float64).contiguous(memory_format=CL3D)
    assert conv_path(conv, tuple(x.shape)) == path
    y = fast(x)
    torch.testing.assert_close(y, F.conv3d(x, conv.weight, conv.bias, stride, padding), rtol=0, atol=1e-12)
    assert y.is_contiguous(memory_format=CL3D)


def test_unhandled_configurations_fall_back():
    """String padding, circular padding and 4-D (unbatched) inputs run the plain Conv3d forward."""
    torch.manual_seed(0)
    for conv, shape in [
        (nn.Conv3d(2, 3, 3, padding="same"), (1, 2, 5, 6, 7)),
        (nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1), padding_mode="circular"), (1, 2, 5, 6, 7)),
        (nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1)), (2, 5, 6, 7)),
    ]:
        if len(shape) == 5:
            assert conv_path(conv, shape) == acc.CONV3D
        x = torch.randn(shape)
        _close(_fast_copy(conv)(x), conv(x), 1e-6)


def test_instance_norm_as_group_norm():
    """FastInstanceNorm3d equals InstanceNorm3d (affine or not), outputs and gradients."""
    torch.manual_seed(0)
    for affine in (True, False):
        norm = nn.InstanceNorm3d(5, affine=affine)
        if affine:
            nn.init.normal_(norm.weight)
            nn.init.normal_(norm.bias)
        fast = copy.deepcopy(norm)
        fast.__class__ = FastInstanceNorm3d
        x = torch.randn(2, 5, 3, 4, 7, requires_grad=True)
        x_fast = x.detach().contiguous(memory_format=CL3D).requires_grad_()
        y, y_fast = norm(x), fast(x_fast)
        _close(y_fast, y, 1e-5)
        g = torch.randn_like(y)
        y.backward(g)
        y_fast.backward(g)
        _close(x_fast.grad, x.grad, 1e-5)
        if affine:
            _close(fast.weight.grad, norm.weight.grad, 1e-5)
            _close(fast.bias.grad, norm.bias.grad, 1e-5)


def test_accelerate_swaps_in_place_and_shares_parameters():
    """Same Parameter objects and state_dict; subclasses and IN with running stats left alone; undoable."""

    class MyConv(nn.Conv3d):
        pass

    model = nn.Sequential(
        nn.Conv3d(1, 4, (1, 3, 3), padding=(0, 1, 1)),
        nn.InstanceNorm3d(4, affine=True),
        MyConv(4, 4, 1),
        nn.InstanceNorm3d(4, track_running_stats=True),
        nn.Conv2d(4, 4, 1),
    )
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    assert accelerate(model, channels_last=True) is model
    assert [type(m) for m in model] == [FastConv3d, FastInstanceNorm3d, MyConv, nn.InstanceNorm3d, nn.Conv2d]
    assert [id(p) for p in model.parameters()] == params
    assert list(model.state_dict()) == keys
    assert acc.is_accelerated(model)
    accelerate(model, channels_last=True)  # idempotent
    assert type(model[0]) is FastConv3d
    decelerate(model)
    assert [type(m) for m in model][:2] == [nn.Conv3d, nn.InstanceNorm3d]
    assert not acc.is_accelerated(model)


def test_layout_choice():
    """Channels-last by default; a model with InstanceNorm3d keeps its layout (and its IN modules)."""
    bn_model = accelerate(nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2)))
    in_model = accelerate(nn.Sequential(nn.Conv3d(1, 2, 1), nn.InstanceNorm3d(2)))
    assert bn_model[0].channels_last and not in_model[0].channels_last
    assert type(in_model[1]) is nn.InstanceNorm3d
    x = torch.randn(2, 1, 3, 4, 5)
    assert bn_model[0](x).is_contiguous(memory_format=CL3D)
    assert in_model[0](x).is_contiguous()
    decelerate(in_model)
    assert "channels_last" not in vars(in_model[0])


def _tiny_input(name: str) -> tuple[nn.Module, torch.Tensor]:
    rule = bench3d2d.model_info(name).size_rule
    depth = -(-max(rule.depth_min, 32) // rule.depth_multiple) * rule.depth_multiple
    h, w = rule.smallest_valid(4, 16)
    torch.manual_seed(0)
    model = bench3d2d.create_model(name, in_channels=1, out_channels=1, depth=depth)
    return model, torch.randn(2, 1, h, w, depth)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_keeps_its_function(name):
    """The plain model's state_dict loads into an accelerated copy: same outputs and gradients.

    Training mode runs in float64: batch statistics over a handful of values amplify float32
    rounding ~1e4-fold through these deep networks (the plain model itself differs by ~1e-3
    between 1 and 2 threads), so equality of the *function* is checked where rounding is 1e-16.
    Evaluation mode (running statistics) is checked in float32 to 1e-5.
    """
    plain, x = _tiny_input(name)
    fast = bench3d2d.create_model(name, in_channels=1, out_channels=1, depth=x.shape[-1])
    accelerate(fast)
    fast.load_state_dict(plain.state_dict())

    plain.eval()
    fast.eval()
    with torch.no_grad():
        _close(fast(x), plain(x), 1e-5)

    plain.double().train()
    fast.double().train()
    xd = x.double()
    y, y_fast = plain(xd), fast(xd)
    _close(y_fast, y, 1e-9)
    g = torch.randn_like(y)
    y.backward(g)
    y_fast.backward(g)
    for (key, p), q in zip(plain.named_parameters(), fast.parameters()):
        assert (p.grad is None) == (q.grad is None), key
        if p.grad is not None:
            _close(q.grad, p.grad, 1e-9)


def test_retain_freed_memory_stops_page_faults_for_big_blocks():
    """A freed 64 MiB block is mapped afresh every time by default, reused after retain_freed_memory()."""
    import subprocess
    import sys

    script = (
        "import resource, torch\n"
        "from bench3d2d.engine.acceleration import retain_freed_memory\n"
        "def faults():\n"
        "    for _ in range(6):\n"
        "        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "        t = torch.ones(16 * 2**20)\n"
        "        del t\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        "default = faults()\n"
        "applied = retain_freed_memory()\n"
        "print(default, int(applied), faults())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    default, applied, retained = (int(v) for v in out.stdout.split())
    if not applied:
        pytest.skip("not glibc: retain_freed_memory() is a no-op here")
    assert default > 10_000  # 64 MiB = 16,384 pages
    assert retained < 100
