"""Helpers shared by the benchmark files: shapes, the three implementations, step closures."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import bench3d2d
from bench3d2d.engine.acceleration import accelerate
from bench3d2d.engine.profiles import get_profile

CL3D = torch.channels_last_3d
#: plain = the registered model as built (straightforward Conv3d), the baseline; fast =
#: accelerate(model). ``build`` also knows plain-cl: plain with channels-last weights and input
#: (what the engine's ``channels_last`` profile option does), and fast-bf16: accelerate(model) run
#: under bf16 autocast (the engine's ``amp`` on a CPU with native bf16; not the same function).
IMPLS = ("plain", "fast")
AMP_IMPL = "fast-bf16"


def _autocast(impl: str):
    """bf16 autocast for ``fast-bf16``, a no-op context otherwise."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=impl == AMP_IMPL)


def quick_shape() -> tuple[int, int, int, int]:
    """(batch, H, W, D) of the ``smoke`` profile's segmentation training step."""
    prof = get_profile("smoke")
    return prof.batch_for("segmentation"), prof.crop[0], prof.crop[1], prof.depth


def input_shape(name: str, batch: int, h: int, w: int, depth: int) -> tuple[int, int, int, int, int]:
    """The smallest shape at least (batch, 1, h, w, depth) that the model accepts."""
    hh, ww = bench3d2d.model_info(name).size_rule.smallest_valid(h, w)
    return batch, 1, hh, ww, depth


def build(name: str, depth: int, impl: str) -> nn.Module:
    """The model (seed 0) in one implementation."""
    torch.manual_seed(0)
    model = bench3d2d.create_model(name, in_channels=1, out_channels=1, depth=depth)
    if impl in ("fast", AMP_IMPL):
        accelerate(model)
    elif impl == "plain-cl":
        for p in model.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=CL3D)
    elif impl != "plain":
        raise ValueError(f"unknown implementation {impl!r}")
    return model


def _input(shape: tuple[int, ...], impl: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g)
    return x.contiguous(memory_format=CL3D) if impl == "plain-cl" else x


def train_step(name: str, shape: tuple[int, ...], impl: str) -> Callable[[], float]:
    """One training step (forward, BCE-with-logits loss, backward, SGD step) as a closure."""
    model = build(name, shape[-1], impl).train()
    x = _input(shape, impl)
    y = torch.rand((shape[0], 1, shape[2], shape[3]), generator=torch.Generator().manual_seed(2)) < 0.3
    y = y.float()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with _autocast(impl):
            logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def inference(name: str, shape: tuple[int, ...], impl: str) -> Callable[[], torch.Tensor]:
    """One forward pass in evaluation mode under ``torch.inference_mode`` as a closure."""
    model = build(name, shape[-1], impl).eval()
    x = _input(shape, impl)

    def forward() -> torch.Tensor:
        with torch.inference_mode(), _autocast(impl):
            return model(x)

    return forward


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Run the closures in turn ``rounds`` times (after one warm-up each); wall and process-CPU seconds."""
    for fn in fns.values():
        fn()
    out = {k: {"wall": [], "cpu": []} for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            gc.collect()
            c, t = time.process_time(), time.perf_counter()
            fn()
            out[k]["wall"].append(time.perf_counter() - t)
            out[k]["cpu"].append(time.process_time() - c)
    return out


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (contention record)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None
