"""Faster CPU training for any model, computing the same function: ``accelerate(model)``.

PyTorch runs every ``Conv3d`` through one 3-D oneDNN kernel whatever its shape. Most
convolutions of the 3D->2D networks are anisotropic — (1,3,3) inside a B-scan, (3,1,1) across
B-scans, (1,1,k) along depth, 1x1x1 projections, (3,3,1) on depth-1 maps — and with few
channels the 3-D kernel runs them at a fraction of the machine's speed. Each is exactly a
cheaper computation on a *view* of the input once it is stored channels-last
(``torch.channels_last_3d``, memory order B, H, W, D, C):

* an axis with kernel 1, stride 1 and no padding (a *passive* axis) adds nothing to the sum;
* 1x1x1: one matrix product over channels on the (B, H, W, D, C) view;
* passive H: fold H into the batch, ``(B*H, C, W, D)`` is a channels-last 4-D view (``conv2d``);
* passive W and D: merge them, ``(B, C, H, W*D)`` is a 4-D view in either layout (``conv2d``);
* passive D of size 1: drop it (``conv2d``);
* one input channel, in training: the kernel taps as channels (im2col), then one matrix product.

Everything else (isotropic kernels, string padding, non-zero padding modes, ...) runs the
ordinary ``Conv3d`` forward. Outputs stay channels-last, so the next layer needs no copy; batch
norm, ReLU, max pooling and additions keep the layout. Models with ``InstanceNorm3d`` keep their
own layout instead (its CPU kernel and ``avg_pool3d`` have no channels-last version).

:func:`accelerate` swaps the class of every plain ``nn.Conv3d`` in place (and, channels-last, of
every ``nn.InstanceNorm3d`` without running statistics). Parameters, buffers, hooks and
``state_dict`` are untouched, so optimiser state and checkpoints are interchangeable with the
plain model; :func:`decelerate` undoes it. :func:`retain_freed_memory` is a separate,
process-wide allocator setting. The plain model is the baseline the benchmarks compare with
(``benchmarks/``, ``docs/performance.md``); ``tests/test_fastconv.py`` checks equal outputs and
gradients.
"""

from __future__ import annotations

import ctypes
import platform
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = [
    "FastConv3d",
    "FastInstanceNorm3d",
    "accelerate",
    "conv_path",
    "decelerate",
    "is_accelerated",
    "retain_freed_memory",
]

CL3D = torch.channels_last_3d

# Dispatch paths (returned by ``conv_path`` and recorded in tests and docs).
POINTWISE = "pointwise"  # 1x1x1, stride 1 -> a matrix product over channels (F.linear)
UNFOLD = "unfold"  # one input channel -> gather the kernel taps, then one matrix product
FOLD_H = "fold-h"  # passive H -> conv2d over (W, D) with H folded into the batch
MERGE_WD = "merge-wd"  # passive W and D -> conv2d over (H, W*D)
SQUEEZE_D = "squeeze-d"  # passive D of size 1 -> conv2d over (H, W)
CONV3D = "conv3d"  # everything else: the Conv3d forward (on a channels-last input in that mode)


def _passive(k: int, s: int, p: int) -> bool:
    """Kernel 1, stride 1, no padding: the axis passes through the convolution unchanged."""
    return k == 1 and s == 1 and p == 0


def conv_path(conv: nn.Conv3d, input_shape: tuple[int, ...] | None = None) -> str:
    """Which computation :class:`FastConv3d` uses for ``conv`` (and, for SQUEEZE_D, the input shape)."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return CONV3D
    k, s, p = conv.kernel_size, conv.stride, conv.padding
    passive = [_passive(k[i], s[i], p[i]) for i in range(3)]
    if all(passive) and conv.groups == 1:
        return POINTWISE
    if conv.in_channels == 1 and conv.groups == 1:
        return UNFOLD
    if passive[0]:
        return FOLD_H
    if passive[1] and passive[2]:
        return MERGE_WD
    if passive[2] and input_shape is not None and input_shape[-1] == 1:
        return SQUEEZE_D
    return CONV3D


def _cl(y: torch.Tensor) -> torch.Tensor:
    """The 4-D result stored channels-last (a no-op when it already is), so the 5-D view is CL3D."""
    return y.contiguous(memory_format=torch.channels_last)


class _Reshaped(torch.autograd.Function):
    """``view(y)`` returned as a tensor autograd does not track as a view of ``y``.

    An in-place op on a tracked view (``Conv3d -> ReLU(inplace=True)``) makes autograd copy and
    clone the whole gradient in backward (``CopySlices``), which costs more than a matrix
    product here. ``y`` is a fresh result that no autograd node saved, so sharing its memory
    with the output is safe. Backward applies ``unview`` to the gradient.
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, view, unview) -> torch.Tensor:  # type: ignore[override]
        ctx.unview = unview
        v = view(y)
        return y.new_empty(0).set_(y.untyped_storage(), v.storage_offset(), v.size(), v.stride())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.unview(grad), None, None


