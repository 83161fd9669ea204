"""IPNv2 (Li et al., OCTA-500 / IPN V2), from the official PyTorch code.

An IPN front (a 3x3x3 input conv, then three projection learning modules that pool depth to 1
by IPN's pool rule), a learned full-depth projection skip (a conv whose kernel and stride span
the whole depth), and a 2-D U-Net plane perceptron of constant width 64. No normalisation;
PyTorch default initialisation, as the official code. Layer facts: ``docs/models.md`` §5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from bench3d2d.baselines.ipn import pool_sizes
from torch import nn

from bench3d2d import register_model
from bench3d2d.models import DEFAULT_DEPTH, SizeRule

PAPER = (
    "Li et al., OCTA-500: A retinal dataset for optical coherence tomography angiography study, "
    "Medical Image Analysis 93, 2024 (IPN V2)"
)

META: dict = {"h_min": 16, "w_min": 16, "h_multiple": 1, "w_multiple": 1, "depth": {"fixed": True}}
RULE = SizeRule.from_metadata(**META)


class DoubleConv2d(nn.Sequential):
    """conv 3x3 p 1 (bias) -> ReLU -> conv 3x3 p 1 (bias) -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class PoolThenConvs(nn.Sequential):
    """IPNv2's PLM: max pool (1, 1, pool) in ceil mode, then 2 x [conv 3x3x3 p 1, ReLU]."""

    def __init__(self, channels: int, pool: int) -> None:
        super().__init__(
            nn.MaxPool3d((1, 1, pool), (1, 1, pool), ceil_mode=True),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Bilinear x2 (align_corners=True), zero-pad to the skip's size, concat [skip, up], DoubleConv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv2d(2 * channels, channels)

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=True)
        dh = skip.shape[2] - up.shape[2]
        dw = skip.shape[3] - up.shape[3]
        up = F.pad(up, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, up], dim=1))


class PlaneUNet(nn.Module):
    """The 2-D U-Net plane perceptron: constant width, four 2x2 max pools (floor), 1x1 head."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, levels: int = 4) -> None:
        super().__init__()
        self.inc = DoubleConv2d(in_channels, channels)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv2d(channels, channels)) for _ in range(levels)
        )
        self.ups = nn.ModuleList(Up(channels) for _ in range(levels))
        self.outc = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        out = skips.pop()
        for up in self.ups:
            out = up(out, skips.pop())
        return self.outc(out)


class IPNv2(nn.Module):
    """IPN front + learned full-depth projection skip + 2-D U-Net; (B, C, H, W, D) -> (B, K, H, W).

    Built for one input depth ``depth``: the three pools follow IPN's rule with three factors
    (D = 128 -> (8, 4, 4); D = 160 -> (8, 5, 4), the official choice) and the skip conv spans D.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = DEFAULT_DEPTH,
        channels: int = 64,
        plane_channels: int = 64,
    ) -> None:
        super().__init__()
        self.pools = pool_sizes(depth, 3)
        self.depth = int(depth)
        self.size_rule = RULE.bind(depth, in_channels)
        self.in3d = nn.Sequential(nn.Conv3d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.plms = nn.Sequential(*(PoolThenConvs(channels, p) for p in self.pools))
        self.skip = nn.Conv3d(channels, channels, (1, 1, depth), stride=(1, 1, depth))
        self.fuse = DoubleConv2d(2 * channels, plane_channels)
        self.unet = PlaneUNet(plane_channels, plane_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.size_rule.check(tuple(x.shape), model=getattr(self, "registry_name", "ipnv2"))
        x0 = self.in3d(x)
        fused = torch.cat([self.skip(x0), self.plms(x0)], dim=1).squeeze(-1)
        return self.unet(self.fuse(fused))


@register_model(
    **META,
    paper=PAPER,
    description="IPN front (input conv + 3 projection learning modules), learned full-depth projection "
    "skip, 2-D U-Net plane perceptron of width 64",
    reduction="depth max pooling by IPN's rule, fused with a learned full-depth conv projection; "
    "then a 2-D U-Net",
    defaults={
        "official": {
            "optimizer": "adam",
            "lr": 1e-4,
            "betas": (0.9, 0.99),
            "batch_size": 2,
            "iterations": 30001,
            "loss": "cross-entropy",
        },
    },
    tags=("baseline", "3d-encoder", "fixed-depth", "paper"),
)
def ipnv2(in_channels: int = 1, out_channels: int = 1, depth: int | None = None, **kwargs) -> nn.Module:
    """IPNv2 (2,113,025 parameters for 1 -> 1 channels at depth 128; built for one depth)."""
    return IPNv2(in_channels, out_channels, depth=DEFAULT_DEPTH if depth is None else depth, **kwargs)
