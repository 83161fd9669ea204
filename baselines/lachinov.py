"""Lachinov et al., MICCAI 2021: a 3-D U-Net with projective skip connections.

Encoder stages halve W and D; every skip is average-pooled along depth to the bottleneck depth
floor(D/8) (the "projective skip connections"), so the decoder runs in 3-D at depth D/8 and never
upsamples depth; a mean over depth and an en-face conv give the logits. Blocks are residual
bottlenecks with InstanceNorm (the reference calls them ``Residual_bottleneck_bn``).
Layer facts: ``docs/models.md`` §3 (reference: the copy in j-morano/multimodal-ssl-fpn).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench3d2d import register_model
from bench3d2d.models import SizeRule
from bench3d2d.models.layers import init_xavier_bn

PAPER = (
    "Lachinov et al., Projective skip-connections for segmentation along a subset of dimensions "
    "in retinal OCT, MICCAI 2021"
)

WIDTHS = (32, 64, 128, 256)
#: Bottleneck blocks per level (stem, E1, E2, E3); decoder stage i reuses the count of level i.
BLOCKS = (1, 1, 2, 4)
COMPRESSION = 8

META: dict = {"h_multiple": 1, "w_multiple": 8, "depth": {"min": 8}}
RULE = SizeRule.from_metadata(**META)

Triple = tuple[int, int, int]
_ENC_KERNEL: tuple[Triple, Triple] = ((1, 3, 3), (0, 1, 1))  # W x D plane inside one B-scan
_DEC_KERNEL: tuple[Triple, Triple] = ((3, 3, 1), (1, 1, 0))  # en-face H x W plane, per depth slice
_DOWN: Triple = (1, 2, 2)  # halves W and D


class Bottleneck(nn.Module):
    """Q(c; k, p): 1x1x1 c->c/8, IN, ReLU; conv k p, IN, ReLU; 1x1x1 c/8->c, IN; add the input.

    No activation after the addition. ``downsample`` (when given) is applied to the input first,
    so the residual adds the down-sampled tensor.
    """

    def __init__(self, channels: int, kernel: Triple, padding: Triple, downsample: nn.Module | None = None):
        super().__init__()
        mid = channels // COMPRESSION
        self.downsample = downsample
        self.body = nn.Sequential(
            nn.Conv3d(channels, mid, 1, bias=False),
            nn.InstanceNorm3d(mid, affine=True),
            nn.ReLU(),
            nn.Conv3d(mid, mid, kernel, padding=padding, bias=False),
            nn.InstanceNorm3d(mid, affine=True),
            nn.ReLU(),
            nn.Conv3d(mid, channels, 1, bias=False),
            nn.InstanceNorm3d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        return x + self.body(x)


def _encoder_stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
    """Down conv (1,2,2) s (1,2,2) without bias inside the first block, then more blocks."""
    down = nn.Conv3d(cin, cout, _DOWN, stride=_DOWN, bias=False)
    return nn.Sequential(
        Bottleneck(cout, *_ENC_KERNEL, downsample=down),
        *(Bottleneck(cout, *_ENC_KERNEL) for _ in range(blocks - 1)),
    )


class Upsample(nn.Module):
    """Linear x2 along W only (half-pixel centres), then a 1x1x1 conv without bias."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 1.0), mode="trilinear", align_corners=False)
        return self.conv(x)


class DecoderStage(nn.Module):
    """Concat [skip, up]; conv 3x3x3 p 1 (no bias) 2c -> c; IN (no activation); en-face bottlenecks."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2 * channels, channels, 3, padding=1, bias=False)
        self.norm = nn.InstanceNorm3d(channels, affine=True)
        self.blocks = nn.Sequential(*(Bottleneck(channels, *_DEC_KERNEL) for _ in range(blocks)))

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.norm(self.conv(torch.cat([skip, up], dim=1))))


class LachinovNet(nn.Module):
    """Lachinov et al.'s network in the logits contract; any D >= 8, W % 8 == 0, any H.

    Only the layers the forward pass uses are built. The reference (``CustomNet``) also
    constructs a fourth decoder stage (conv 3x3x3 512->256 + IN + 4 bottlenecks, 3,644,416
    parameters) that never runs, and a Dropout2d(0.4) that is never called: both are omitted,
    so the model has 1,513,697 parameters (1 -> 1 channels) instead of the reference's 5,158,113,
    and every parameter receives a gradient. The reference's closing sigmoid is dropped (logits).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        widths: Sequence[int] = WIDTHS,
        blocks: Sequence[int] = BLOCKS,
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks) or len(widths) < 2:
            raise ValueError(f"widths and blocks need the same length >= 2, got {widths} and {blocks}")
        self.size_rule = RULE.bind(RULE.depth_min, in_channels)
        self.levels = len(widths)
        self.stem = nn.Sequential(
            nn.Conv3d(in_channels, widths[0], _DEC_KERNEL[0], padding=_DEC_KERNEL[1], bias=True),
            nn.InstanceNorm3d(widths[0], affine=True),
            *(Bottleneck(widths[0], *_ENC_KERNEL) for _ in range(blocks[0])),
        )
        self.encoder = nn.ModuleList(
            _encoder_stage(widths[i], widths[i + 1], blocks[i + 1]) for i in range(self.levels - 1)
        )
        self.upsample = nn.ModuleList(Upsample(widths[i + 1], widths[i]) for i in range(self.levels - 1))
        self.decoder = nn.ModuleList(DecoderStage(widths[i], blocks[i]) for i in range(self.levels - 1))
        self.head = nn.Conv3d(widths[0], out_channels, _DEC_KERNEL[0], padding=_DEC_KERNEL[1], bias=True)
        init_xavier_bn(self)  # Xavier-normal convs, zero biases; IN keeps gamma 1, beta 0 (§3.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.size_rule.check(tuple(x.shape), model=getattr(self, "registry_name", "lachinov"))
        x = self.stem(x)
        skips = []
        for i, stage in enumerate(self.encoder):
            rate = 2 ** (self.levels - 1 - i)  # brings this level's depth to the bottleneck's
            skips.append(F.avg_pool3d(x, (1, 1, rate), (1, 1, rate)))
            x = stage(x)
        for i in reversed(range(self.levels - 1)):
            x = self.decoder[i](self.upsample[i](x), skips[i])
        return self.head(x.mean(dim=-1, keepdim=True)).squeeze(-1)


@register_model(
    **META,
    paper=PAPER,
    description="3-D residual-bottleneck U-Net (InstanceNorm) with projective skip connections; "
    "decoder at depth D/8",
    reduction="skips average-pooled along depth to D/8, decoder in 3-D at D/8, mean over depth at the end",
    tags=("baseline", "3d-encoder", "ssl", "paper"),
)
def lachinov(in_channels: int = 1, out_channels: int = 1, depth: int | None = None, **kwargs) -> nn.Module:
    """Lachinov et al. (1,513,697 parameters for 1 -> 1 channels, any depth >= 8)."""
    del depth  # layers do not depend on the depth
    return LachinovNet(in_channels, out_channels, **kwargs)
