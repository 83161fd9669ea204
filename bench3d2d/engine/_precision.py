"""Precision per device (autocast dtype, gradient scaling) and evaluation-mode ensemble forward passes."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

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


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether a CUDA device computes bf16 natively (compute capability 8.0+; emulation does not count)."""
    if device.index is None:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    with torch.cuda.device(device.index):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype a run uses, or None (float32).

    CUDA: bf16 where the device supports it natively, else float16 (with a gradient scaler in
    training, see :func:`needs_grad_scaler`). CPU: bf16 where the CPU has native bf16 (AMX or
    AVX-512 BF16); emulated bf16 is slower than float32, so float32 elsewhere. Other devices:
    float32.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def needs_grad_scaler(device: torch.device, enabled: bool) -> bool:
    """float16 training needs loss scaling (``torch.amp.GradScaler``); bf16 and float32 do not."""
    return amp_dtype(device, enabled) is torch.float16


@dataclass(frozen=True)
class Precision:
    """How a run computes: autocast dtype name (``float32`` without autocast), device type,
    whether a gradient scaler was used and whether :func:`accelerate` was applied."""

    dtype: str
    device: str
    grad_scaler: bool
    accelerated: bool

    @classmethod
    def of(cls, device: torch.device, amp: bool, accelerated: bool) -> Precision:
        """The precision a run with ``amp`` on ``device`` uses."""
        dtype = amp_dtype(device, amp)
        return cls(
            str(dtype).removeprefix("torch.") if dtype is not None else "float32",
            device.type,
            needs_grad_scaler(device, amp),
            bool(accelerated),
        )

    def describe(self) -> str:
        """``"bf16 autocast"``, ``"float16 autocast + grad scaler"`` or ``"float32"`` (the log's words)."""
        if self.dtype == "float32":
            return "float32"
        name = "bf16" if self.dtype == "bfloat16" else self.dtype
        return f"{name} autocast" + (" + grad scaler" if self.grad_scaler else "")

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (``result.json``'s ``precision``)."""
        return asdict(self)


def autocast(device: torch.device, enabled: bool):
    """Autocast in the dtype :func:`amp_dtype` chooses; a no-op context where it chooses float32."""
    dtype = amp_dtype(device, enabled)
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the 5-D (Conv3d) weights channels-last; other tensors keep their layout."""
    for p in model.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _batches(
    source: CaseSource, case_ids: Iterable[str], batch: int
) -> Iterator[list[tuple[str, np.ndarray]]]:
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
def ensemble_probs(
    models: Sequence[nn.Module],
    source: CaseSource,
    case_ids: Iterable[str] | None = None,
    batch: int = 1,
    amp: bool = True,
    channels_last: bool = False,
) -> Iterator[tuple[str, np.ndarray]]:
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
            total: torch.Tensor | None = None
            for m in models:
                dev = next(m.parameters()).device
                x = x_cpu.to(dev)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                with autocast(dev, amp):
                    logits = m(x)
                p = torch.sigmoid(logits.float())[:, 0].cpu()
                total = p if total is None else total + p
            assert total is not None  # models is not empty
            mean = (total / len(models)).numpy()
            for (cid, _), prob in zip(group, mean):
                yield cid, prob
    finally:
        for m, s in zip(models, states):
            m.train(s)
