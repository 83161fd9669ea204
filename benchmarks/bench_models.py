"""Training step and inference of every registered model: the plain model vs ``accelerate(model)``.

Groups (pytest-benchmark ``group``): ``train quick`` (the quick profile's step), ``train fpbnet
(8,1,8,64,128)`` (the issue's reference shape, three implementations), ``train (2,1,32,256,128)``,
``infer (2,1,32,256,128)``, ``infer paper full (1,1,48,512,128)`` (marker ``paper_full``: one
round, no warm-up), ``train quick amp`` / ``infer quick amp`` (accelerated float32 vs the same under
bf16 autocast, the quick profile's mixed precision; skipped on CPUs without native bf16), and
``ratio`` (plain and fast interleaved step by step in one benchmark; the
per-step wall and CPU times are in ``extra_info``).
"""

from __future__ import annotations

import statistics

import pytest
from _bench import AMP_IMPL, IMPLS, inference, input_shape, interleaved, loadavg, quick_shape, train_step

import bench3d2d
from bench3d2d.engine._precision import cpu_has_native_bf16

MODELS = bench3d2d.list_models()
MID = (2, 32, 256, 128)  # (batch, H, W, D): the paper's training crop at batch 2
FULL = (1, 48, 512, 128)  # the paper's full GA-S volume on the evaluation grid
FPB_SHAPE = (8, 1, 8, 64, 128)


def _run(benchmark, fn, rounds: int, warmup: int = 1) -> None:
    benchmark.extra_info["loadavg_before"] = loadavg()
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", MODELS)
def test_train_quick(benchmark, name, impl):
    """The quick profile's segmentation step (its batch, crop and depth; the model's smallest valid size)."""
    shape = input_shape(name, *quick_shape())
    benchmark.group = "train quick"
    benchmark.extra_info["shape"] = list(shape)
    _run(benchmark, train_step(name, shape, impl), rounds=5)


@pytest.mark.parametrize("impl", ["plain", "plain-cl", "fast"])
def test_train_fpbnet_reference(benchmark, impl):
    """FPB net at (8, 1, 8, 64, 128): plain, plain with channels-last tensors, accelerated."""
    benchmark.group = "train fpbnet (8,1,8,64,128)"
    benchmark.extra_info["shape"] = list(FPB_SHAPE)
    _run(benchmark, train_step("fpbnet", FPB_SHAPE, impl), rounds=5)


@pytest.mark.parametrize("name", ["fpbnet", "resensnet"])
def test_ratio_interleaved(benchmark, name):
    """Plain and fast steps alternated 5 times at (8, 1, 8, 64, 128); ratios of the best times."""
    shape = input_shape(name, *(FPB_SHAPE[0], *FPB_SHAPE[2:]))
    fns = {impl: train_step(name, shape, impl) for impl in IMPLS}
    benchmark.group = "ratio"
    benchmark.extra_info.update({"shape": list(shape), "loadavg_before": loadavg()})
    result = benchmark.pedantic(interleaved, args=(fns, 5), rounds=1, iterations=1)
    for kind in ("wall", "cpu"):
        plain, fast = result["plain"][kind], result["fast"][kind]
        benchmark.extra_info[f"plain_{kind}_s"] = plain
        benchmark.extra_info[f"fast_{kind}_s"] = fast
        benchmark.extra_info[f"ratio_{kind}_min"] = min(plain) / min(fast)
        benchmark.extra_info[f"ratio_{kind}_median"] = statistics.median(plain) / statistics.median(fast)
    benchmark.extra_info["loadavg_after"] = loadavg()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", MODELS)
def test_train_mid(benchmark, name, impl):
    """Training step at (2, 1, 32, 256, 128): the paper's crop, batch 2."""
    shape = input_shape(name, *MID)
    benchmark.group = "train (2,1,32,256,128)"
    benchmark.extra_info["shape"] = list(shape)
    _run(benchmark, train_step(name, shape, impl), rounds=2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", MODELS)
def test_infer_mid(benchmark, name, impl):
    """Inference (eval mode, ``torch.inference_mode``) at (2, 1, 32, 256, 128)."""
    shape = input_shape(name, *MID)
    benchmark.group = "infer (2,1,32,256,128)"
    benchmark.extra_info["shape"] = list(shape)
    _run(benchmark, inference(name, shape, impl), rounds=3)


@pytest.mark.paper_full
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", MODELS)
def test_infer_paper_full(benchmark, name, impl):
    """Forward only at the paper's full volume size (1, 1, 48, 512, 128): one round, no warm-up."""
    shape = input_shape(name, *FULL)
    benchmark.group = "infer paper full (1,1,48,512,128)"
    benchmark.extra_info["shape"] = list(shape)
    _run(benchmark, inference(name, shape, impl), rounds=1, warmup=0)


needs_bf16 = pytest.mark.skipif(
    not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AMX / AVX-512 BF16)"
)


@needs_bf16
@pytest.mark.parametrize("impl", ["fast", AMP_IMPL])
@pytest.mark.parametrize("name", MODELS)
def test_train_quick_amp(benchmark, name, impl):
    """The quick profile's step, accelerated, in float32 and under bf16 autocast."""
    shape = input_shape(name, *quick_shape())
    benchmark.group = "train quick amp"
    benchmark.extra_info["shape"] = list(shape)
    _run(benchmark, train_step(name, shape, impl), rounds=5)


@needs_bf16
@pytest.mark.parametrize("impl", ["fast", AMP_IMPL])
@pytest.mark.parametrize("name", MODELS)
def test_infer_quick_amp(benchmark, name, impl):
    """Evaluation forward of 4 quick-size scans (1, 16, 64, 64): float32 vs bf16 autocast."""
    shape = input_shape(name, 4, 16, 64, quick_shape()[-1])
    benchmark.group = "infer quick amp"
    benchmark.extra_info["shape"] = list(shape)
    _run(benchmark, inference(name, shape, impl), rounds=5)
