"""FPB net (Morano et al., MICCAI 2023): 3-D residual encoder, feature projection blocks, 2-D decoder.

The same family, with a different projection, is ReSensNet (``baselines/resensnet.py``):
both are built by :class:`ProjectionUNet`. Layer-by-layer facts: ``docs/models.md`` §1-2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench3d2d.models._contract import SizeRule
from bench3d2d.models._registry import register_model
from bench3d2d.models.layers import ConvSpec, ResidualUnit, init_xavier_bn, upsample_repeat

WIDTHS = (16, 32, 64, 128, 256)
#: Max pools after encoder levels 1-4, kernel = stride, in (H, W, D).
POOLS = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))

PAPER = (
    "Morano et al., Self-supervised learning via inter-modal reconstruction and feature "
    "projection networks for label-efficient 3D-to-2D segmentation, MICCAI 2023"
)

_W_PLANE = ConvSpec((1, 3, 3), padding=(0, 1, 1))  # inside one B-scan (W x D)
_ACROSS_BSCANS = ConvSpec((3, 1, 1), padding=(1, 0, 0))  # neighbouring B-scans
_EN_FACE = ConvSpec((3, 3, 1), padding=(1, 1, 0))  # decoder, on depth-1 maps
_DEPTH_STRIDED = ConvSpec((1, 1, 3), stride=(1, 1, 2), padding=(0, 0, 1))


class EncoderLevel(nn.Sequential):
    """Unit A (channel change, projection shortcut) then Unit B (identity shortcut)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.unit_a = ResidualUnit(
            cin, cout, [_W_PLANE, _W_PLANE], shortcut="project" if cin != cout else "identity"
        )
        self.unit_b = ResidualUnit(cout, cout, [_W_PLANE, _W_PLANE, _ACROSS_BSCANS])


class FeatureProjection(nn.Module):
    """Projects one encoder level to depth 1.

    ``n_strided`` depth-strided (1,1,3) convs in one residual unit, then a non-residual
    (1,1,``final_depth``) conv-BN-ReLU, then (when ``mean``) the average over depth.
    """

    def __init__(self, channels: int, n_strided: int, final_depth: int, mean: bool) -> None:
        super().__init__()
        self.strided = (
            ResidualUnit(
                channels,
                channels,
                [_DEPTH_STRIDED] * n_strided,
                shortcut="project",
                shortcut_stride=(1, 1, 2**n_strided),
            )
            if n_strided > 0
            else None
        )
        self.final = ResidualUnit(channels, channels, [ConvSpec((1, 1, final_depth))], shortcut=None)
        self.mean = mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strided is not None:
            x = self.strided(x)
        x = self.final(x)
        return x.mean(dim=-1, keepdim=True) if self.mean else x


class DecoderBlock(nn.Module):
    """Upsample the low-resolution map by replication, concat [skip, up], residual unit."""

    def __init__(self, c_low: int, c_skip: int, factors: tuple[int, int]) -> None:
        super().__init__()
        self.factors = factors
        self.unit = ResidualUnit(c_skip + c_low, c_skip, [_EN_FACE, _EN_FACE], shortcut="project")

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.unit(torch.cat([skip, upsample_repeat(low, self.factors)], dim=1))


class ProjectionUNet(nn.Module):
    """3-D encoder, one feature projection per level, 2-D decoder, 1x1x1 head (logits).

    ``final_depth`` is the depth of each projection's last conv kernel; ``mean=True`` averages
    what depth remains (FPB net, any input depth), ``mean=False`` requires the conv to reach
    depth 1 exactly (ReSensNet, one depth).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size_rule: SizeRule,
        final_depth: int = 4,
        mean: bool = True,
        widths: Sequence[int] = WIDTHS,
    ) -> None:
        super().__init__()
        if len(widths) != len(POOLS) + 1:
            raise ValueError(f"widths must have {len(POOLS) + 1} entries, got {len(widths)}")
        self.size_rule = size_rule
        levels = len(widths)
        chans = [in_channels, *widths]
        self.encoder = nn.ModuleList(EncoderLevel(chans[i], chans[i + 1]) for i in range(levels))
        self.pools = nn.ModuleList(nn.MaxPool3d(p, p) for p in POOLS)
        self.projections = nn.ModuleList(
            FeatureProjection(widths[i], levels - 1 - i, final_depth, mean) for i in range(levels)
        )
        self.decoder = nn.ModuleList(
            DecoderBlock(widths[i + 1], widths[i], (POOLS[i][0], POOLS[i][1]))
            for i in reversed(range(levels - 1))
        )
        self.head = nn.Conv3d(widths[0], out_channels, kernel_size=1, bias=True)
        init_xavier_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.size_rule.check(tuple(x.shape), model=getattr(self, "registry_name", ""))
        projected = []
        for i, level in enumerate(self.encoder):
            x = level(x)
            projected.append(self.projections[i](x))
            if i < len(self.pools):
                x = self.pools[i](x)
        out = projected[-1]
        for block, skip in zip(self.decoder, reversed(projected[:-1])):
            out = block(out, skip)
        return self.head(out).squeeze(-1)


FPBNET_RULE = SizeRule.from_metadata(h_multiple=4, w_multiple=16, depth={"min": 64})


def FPBNet(in_channels: int = 1, out_channels: int = 1) -> ProjectionUNet:
    """The FPB net: projections end in a (1,1,4) conv and a mean over depth; any D >= 64."""
    return ProjectionUNet(
        in_channels, out_channels, FPBNET_RULE.bind(64, in_channels), final_depth=4, mean=True
    )


@register_model(
    h_multiple=4,
    w_multiple=16,
    depth={"min": 64},
    paper=PAPER,
    description="3-D residual encoder, feature projection blocks (strided 1x1x3 convs, 1x1x4 conv, "
    "mean over depth), 2-D residual decoder",
    reduction="feature projection blocks at every level: strided depth convs, then mean over depth",
    tags=("3d-encoder", "ssl", "paper"),
)
def fpbnet(in_channels: int = 1, out_channels: int = 1, depth: int | None = None, **kwargs) -> nn.Module:
    """FPB net, the paper's proposed network (4,369,553 parameters for 1 -> 1 channels)."""
    del depth  # any D >= 64: layers do not depend on it
    return FPBNet(in_channels, out_channels, **kwargs)
