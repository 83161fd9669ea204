"""Cost calibration: how long one training step and one evaluated scan take for a model on this machine.

The sweep's time estimate (``bench3d2d.harness``, ``bench3d2d run --dry-run``) multiplies these costs by the
work a run does (its steps and evaluated scans). A calibration builds the model exactly as :func:`fit` does
(profile depth, accelerated on CPU, the profile's precision), times a few optimiser steps on random batches
of the training shape and a few evaluation batches on the evaluation grid, after one untimed warm-up each.
It costs seconds per model, so the harness caches it per machine.

The costs are **CPU seconds of one thread** (``time.process_time`` with ``torch.set_num_threads(1)``): on a
machine busy with other work, wall-clock timings of several threads are inflated many times over by
OpenMP threads waiting for each other, while the CPU time of one thread stays what an idle core would take.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from bench3d2d.engine._fit import (
    build_model,
    make_optimizer,
    resolve_device,
    size_rule_of,
    training_crop,
    wants_acceleration,
)
from bench3d2d.engine._precision import Precision, autocast
from bench3d2d.engine.acceleration import accelerate
from bench3d2d.engine.profiles import Profile
from bench3d2d.engine.tasks import segmentation

#: The evaluation grid (H, W) of each synthetic data size; a scan of another size costs in proportion.
EVAL_GRID = {"quick": (16, 64), "paper": (48, 512)}


@dataclass(frozen=True)
class Costs:
    """Seconds per training step (``step``) and per evaluated scan for one model (``eval_scan``)."""

    step: float
    eval_scan: float

    def to_dict(self) -> dict[str, float]:
        """JSON-friendly form."""
        return asdict(self)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return sorted(times)[len(times) // 2]


def measure_costs(model_name: str, profile: Profile, repeats: int = 3) -> Costs:
    """Time ``repeats`` training steps and evaluation batches of ``model_name`` under ``profile`` on the CPU,
    one thread, in CPU seconds (the caller's thread count is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(model_name, profile, repeats)
    finally:
        torch.set_num_threads(before)


def _measure(model_name: str, profile: Profile, repeats: int) -> Costs:
    dev = resolve_device("cpu")
    torch.manual_seed(0)
    model = build_model(model_name, profile.depth)
    if wants_acceleration(dev, None):
        accelerate(model)
    model.to(dev)
    precision = Precision.of(dev, profile.amp, dev.type == "cpu")
    amp = precision.dtype != "float32"
    task, batch = segmentation(), profile.batch_for("segmentation")
    h, w = training_crop(model, profile)
    x = torch.randn(batch, 1, h, w, profile.depth, device=dev)
    y = (torch.rand(batch, 1, h, w, device=dev) > 0.7).float()
    optimizer = make_optimizer(model, profile)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(dev, amp):
            logits = model(x)
        task.loss(logits.float(), y).backward()
        optimizer.step()

    model.train()
    step_s = _median_seconds(step, repeats)
    gh, gw = EVAL_GRID.get(profile.data_size, EVAL_GRID["quick"])
    gh, gw = size_rule_of(model).smallest_valid(gh, gw)
    xe = torch.randn(profile.eval_batch, 1, gh, gw, profile.depth, device=dev)

    @torch.no_grad()
    def evaluate() -> None:
        with autocast(dev, amp):
            torch.sigmoid(model(xe).float()).cpu()

    model.eval()
    eval_s = _median_seconds(evaluate, repeats)
    return Costs(step=step_s, eval_scan=eval_s / profile.eval_batch)