def _reshaped(y: torch.Tensor, view, unview) -> torch.Tensor:
    """``view(y)``; through :class:`_Reshaped` when autograd records, so in-place consumers stay cheap."""
    if torch.is_grad_enabled() and y.requires_grad:
        return _Reshaped.apply(y, view, unview)
    return view(y)


def _to_5d(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 4, 1, 2, 3)


def _from_5d(g: torch.Tensor) -> torch.Tensor:
    return g.permute(0, 2, 3, 4, 1)


class FastConv3d(nn.Conv3d):
    """A ``Conv3d`` whose forward runs anisotropic kernels as 2-D convolutions or GEMMs on views.

    Same parameters, same ``state_dict``, same function (to floating-point rounding). With
    ``channels_last`` (the default) the input is converted to ``torch.channels_last_3d`` and the
    output stays so; without it the input's layout is kept and only the paths that are views in
    that layout are used (``merge-wd``, ``squeeze-d``); the rest run the plain forward. ``unfold``
    is used only when the weight gradient is recorded (training).
    """

    channels_last: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dispatch on kernel, stride and padding (module docstring); fall back to ``Conv3d``."""
        if x.dim() != 5:
            return super().forward(x)
        cl = self.channels_last
        if cl:
            x = x.contiguous(memory_format=CL3D)
        elif not x.is_contiguous():
            cl = x.is_contiguous(memory_format=CL3D)
            x = x if cl else x.contiguous()
        path = conv_path(self, tuple(x.shape))
        if path == UNFOLD and not (torch.is_grad_enabled() and self.weight.requires_grad):
            path = CONV3D  # oneDNN's forward is fine for one channel; only its weight gradient is slow
        if path == CONV3D or (not cl and path in (POINTWISE, FOLD_H, UNFOLD)):
            y = super().forward(x)
            return y.contiguous(memory_format=CL3D) if self.channels_last else y
        w, b, g = self.weight, self.bias, self.groups
        padding = cast(tuple[int, int, int], self.padding)  # conv_path sent "same"/"valid" to CONV3D
        (sh, sw, sd), (ph, pw, pd), (dh, dw, dd) = self.stride, padding, self.dilation
        B, _, H, W, D = x.shape
        if path == UNFOLD:  # the taps as channels, (B, Ho, Wo, Do, T): one matrix product
            y = _unfold_conv(x, w, self.stride, padding, self.dilation)
            return _reshaped(F.linear(y, w.flatten(1), b), _to_5d, _from_5d)
        if path == POINTWISE:  # (B, H, W, D, C) is a contiguous view: one matrix product
            return _reshaped(F.linear(_from_5d(x), w.flatten(1), b), _to_5d, _from_5d)
        fix = _cl if cl else _same
        if path == FOLD_H:  # (B*H, C, W, D) is a channels-last view
            y = F.conv2d(x.transpose(1, 2).flatten(0, 1), w.squeeze(2), b, (sw, sd), (pw, pd), (dw, dd), g)
            return _reshaped(
                _cl(y),
                lambda t: t.unflatten(0, (B, H)).transpose(1, 2),
                lambda t: t.transpose(1, 2).flatten(0, 1),
            )
        if path == MERGE_WD:  # (B, C, H, W*D) is a view in either layout
            y = F.conv2d(x.flatten(3, 4), w.squeeze(4), b, (sh, 1), (ph, 0), (dh, 1), g)
            return _reshaped(fix(y), lambda t: t.unflatten(3, (W, D)), lambda t: t.flatten(3, 4))
        # SQUEEZE_D: (B, C, H, W) with D = 1
        y = F.conv2d(x.squeeze(4), w.squeeze(4), b, (sh, sw), (ph, pw), (dh, dw), g)
        return _reshaped(fix(y), lambda t: t.unsqueeze(4), lambda t: t.squeeze(4))


def _same(y: torch.Tensor) -> torch.Tensor:
    return y


def _unfold_conv(
    x: torch.Tensor, w: torch.Tensor, stride: tuple, padding: tuple, dilation: tuple
) -> torch.Tensor:
    """The kernel taps of a one-channel input stacked last (im2col), for one matrix product.

    oneDNN's weight gradient for a single input channel is slow; gathering the T = kh*kw*kd taps
    costs T copies of a one-channel volume and turns the convolution into one well-shaped GEMM.
    """
    B, _, H, W, D = x.shape
    (kh, kw, kd), (sh, sw, sd), (ph, pw, pd), (dh, dw, dd) = w.shape[2:], stride, padding, dilation
    out = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip((H, W, D), (kh, kw, kd), (sh, sw, sd), (ph, pw, pd), (dh, dw, dd))
    ]
    xp = F.pad(x.reshape(B, H, W, D), (pd, pd, pw, pw, ph, ph))
    taps = [
        xp[
            :,
            i * dh : i * dh + sh * (out[0] - 1) + 1 : sh,
            j * dw : j * dw + sw * (out[1] - 1) + 1 : sw,
            k * dd : k * dd + sd * (out[2] - 1) + 1 : sd,
        ]
        for i in range(kh)
        for j in range(kw)
        for k in range(kd)
    ]
    return torch.stack(taps, dim=-1)


class FastInstanceNorm3d(nn.InstanceNorm3d):
    """``InstanceNorm3d`` without running statistics, computed as a group norm with one channel per
    group, which keeps a channels-last input channels-last instead of copying it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Group norm with ``num_groups = C`` (identical statistics); other cases as the parent."""
        if x.dim() != 5 or self.track_running_stats:
            return super().forward(x)
        return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)


_SWAPS: dict[type, type] = {nn.Conv3d: FastConv3d, nn.InstanceNorm3d: FastInstanceNorm3d}
_UNSWAPS: dict[type, type] = {fast: plain for plain, fast in _SWAPS.items()}


def _swappable(module: nn.Module) -> bool:
    """Exactly a plain ``Conv3d`` / ``InstanceNorm3d`` (subclasses may override forward: left alone)."""
    if type(module) is nn.InstanceNorm3d:
        return not module.track_running_stats
    return type(module) in _SWAPS


def accelerate(model: nn.Module, channels_last: bool | None = None) -> nn.Module:
    """Make ``model`` faster on CPU in place, computing the same function; returns ``model``.

    Swaps the class of every plain ``nn.Conv3d`` to :class:`FastConv3d` and, in channels-last
    mode, of every ``nn.InstanceNorm3d`` without running statistics to :class:`FastInstanceNorm3d`.
    Parameters (the same ``Parameter`` objects), buffers, hooks and ``state_dict`` are unchanged,
    so call it before or after building the optimiser and loading weights. Idempotent.

    ``channels_last=None`` chooses channels-last unless the model has an ``InstanceNorm3d``:
    PyTorch's CPU instance norm and 3-D average pooling have no channels-last kernels and copy
    their input back (measured on Lachinov et al.'s network: 0.86x in channels-last inference,
    see ``docs/performance.md``); such models keep their layout.
    """
    if channels_last is None:
        channels_last = not any(isinstance(m, nn.InstanceNorm3d) for m in model.modules())
    for module in model.modules():
        if type(module) is nn.Conv3d or type(module) is FastConv3d:
            module.__class__ = FastConv3d
            module.channels_last = bool(channels_last)  # type: ignore[assignment]  # now a FastConv3d
        elif channels_last and _swappable(module):
            module.__class__ = _SWAPS[type(module)]
    return model


def decelerate(model: nn.Module) -> nn.Module:
    """Undo :func:`accelerate` in place (the plain PyTorch modules again); returns ``model``."""
    for module in model.modules():
        plain = _UNSWAPS.get(type(module))
        if plain is not None:
            module.__class__ = plain
            module.__dict__.pop("channels_last", None)
    return model


def is_accelerated(model: nn.Module) -> bool:
    """True when ``model`` contains at least one module swapped by :func:`accelerate`."""
    return any(type(m) in _UNSWAPS for m in model.modules())


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def retain_freed_memory() -> bool:
    """Serve every allocation from the heap and keep freed memory (glibc); True when applied.

    By default glibc maps each block of 32 MiB or more afresh and unmaps it when freed, so an
    FPB net training step at (8, 1, 8, 64, 128) first-touches 1.1-2.6 GB of fresh pages (0.45 s
    of page faults, about 20 % of the accelerated step, on the machine of docs/performance.md).
    With mmap and trimming off, freed blocks are reused. Process-wide and irreversible; it
    changes no result, and the process keeps its peak resident memory. A no-op returning False
    on other C libraries.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
