"""Shared building blocks and initialisation rules for the library's networks.

All 3-D tensors are ``(B, C, H, W, D)``; every kernel, stride and padding triple is (H, W, D).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of a residual unit: kernel, stride and zero padding in (H, W, D)."""

    kernel: Triple
    stride: Triple = (1, 1, 1)
    padding: Triple = (0, 0, 0)


class ConvBN(nn.Sequential):
    """Conv3d without bias followed by BatchNorm3d."""

    def __init__(self, cin: int, cout: int, spec: ConvSpec) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, spec.kernel, spec.stride, spec.padding, bias=False)
        self.bn = nn.BatchNorm3d(cout)


class ResidualUnit(nn.Module):
    """Residual unit R of the FPB net (docs/models.md §1.1).

    Main path: conv-BN-ReLU ... conv-BN (no ReLU after the last BN); the first conv maps
    ``cin -> cout``. With ``shortcut="identity"`` the input is added, with ``"project"`` a
    1x1x1 conv (stride ``shortcut_stride``) + BN of the input is added, with ``None`` nothing
    is added. A closing ReLU is applied in every case.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        convs: Sequence[ConvSpec],
        shortcut: str | None = "identity",
        shortcut_stride: Triple = (1, 1, 1),
    ) -> None:
        super().__init__()
        if shortcut not in ("identity", "project", None):
            raise ValueError(f"shortcut must be 'identity', 'project' or None, got {shortcut!r}")
        if shortcut == "identity" and cin != cout:
            raise ValueError(f"identity shortcut needs cin == cout, got {cin} -> {cout}")
        self.body = nn.ModuleList(ConvBN(cin if i == 0 else cout, cout, spec) for i, spec in enumerate(convs))
        self.shortcut = (
            ConvBN(cin, cout, ConvSpec((1, 1, 1), shortcut_stride)) if shortcut == "project" else None
        )
        self.residual = shortcut is not None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        last = len(self.body) - 1
        for i, layer in enumerate(self.body):
            out = layer(out)
            if i < last:
                out = self.act(out)
        if self.residual:
            out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return self.act(out)


def init_xavier_bn(module: nn.Module) -> None:
    """Reference init (docs/models.md §1.8): Xavier-normal conv weights, zero conv biases,
    BN weight ~ N(1, 0.02), BN bias 0, fresh running statistics."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose3d):
            _xavier_normal_conv3d_rule(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
            if m.weight is not None:
                nn.init.normal_(m.weight, mean=1.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
            m.reset_running_stats()


def _xavier_normal_conv3d_rule(weight: torch.Tensor) -> None:
    """Xavier normal with fans computed from the weight's own shape (C_out, C_in, *kernel)."""
    nn.init.xavier_normal_(weight, gain=1.0)


def upsample_repeat(x: torch.Tensor, factors: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of (H, W) by integer factors through replication."""
    fh, fw = factors
    if fh > 1:
        x = x.repeat_interleave(fh, dim=2)
    if fw > 1:
        x = x.repeat_interleave(fw, dim=3)
    return x
