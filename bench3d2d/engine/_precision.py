"""Evaluation-mode forward passes: the §4 input, batched by grid shape, averaged over an ensemble."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from bench3d2d.data.evalgrid import to_eval_grid
from bench3d2d.engine._sources import CaseSource


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles or AVX-512 BF16); asked once per process."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype a run uses: bf16 on CUDA, and on CPUs with native bf16; else None."""
    if not enabled:
        return None
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast where :func:`amp_dtype` allows it; a no-op context elsewhere.

    On a CPU without native bf16 (no AMX, no AVX-512 BF16) bf16 is emulated and slower than
    float32, so mixed precision stays off there.
    """
    if amp_dtype(device, enabled) is not None:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the 5-D (Conv3d) weights channels-last; other tensors keep their layout."""
    for p in model.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _batches(source: CaseSource, case_ids: Iterable[str],
             batch: int) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Groups of at most ``batch`` consecutive cases whose evaluation grids have the same shape."""
    group: list[tuple[str, np.ndarray]] = []
    for cid in case_ids:
        x = to_eval_grid(np.asarray(source.volume(cid)))
        if group and (len(group) >= batch or group[0][1].shape != x.shape):
            yield group
            group = []
        group.append((cid, x))
    if group:
        yield group


@torch.no_grad()
def ensemble_probs(models: Sequence[nn.Module], source: CaseSource, case_ids: Iterable[str] | None = None,
                   batch: int = 1, amp: bool = True,
                   channels_last: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """``(case_id, mean sigmoid map on the evaluation grid)`` for each case, models in eval mode.

    Cases are batched (``batch`` at a time, same grid shape); in evaluation mode batch-norm uses
    its running statistics and instance-norm each sample's own, so batching changes nothing.
    """
    if not models:
        raise ValueError("no models to predict with")
    states = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        for group in _batches(source, case_ids if case_ids is not None else source.case_ids, max(1, batch)):
            x_cpu = torch.from_numpy(np.stack([x for _, x in group])[:, None])
            total = None
            for m in models:
                dev = next(m.parameters()).device
                x = x_cpu.to(dev)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                with autocast(dev, amp):
                    logits = m(x)
                p = torch.sigmoid(logits.float())[:, 0].cpu()
                total = p if total is None else total + p
            mean = (total / len(models)).numpy()
            for (cid, _), prob in zip(group, mean):
                yield cid, prob
    finally:
        for m, s in zip(models, states):
            m.train(s)
